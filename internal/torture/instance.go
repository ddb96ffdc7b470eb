package torture

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache"
	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/changefeed"
	"github.com/gormcache/gormcache/internal/failpoint"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

// Row is the torture table's model. Every write stores a token unique to it,
// so a read tells exactly which write produced the value it returned.
type Row struct {
	ID    int64 `gorm:"primaryKey"`
	Token int64 // the writing operation's token; 0 for the seed rows
	Note  string
	repository.Version
}

// RowNamespace is the repository namespace of Row: cache keys are
// "row:<id>", Redis keys "<cache namespace>:{row:<id>}".
const RowNamespace = "row"

// RowKey is the cache key of the row with id.
func RowKey(id int64) string { return RowNamespace + ":" + strconv.FormatInt(id, 10) }

// LongKey is the cache key of a long-key row (Config.LongRows): 2 KB, longer
// than cache.MaxStoredKeyLen, so the cache stores it under a hash.
func LongKey(id int64) string {
	return "long:" + strings.Repeat("k", 2048) + ":" + strconv.FormatInt(id, 10)
}

// storedKey is the key the cache stores (and announces) key under.
func storedKey(key string) string {
	if len(key) <= cache.MaxStoredKeyLen {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "#" + hex.EncodeToString(sum[:])
}

// Config configures one instance process. The parent passes it as JSON on
// the command line (-torture.config); guards to switch off are passed
// separately (-torture.disable).
type Config struct {
	Inst int // instance number, from 1

	// RedisAddr is the cache's Redis (through the instance's data proxy);
	// empty means a process-local cache (L1 only) and no bus.
	RedisAddr string
	// BusRedisAddr is the bus's Redis (its subscription and its retried
	// publishes), through a proxy of its own so that faults can target it.
	BusRedisAddr string
	DSN          string // PostgreSQL, with this instance's application_name
	TablePrefix  string // the naming strategy's table prefix
	Namespace    string // the cache namespace
	PoolSize     int    // database connections (default 8)

	Rows    int     // rows 1..Rows exist
	HotRows int     // keys are drawn from 1..HotRows (default Rows)
	ZipfS   float64 // zipf exponent (> 1; default 1.1)

	Readers, Writers, Txers int           // goroutines of each kind
	ReadPause, WritePause   time.Duration // pause after each read / write round
	// GormWriters goroutines write with plain GORM through the plugin
	// (gormwriter.go): Updates under explicit optimistic locking,
	// db.Transaction with a nested transaction, raw Exec, PrepareStmt
	// sessions. They pause WritePause too.
	GormWriters int
	// GormExecEvery is the mean interval between a plain-GORM writer's raw
	// UPDATEs (each retires the namespace); zero: none.
	GormExecEvery time.Duration
	// ChainProb is the probability that a successful update is followed at
	// once by a second update of the same struct, without re-reading.
	ChainProb float64
	// RollbackProb is the fraction of transactions that roll back.
	RollbackProb float64
	// TxUniform makes transactions pick rows uniformly from 1..Rows (mostly
	// rows nobody has cached) instead of from the zipf hot set.
	TxUniform bool
	// BurstOn and BurstOff make writers and transactions alternate active
	// and idle periods (each drawn uniformly up to twice the figure); zero
	// means always active.
	BurstOn, BurstOff time.Duration

	NoL1            bool          // disable the in-process tier
	HealthWindow    time.Duration // invalidation.Options.HealthWindow (0: default)
	EpochInterval   time.Duration // cache.Options.EpochInterval (0: default)
	RedisRetryAfter time.Duration // cache.Options.RedisRetryAfter (0: default)

	// Sentinel deployments: the instance builds redis.NewFailoverClient
	// clients on SentinelAddrs (master MasterName) instead of plain ones, and
	// dials each server through its proxy: DataAddrMap (the cache's client)
	// and BusAddrMap (the bus's) map a server's address to the proxy's.
	SentinelAddrs           []string
	MasterName              string
	DataAddrMap, BusAddrMap map[string]string

	L2TTL time.Duration // cache.Options.L2TTL (0: default)
	// FillDelay delays every Redis fill (the BeforeL2Fill failpoint) by this
	// much, widening the window between a load's database read and its
	// fill: targeted runs use it to make evictions and deletes of
	// tombstones meet fills in flight.
	FillDelay time.Duration

	// OutsideRows rows after Rows (ids Rows+1 ... Rows+OutsideRows) are
	// written only around the library ("outside" command): plain GORM
	// updates that leave the version as it is, and DELETE + re-insert at
	// version 1, each followed by Repository.Invalidate. Readers read them
	// too.
	OutsideRows int
	// LongRows rows after those are read with cache.Get under LongKey (a
	// 2 KB key) and written with plain versioned updates followed by
	// cache.Invalidate of that key.
	LongRows int
	// ExternalRows rows after those are written only by the external
	// writer (external.go: UPDATEs, DELETEs and re-INSERTs in plain SQL),
	// which only the change feed covers. Readers read them too.
	ExternalRows int

	// Feed: with FeedSlot set, the instance runs a changefeed.Relay on
	// FeedDSN (the logical cluster, with this instance's application_name)
	// following the torture table, with slot and publication FeedSlot and
	// FeedPublication, its lease on the cache's Redis (LeaseTTL
	// FeedLeaseTTL). One relay of the fleet streams, the others stand by.
	FeedDSN, FeedSlot, FeedPublication string
	FeedLeaseTTL                       time.Duration

	// ClusterAddrs: the instance builds redis.NewClusterClient clients on
	// these seeds, dialling each node through its proxy (DataAddrMap,
	// BusAddrMap), instead of plain ones.
	ClusterAddrs []string

	Log  string // path of the operation log
	Seed uint64
}

// outsideBase and longBase are the ids before the first outside and long row.
func (c Config) outsideBase() int64 { return int64(c.Rows) }
func (c Config) longBase() int64    { return int64(c.Rows + c.OutsideRows) }

// extBase is the id before the first external row.
func (c Config) extBase() int64 { return c.longBase() + int64(c.LongRows) }

// request is one command from the parent, one JSON line on stdin.
type request struct {
	Cmd string `json:"cmd"` // start, stop, status, peek, quit, outside, die, shutdown, crash
	N   int    `json:"n,omitempty"`
}

// response is the answer, one JSON line on stdout.
type response struct {
	Err    string          `json:"err,omitempty"`
	Ready  bool            `json:"ready,omitempty"`
	Ops    int64           `json:"ops,omitempty"`
	Status *InstanceStatus `json:"status,omitempty"`
	Peek   *InstancePeek   `json:"peek,omitempty"`
	Cache  *cache.Stats    `json:"cache,omitempty"`
	Bus    *invalidation.Stats
	Feed   *changefeed.Stats `json:"feed,omitempty"`
	// CloseErr is what Cache.Close returned on "shutdown".
	CloseErr string `json:"closeErr,omitempty"`
}

// InstanceStatus is an instance's recovery state, for the parent's settling wait.
type InstanceStatus struct {
	BusHealthy   bool // the subscription is confirmed and answering (true without a bus)
	RedisHealthy bool // the cache uses Redis: the epoch is known and Redis not marked down
	Queued       int  // events waiting to be published
	// BumpsCovered: every invalidation that missed Redis has been followed
	// by an epoch change (or enough time has passed for one).
	BumpsCovered bool
	Serving      bool // L1 is being served
	FeedLeader   bool // this instance's relay holds the change feed's lease
}

// Settled reports whether the instance has recovered from every fault.
func (s InstanceStatus) Settled() bool {
	return s.BusHealthy && s.RedisHealthy && s.Queued == 0 && s.BumpsCovered
}

// IsChild reports whether args (os.Args) ask for an instance process.
func IsChild(args []string) bool {
	for _, a := range args[1:] {
		if a == "-torture.child" || a == "--torture.child" {
			return true
		}
	}
	return false
}

// RunChild runs an instance process: it parses args (os.Args[1:] of a
// binary started with -torture.child), switches off the guards named by
// -torture.disable, builds the instance, and serves the parent's commands
// from stdin until "quit" or EOF. It returns the process exit code.
func RunChild(args []string, stdin io.Reader, stdout io.Writer) int {
	fs := flag.NewFlagSet("torture-child", flag.ContinueOnError)
	fs.Bool("torture.child", false, "run as an instance process")
	cfgJSON := fs.String("torture.config", "", "the instance's Config, as JSON")
	var disable []string
	fs.Func("torture.disable", "a guard to switch off (repeatable)", func(s string) error {
		disable = append(disable, s)
		return nil
	})
	// The test binary's own flags (-test.*) may follow: ignore them.
	var own []string
	for _, a := range args {
		if strings.HasPrefix(strings.TrimLeft(a, "-"), "torture.") {
			own = append(own, a)
		}
	}
	if err := fs.Parse(own); err != nil {
		fmt.Fprintln(os.Stderr, "torture child:", err)
		return 2
	}
	var cfg Config
	if err := json.Unmarshal([]byte(*cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "torture child: bad -torture.config:", err)
		return 2
	}
	for _, g := range disable {
		failpoint.Disable(g) // for the life of the process
	}
	if err := runChild(cfg, stdin, stdout); err != nil {
		fmt.Fprintf(os.Stderr, "torture child %d: %v\n", cfg.Inst, err)
		return 1
	}
	return 0
}

// instance is one running instance process.
type instance struct {
	cfg  Config
	db   *gorm.DB              // with the gormcache plugin: the repository and the plain-GORM writers use it
	rdb  redis.UniversalClient // the cache's
	brdb redis.UniversalClient // the bus's
	feed *changefeed.Relay     // nil without Config.FeedSlot
	c    *cache.Cache
	bus  *invalidation.Bus
	repo *repository.Repository[Row, int64]
	log  *Log

	// raw shares db's pool without the plugin, for the writes that must go
	// around the library: outside writes, the kill -9 between COMMIT and
	// invalidation, and the long rows' writes (which invalidate their own
	// key). The plugin would invalidate them itself, and its optimistic
	// locking would raise the version an outside write means to leave as
	// it is.
	raw      *gorm.DB
	rowTable string // the quoted table name, for raw SQL

	tokens atomic.Int64

	// gate: every write holds it shared from before it starts until it is
	// recorded; the "die" path takes it exclusively, so no write is in
	// flight (committed, not recorded) when the process kills itself.
	gate sync.RWMutex
	die  atomic.Bool // the next update commits around the library and kills the process
	// longIDs maps the stored (hashed) key of each long row to its id.
	longIDs map[string]int64
	extra   sync.WaitGroup // "outside" bursts

	// Written by the monitor goroutine.
	monMu   sync.Mutex
	epoch   uint64
	epochAt time.Time // last epoch change seen
	pending uint64    // PendingEpochBumps last seen
	pendAt  time.Time // when it last grew

	stop chan struct{}  // closed to stop the workload
	wg   sync.WaitGroup // workload goroutines
}

var errRollback = errors.New("torture: roll back")

func runChild(cfg Config, stdin io.Reader, stdout io.Writer) error {
	ctx := context.Background()
	if cfg.PoolSize == 0 {
		cfg.PoolSize = 8
	}
	if cfg.HotRows == 0 || cfg.HotRows > cfg.Rows {
		cfg.HotRows = cfg.Rows
	}
	if cfg.ZipfS <= 1 {
		cfg.ZipfS = 1.1
	}
	in := &instance{cfg: cfg}
	var err error
	if in.log, err = CreateLog(cfg.Log); err != nil {
		return err
	}
	defer in.log.Close()
	in.db, err = gorm.Open(postgres.Open(cfg.DSN), &gorm.Config{
		Logger:         logger.Discard,
		NamingStrategy: schema.NamingStrategy{TablePrefix: cfg.TablePrefix},
	})
	if err != nil {
		return err
	}
	sqlDB, err := in.db.DB()
	if err != nil {
		return err
	}
	sqlDB.SetMaxOpenConns(cfg.PoolSize)
	sqlDB.SetMaxIdleConns(cfg.PoolSize)
	defer sqlDB.Close()
	if in.raw, err = gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{
		Logger:         logger.Discard,
		NamingStrategy: schema.NamingStrategy{TablePrefix: cfg.TablePrefix},
	}); err != nil {
		return err
	}
	stmt := &gorm.Statement{DB: in.db}
	if err := stmt.Parse(&Row{}); err != nil {
		return err
	}
	in.rowTable = stmt.Quote(stmt.Table)

	co := cache.Options{Namespace: cfg.Namespace, EpochInterval: cfg.EpochInterval, RedisRetryAfter: cfg.RedisRetryAfter, L2TTL: cfg.L2TTL}
	if cfg.NoL1 {
		co.L1MaxBytes = -1
	}
	in.longIDs = map[string]int64{}
	for i := int64(1); i <= int64(cfg.LongRows); i++ {
		in.longIDs[storedKey(LongKey(cfg.longBase()+i))] = cfg.longBase() + i
	}
	if cfg.FillDelay > 0 {
		delay := func(context.Context, string) { time.Sleep(cfg.FillDelay) }
		for id := int64(1); id <= cfg.longBase(); id++ {
			defer failpoint.Set(failpoint.BeforeL2Fill, RowKey(id), delay)()
		}
		for k := range in.longIDs {
			defer failpoint.Set(failpoint.BeforeL2Fill, k, delay)()
		}
	}
	newClient := func(addr string, m map[string]string) redis.UniversalClient {
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			if p, ok := m[addr]; ok { // a server: through this instance's proxy
				addr = p
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
		switch {
		case len(cfg.ClusterAddrs) > 0:
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: cfg.ClusterAddrs, ContextTimeoutEnabled: true, Dialer: dial})
		case len(cfg.SentinelAddrs) > 0:
			return redis.NewFailoverClient(&redis.FailoverOptions{
				MasterName: cfg.MasterName, SentinelAddrs: cfg.SentinelAddrs, ContextTimeoutEnabled: true, Dialer: dial,
			})
		}
		return redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	}
	if cfg.RedisAddr != "" || len(cfg.SentinelAddrs) > 0 || len(cfg.ClusterAddrs) > 0 {
		in.rdb = newClient(cfg.RedisAddr, cfg.DataAddrMap)
		defer in.rdb.Close()
		co.Redis = in.rdb
	}
	if in.c, err = cache.New(ctx, co); err != nil {
		return err
	}
	defer in.c.Close()
	if in.rdb != nil {
		in.brdb = newClient(cfg.BusRedisAddr, cfg.BusAddrMap)
		defer in.brdb.Close()
		in.bus, err = invalidation.New(ctx, in.c, invalidation.Options{
			Redis: in.brdb, InstanceID: "i" + strconv.Itoa(cfg.Inst), HealthWindow: cfg.HealthWindow,
			OnApply: in.onApply,
		})
		if err != nil {
			return err
		}
		defer in.bus.Close()
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := in.bus.WaitHealthy(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("bus not healthy: %w", err)
		}
	}
	if in.repo, err = repository.New[Row, int64](in.db, in.c, repository.Options{Namespace: RowNamespace}); err != nil {
		return err
	}
	// After the repository: it registered its namespace on db's
	// configuration, so plain writes of the table retire "row:<id>" in c.
	if err := in.db.Use(&gormcache.Plugin{Cache: in.c}); err != nil {
		return err
	}

	if cfg.FeedSlot != "" {
		stopFeed, err := in.runFeed(stmt.Table)
		if err != nil {
			return err
		}
		defer stopFeed()
	}

	monStop := make(chan struct{})
	var mon sync.WaitGroup
	mon.Add(1)
	go in.monitor(monStop, &mon)
	defer func() {
		close(monStop)
		mon.Wait()
	}()

	out := json.NewEncoder(stdout)
	if err := out.Encode(response{Ready: true}); err != nil {
		return err
	}
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		var req request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			return err
		}
		var resp response
		switch req.Cmd {
		case "start":
			in.start()
		case "stop":
			resp.Ops = in.stopWorkload()
			cs := in.c.Stats()
			resp.Cache = &cs
			if in.bus != nil {
				bs := in.bus.Stats()
				resp.Bus = &bs
			}
			if in.feed != nil {
				fs := in.feed.Stats()
				resp.Feed = &fs
			}
		case "status":
			st := in.status()
			resp.Status = &st
		case "peek":
			p, err := in.peek(ctx)
			if err != nil {
				resp.Err = err.Error()
			}
			resp.Peek = p
		case "quit":
			in.stopWorkload()
			return out.Encode(response{})
		case "outside":
			in.outsideBurst(req.N)
		case "die":
			in.die.Store(true)
		case "crash":
			// kill -9 with no write in flight (every committed write is
			// recorded and invalidated): what it tests is the loss of this
			// instance's relay, which may hold the change feed's lease.
			in.gate.Lock()
			in.log.Flush()
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		case "shutdown":
			// A rolling deploy: stop, close the cache (which flushes a
			// pending epoch bump within WriteTimeout, or says it could
			// not), then the bus, and exit.
			in.stopWorkload()
			if err := in.c.Close(); err != nil {
				resp.CloseErr = err.Error()
			} else {
				now := time.Now().UnixNano()
				in.log.Record(Op{Inst: in.cfg.Inst, Kind: KindEpoch, Call: now, Ret: now, Ver: in.c.Stats().Epoch, Status: StatusOK})
			}
			if in.bus != nil {
				in.bus.Close()
			}
			in.log.Flush()
			return out.Encode(resp)
		default:
			resp.Err = "unknown command " + req.Cmd
		}
		if err := out.Encode(resp); err != nil {
			return err
		}
	}
	in.stopWorkload()
	return sc.Err()
}

// monitor records every epoch change of the cache (for the checker's bound
// on degraded writes) and when invalidations last missed Redis, and flushes
// the log regularly so the parent can check while the workload runs.
func (in *instance) monitor(stop chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	lastFlush := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		st := in.c.Stats()
		now := time.Now()
		in.monMu.Lock()
		if st.Epoch != in.epoch {
			if in.epoch != 0 {
				in.log.Record(Op{Inst: in.cfg.Inst, Kind: KindEpoch, Call: now.UnixNano(), Ret: now.UnixNano(), Ver: st.Epoch, Status: StatusOK})
			}
			in.epoch, in.epochAt = st.Epoch, now
		}
		if st.PendingEpochBumps != in.pending {
			in.pending, in.pendAt = st.PendingEpochBumps, now
		}
		in.monMu.Unlock()
		if now.Sub(lastFlush) > 200*time.Millisecond {
			in.log.Flush()
			lastFlush = now
		}
	}
}

func (in *instance) status() InstanceStatus {
	st := InstanceStatus{BusHealthy: true, RedisHealthy: in.c.RedisHealthy(), Serving: in.c.LocalServing()}
	if in.bus != nil {
		bs := in.bus.Stats()
		st.BusHealthy, st.Queued = bs.Healthy, bs.Queued
	}
	interval := in.cfg.EpochInterval
	if interval == 0 {
		interval = cache.DefaultEpochInterval
	}
	if in.feed != nil {
		st.FeedLeader = in.feed.Stats().IsLeader
	}
	in.monMu.Lock()
	st.BumpsCovered = in.pendAt.IsZero() || in.epochAt.After(in.pendAt) || time.Since(in.pendAt) > 2*interval
	in.monMu.Unlock()
	return st
}

func (in *instance) peek(ctx context.Context) (*InstancePeek, error) {
	p := &InstancePeek{Inst: in.cfg.Inst, Serving: in.c.LocalServing()}
	for id := int64(1); id <= in.cfg.extBase()+int64(in.cfg.ExternalRows); id++ {
		key := RowKey(id)
		if id > in.cfg.longBase() && id <= in.cfg.extBase() {
			key = LongKey(id)
		}
		l1, l2, err := in.c.Peek(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("peek %d: %w", id, err)
		}
		if l1.Present || l2.Present {
			p.Entries = append(p.Entries, PeekEntry{Key: id, L1: l1, L2: l2})
		}
	}
	return p, nil
}

// runFeed starts this instance's change-feed relay on table and returns
// what stops it.
func (in *instance) runFeed(table string) (func(), error) {
	cfg := in.cfg
	r, err := changefeed.New(changefeed.Options{
		ConnString: cfg.FeedDSN, Cache: in.c, DB: in.db, Tables: []string{table},
		Slot: cfg.FeedSlot, Publication: cfg.FeedPublication, Redis: in.rdb,
		LeaseTTL: cfg.FeedLeaseTTL, InstanceID: "i" + strconv.Itoa(cfg.Inst),
		StandbyInterval: 100 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
	})
	if err != nil {
		return nil, err
	}
	in.feed = r
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(context.Background()); err != nil {
			fmt.Fprintf(os.Stderr, "torture child %d: change feed: %v\n", cfg.Inst, err)
		}
	}()
	return func() {
		r.Close()
		<-done
	}, nil
}

// start launches the workload goroutines.
func (in *instance) start() {
	if in.stop != nil {
		return
	}
	in.stop = make(chan struct{})
	n := 0
	spawn := func(count int, f func(w *worker)) {
		for range count {
			n++
			w := &worker{in: in, rng: rand.New(rand.NewPCG(in.cfg.Seed, uint64(in.cfg.Inst)<<32|uint64(n)))}
			w.zipf = rand.NewZipf(w.rng, in.cfg.ZipfS, 1, uint64(in.cfg.HotRows-1))
			in.wg.Add(1)
			go func() {
				defer in.wg.Done()
				f(w)
			}()
		}
	}
	spawn(in.cfg.Readers, (*worker).reader)
	spawn(in.cfg.Writers, (*worker).writer)
	spawn(in.cfg.Txers, (*worker).txer)
	spawn(in.cfg.GormWriters, (*worker).gormWriter)
}

// stopWorkload stops the workload goroutines, waits for them and flushes
// the log. It returns the number of operations recorded.
func (in *instance) stopWorkload() int64 {
	if in.stop != nil {
		close(in.stop)
		in.wg.Wait()
		in.extra.Wait()
		in.stop = nil
	}
	in.log.Flush()
	return in.log.Len()
}

// worker is one workload goroutine.
type worker struct {
	in   *instance
	rng  *rand.Rand
	zipf *rand.Zipf
	// burst state: active until activeUntil, then idle until idleUntil.
	activeUntil, idleUntil time.Time
}

func (w *worker) stopped() bool {
	select {
	case <-w.in.stop:
		return true
	default:
		return false
	}
}

// pause sleeps d, or less if the workload stops.
func (w *worker) pause(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.in.stop:
	case <-t.C:
	}
}

func (w *worker) key() int64 { return 1 + int64(w.zipf.Uint64()) }

func (w *worker) jitter(d time.Duration) time.Duration {
	return time.Duration(w.rng.Int64N(2*int64(d) + 1))
}

// burst blocks while the worker is in an idle period.
func (w *worker) burst() {
	cfg := w.in.cfg
	if cfg.BurstOn <= 0 || cfg.BurstOff <= 0 {
		return
	}
	now := time.Now()
	if now.Before(w.activeUntil) {
		return
	}
	if now.Before(w.idleUntil) {
		w.pause(time.Until(w.idleUntil))
		return
	}
	w.activeUntil = now.Add(w.jitter(cfg.BurstOn))
	w.idleUntil = w.activeUntil.Add(w.jitter(cfg.BurstOff))
}

func (w *worker) token() int64 { return int64(w.in.cfg.Inst)<<40 | w.in.tokens.Add(1) }

func (w *worker) pendingBumps() uint64 { return w.in.c.Stats().PendingEpochBumps }

// read gets row id and records it.
func (w *worker) read(id int64) (*Row, bool) {
	ctx := context.Background()
	op := Op{Inst: w.in.cfg.Inst, Key: id, Kind: KindRead, Call: time.Now().UnixNano()}
	r, err := w.in.repo.Get(ctx, id)
	op.Ret = time.Now().UnixNano()
	switch {
	case err == nil:
		op.Status, op.Ver, op.Token = StatusOK, uint64(r.Version), r.Token
	case errors.Is(err, repository.ErrNotFound):
		op.Status, op.Err = StatusNotFound, err.Error()
	default:
		op.Status, op.Err = StatusError, err.Error()
	}
	w.in.log.Record(op)
	return r, err == nil
}

// update writes r with a new token and records it.
func (w *worker) update(r *Row) bool {
	ctx := context.Background()
	old := uint64(r.Version)
	r.Token = w.token()
	r.Note = "w" + strconv.FormatInt(r.Token, 36)
	if w.in.die.CompareAndSwap(true, false) {
		return w.dieAfterCommit(r, old)
	}
	w.in.gate.RLock()
	defer w.in.gate.RUnlock()
	op := Op{Inst: w.in.cfg.Inst, Key: r.ID, Kind: KindWrite, Token: r.Token, Ver: old + 1}
	pb := w.pendingBumps()
	op.Call = time.Now().UnixNano()
	err := w.in.repo.Update(ctx, r)
	op.Ret = time.Now().UnixNano()
	switch {
	case err == nil:
		op.Status, op.Ver = StatusOK, uint64(r.Version)
		op.Degraded = w.pendingBumps() != pb
	case errors.Is(err, cache.ErrInvalidationUnconfirmed):
		// Committed; Redis did not confirm the invalidation in time.
		op.Status, op.Ver, op.Err = StatusOK, uint64(r.Version), err.Error()
		op.Unconfirmed, op.Degraded = true, true
	case errors.Is(err, repository.ErrConflict):
		op.Status, op.Err = StatusConflict, err.Error()
	default:
		op.Status, op.Err = StatusError, err.Error()
	}
	w.in.log.Record(op)
	return op.Status == StatusOK
}

// dieAfterCommit is the kill -9 between COMMIT and invalidation: it waits
// until no other write is in flight, commits r's update with plain GORM
// on the handle without the plugin (the repository has no failpoint
// between its COMMIT and its invalidation, and the plugin would invalidate
// before returning), records it as a killed write, flushes the log and kills
// its own process before invalidating anything.
func (w *worker) dieAfterCommit(r *Row, old uint64) bool {
	in := w.in
	in.gate.Lock()
	op := Op{Inst: in.cfg.Inst, Key: r.ID, Kind: KindWrite, Token: r.Token, Ver: old + 1, Call: time.Now().UnixNano()}
	res := in.raw.Model(&Row{}).Where("id = ? AND version = ?", r.ID, old).
		Updates(map[string]any{"token": r.Token, "note": r.Note, "version": old + 1})
	op.Ret = time.Now().UnixNano()
	if res.Error != nil || res.RowsAffected == 0 {
		in.gate.Unlock()
		in.die.Store(true) // try again with the next write
		if res.Error == nil {
			op.Status = StatusConflict
			in.log.Record(op)
		}
		return false
	}
	op.Status, op.Killed = StatusOK, true
	in.log.Record(op)
	in.log.Flush()
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // never returns
}

func (w *worker) reader() {
	cfg := w.in.cfg
	for !w.stopped() {
		switch x := w.rng.Float64(); {
		case cfg.OutsideRows > 0 && x < 0.15:
			w.read(cfg.outsideBase() + 1 + w.rng.Int64N(int64(cfg.OutsideRows)))
		case cfg.LongRows > 0 && x > 0.85:
			w.readLong(cfg.longBase() + 1 + w.rng.Int64N(int64(cfg.LongRows)))
		case cfg.ExternalRows > 0 && x >= 0.15 && x < 0.3:
			w.read(cfg.extBase() + 1 + w.rng.Int64N(int64(cfg.ExternalRows)))
		default:
			w.read(w.key())
		}
		w.pause(w.jitter(w.in.cfg.ReadPause))
	}
}

// readLong reads a long-key row with cache.Get and records it.
func (w *worker) readLong(id int64) (*Row, bool) {
	ctx := context.Background()
	op := Op{Inst: w.in.cfg.Inst, Key: id, Kind: KindRead, Call: time.Now().UnixNano()}
	r, err := cache.Get(ctx, w.in.c, LongKey(id), func(ctx context.Context, _ string) (Row, uint64, error) {
		var r Row
		if err := w.in.db.WithContext(ctx).Take(&r, id).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return r, 0, cache.ErrNotFound
			}
			return r, 0, err
		}
		return r, uint64(r.Version), nil
	})
	op.Ret = time.Now().UnixNano()
	switch {
	case err == nil:
		op.Status, op.Ver, op.Token = StatusOK, uint64(r.Version), r.Token
	case errors.Is(err, cache.ErrNotFound):
		op.Status, op.Err = StatusNotFound, err.Error()
	default:
		op.Status, op.Err = StatusError, err.Error()
	}
	w.in.log.Record(op)
	return &r, err == nil
}

// writeLong updates a long-key row with plain GORM (versioned, on the
// handle without the plugin) and invalidates its long key, and records it.
func (w *worker) writeLong(r *Row) {
	w.in.gate.RLock()
	defer w.in.gate.RUnlock()
	ctx := context.Background()
	old := uint64(r.Version)
	tok := w.token()
	op := Op{Inst: w.in.cfg.Inst, Key: r.ID, Kind: KindWrite, Token: tok, Ver: old + 1}
	pb := w.pendingBumps()
	op.Call = time.Now().UnixNano()
	res := w.in.raw.WithContext(ctx).Model(&Row{}).Where("id = ? AND version = ?", r.ID, old).
		Updates(map[string]any{"token": tok, "note": "l" + strconv.FormatInt(tok, 36), "version": old + 1})
	var err error
	switch {
	case res.Error != nil:
		err = res.Error
		w.in.c.Invalidate(ctx, LongKey(r.ID), old+1) // outcome unknown: as if committed
	case res.RowsAffected == 0:
		err = repository.ErrConflict
	default:
		err = w.in.c.Invalidate(ctx, LongKey(r.ID), old+1)
	}
	op.Ret = time.Now().UnixNano()
	switch {
	case err == nil:
		op.Status, op.Degraded = StatusOK, w.pendingBumps() != pb
	case errors.Is(err, cache.ErrInvalidationUnconfirmed):
		op.Status, op.Err, op.Unconfirmed, op.Degraded = StatusOK, err.Error(), true, true
	case errors.Is(err, repository.ErrConflict):
		op.Status, op.Err = StatusConflict, err.Error()
	default:
		op.Status, op.Err = StatusError, err.Error()
	}
	w.in.log.Record(op)
}

// outsideBurst runs n writes around the library on the outside rows, in
// the background (the workload's stop waits for them).
func (in *instance) outsideBurst(n int) {
	if in.cfg.OutsideRows == 0 || in.stop == nil {
		return
	}
	w := &worker{in: in, rng: rand.New(rand.NewPCG(in.cfg.Seed^uint64(time.Now().UnixNano()), uint64(in.cfg.Inst)))}
	in.extra.Add(1)
	go func() {
		defer in.extra.Done()
		for range max(n, 1) {
			if w.stopped() {
				return
			}
			id := in.cfg.outsideBase() + 1 + w.rng.Int64N(int64(in.cfg.OutsideRows))
			w.outsideWrite(id, w.rng.IntN(3) == 0)
			w.read(id)
		}
	}()
}

// outsideWrite writes row id around the library, in a transaction that
// locks the row first (so that outside writes of a row form one chain of
// tokens): a plain GORM update of the note and token that leaves the
// version as it is, or (reinsert) a DELETE and an INSERT at version 1, on
// the handle without the plugin.
// Then Repository.Invalidate(id). The write is acknowledged when
// Invalidate returns.
func (w *worker) outsideWrite(id int64, reinsert bool) {
	in := w.in
	in.gate.RLock()
	defer in.gate.RUnlock()
	ctx := context.Background()
	for attempt := 0; attempt < 5; attempt++ {
		tok := w.token()
		op := Op{Inst: in.cfg.Inst, Key: id, Kind: KindWrite, Outside: true, Token: tok}
		pb := w.pendingBumps()
		var fnDone, gone bool
		op.Call = time.Now().UnixNano()
		err := in.raw.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			var cur Row
			if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Take(&cur, id).Error; err != nil {
				gone = errors.Is(err, gorm.ErrRecordNotFound) // re-inserted under our feet: try again
				return err
			}
			op.Prev = cur.Token
			note := "x" + strconv.FormatInt(tok, 36)
			if reinsert {
				if err := tx.Delete(&Row{}, id).Error; err != nil {
					return err
				}
				if err := tx.Create(&Row{ID: id, Token: tok, Note: note, Version: 1}).Error; err != nil {
					return err
				}
				op.Ver = 1
			} else {
				if err := tx.Model(&cur).Updates(map[string]any{"note": note, "token": tok}).Error; err != nil {
					return err
				}
				op.Ver = uint64(cur.Version)
			}
			fnDone = true
			return nil
		})
		if gone {
			time.Sleep(time.Millisecond)
			continue
		}
		if err == nil || fnDone { // committed, or COMMIT's outcome unknown
			if ierr := in.repo.Invalidate(ctx, id); err == nil {
				err = ierr
			}
		}
		op.Ret = time.Now().UnixNano()
		switch {
		case err == nil:
			op.Status, op.Degraded = StatusOK, w.pendingBumps() != pb
		case errors.Is(err, cache.ErrInvalidationUnconfirmed):
			op.Status, op.Err, op.Unconfirmed, op.Degraded = StatusOK, err.Error(), true, true
		case fnDone:
			op.Status, op.Err = StatusError, err.Error()
		default:
			return // rolled back: nothing visible
		}
		in.log.Record(op)
		return
	}
}

// onApply records every announcement of an unconfirmed write this instance
// applied (the checker's rule for GuardSuspect).
func (in *instance) onApply(e invalidation.Event, _ time.Duration) {
	if e.Kind != invalidation.KindUnconfirmed {
		return
	}
	now := time.Now().UnixNano()
	for _, k := range e.Keys {
		if k.Version == 0 {
			continue // retired or stamped: no version to hold reads to
		}
		id, ok := in.longIDs[k.Key]
		if !ok {
			n, err := strconv.ParseInt(strings.TrimPrefix(k.Key, RowNamespace+":"), 10, 64)
			if err != nil || !strings.HasPrefix(k.Key, RowNamespace+":") {
				continue
			}
			id = n
		}
		in.log.Record(Op{Inst: in.cfg.Inst, Key: id, Kind: KindSuspect, Call: now, Ret: now, Ver: k.Version, Status: StatusOK})
	}
}

// writer reads a row, updates it (sometimes twice in a row, from the struct
// the first update returned), then reads it back.
func (w *worker) writer() {
	for !w.stopped() {
		w.burst()
		if w.stopped() {
			return
		}
		if cfg := w.in.cfg; cfg.LongRows > 0 && w.rng.Float64() < 0.15 {
			id := cfg.longBase() + 1 + w.rng.Int64N(int64(cfg.LongRows))
			if r, ok := w.readLong(id); ok {
				w.writeLong(r)
			}
			w.readLong(id)
			w.pause(w.jitter(w.in.cfg.WritePause))
			continue
		}
		id := w.key()
		if r, ok := w.read(id); ok && w.update(r) {
			if w.rng.Float64() < w.in.cfg.ChainProb {
				w.update(r)
			}
		}
		w.read(id)
		w.pause(w.jitter(w.in.cfg.WritePause))
	}
}

// txer runs transactions that read a row (through the repository, or half
// the time with SELECT ... FOR UPDATE around it), update it and read it
// again through the repository inside the transaction, then commit or roll
// back; then it reads the row outside the transaction.
func (w *worker) txer() {
	ctx := context.Background()
	for !w.stopped() {
		w.burst()
		if w.stopped() {
			return
		}
		id := w.key()
		if w.in.cfg.TxUniform {
			id = 1 + w.rng.Int64N(int64(w.in.cfg.Rows))
		}
		rollback := w.rng.Float64() < w.in.cfg.RollbackProb
		token := w.token()
		op := Op{Inst: w.in.cfg.Inst, Key: id, Kind: KindWrite, Token: token}
		var updated, fnDone, conflict bool
		pb := w.pendingBumps()
		w.in.gate.RLock()
		op.Call = time.Now().UnixNano()
		lock := w.rng.IntN(2) == 0
		err := repository.Transaction(ctx, w.in.db, func(tx *repository.Tx) error {
			tr := w.in.repo.WithTx(tx)
			r := new(Row)
			var err error
			if lock { // SELECT ... FOR UPDATE, around the repository
				err = tx.DB().WithContext(ctx).Clauses(clause.Locking{Strength: "UPDATE"}).Take(r, id).Error
			} else {
				r, err = tr.Get(ctx, id)
			}
			if err != nil {
				return err
			}
			op.Ver = uint64(r.Version) + 1
			r.Token, r.Note = token, "t"+strconv.FormatInt(token, 36)
			if err := tr.Update(ctx, r); err != nil {
				conflict = errors.Is(err, repository.ErrConflict)
				return err
			}
			updated = true
			if _, err := tr.Get(ctx, id); err != nil { // sees its own uncommitted write
				return err
			}
			if rollback {
				return errRollback
			}
			fnDone = true
			return nil
		})
		op.Ret = time.Now().UnixNano()
		switch {
		case err == nil:
			op.Status, op.Degraded = StatusOK, w.pendingBumps() != pb
		case fnDone && errors.Is(err, cache.ErrInvalidationUnconfirmed): // committed
			op.Status, op.Err, op.Unconfirmed, op.Degraded = StatusOK, err.Error(), true, true
		case conflict:
			op.Status, op.Err = StatusConflict, err.Error()
		case fnDone: // COMMIT failed: outcome unknown
			op.Status, op.Err = StatusError, err.Error()
		default: // rolled back, on purpose or not: never visible
			op.Kind, op.Status = KindRollback, StatusOK
			if !errors.Is(err, errRollback) {
				op.Status, op.Err = StatusError, err.Error()
			}
		}
		if updated || conflict { // else it failed before writing anything
			w.in.log.Record(op)
		}
		w.in.gate.RUnlock()
		w.read(id)
		w.pause(w.jitter(w.in.cfg.WritePause))
	}
}
