package torture

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/cache"
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

	Log  string // path of the operation log
	Seed uint64
}

// request is one command from the parent, one JSON line on stdin.
type request struct {
	Cmd string `json:"cmd"` // start, stop, status, peek, quit
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
	db   *gorm.DB
	rdb  *redis.Client // the cache's
	brdb *redis.Client // the bus's
	c    *cache.Cache
	bus  *invalidation.Bus
	repo *repository.Repository[Row, int64]
	log  *Log

	tokens atomic.Int64

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

	co := cache.Options{Namespace: cfg.Namespace, EpochInterval: cfg.EpochInterval, RedisRetryAfter: cfg.RedisRetryAfter}
	if cfg.NoL1 {
		co.L1MaxBytes = -1
	}
	if cfg.RedisAddr != "" {
		in.rdb = redis.NewClient(&redis.Options{Addr: cfg.RedisAddr, ContextTimeoutEnabled: true})
		defer in.rdb.Close()
		co.Redis = in.rdb
	}
	if in.c, err = cache.New(ctx, co); err != nil {
		return err
	}
	defer in.c.Close()
	if cfg.RedisAddr != "" {
		in.brdb = redis.NewClient(&redis.Options{Addr: cfg.BusRedisAddr, ContextTimeoutEnabled: true})
		defer in.brdb.Close()
		in.bus, err = invalidation.New(ctx, in.c, invalidation.Options{
			Redis: in.brdb, InstanceID: "i" + strconv.Itoa(cfg.Inst), HealthWindow: cfg.HealthWindow,
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
	in.monMu.Lock()
	st.BumpsCovered = in.pendAt.IsZero() || in.epochAt.After(in.pendAt) || time.Since(in.pendAt) > 2*interval
	in.monMu.Unlock()
	return st
}

func (in *instance) peek(ctx context.Context) (*InstancePeek, error) {
	p := &InstancePeek{Inst: in.cfg.Inst, Serving: in.c.LocalServing()}
	for id := int64(1); id <= int64(in.cfg.Rows); id++ {
		l1, l2, err := in.c.Peek(ctx, RowKey(id))
		if err != nil {
			return nil, fmt.Errorf("peek %d: %w", id, err)
		}
		if l1.Present || l2.Present {
			p.Entries = append(p.Entries, PeekEntry{Key: id, L1: l1, L2: l2})
		}
	}
	return p, nil
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
}

// stopWorkload stops the workload goroutines, waits for them and flushes
// the log. It returns the number of operations recorded.
func (in *instance) stopWorkload() int64 {
	if in.stop != nil {
		close(in.stop)
		in.wg.Wait()
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
	op := Op{Inst: w.in.cfg.Inst, Key: r.ID, Kind: KindWrite, Token: r.Token, Ver: old + 1}
	pb := w.pendingBumps()
	op.Call = time.Now().UnixNano()
	err := w.in.repo.Update(ctx, r)
	op.Ret = time.Now().UnixNano()
	switch {
	case err == nil:
		op.Status, op.Ver = StatusOK, uint64(r.Version)
		op.Degraded = w.pendingBumps() != pb
	case errors.Is(err, repository.ErrConflict):
		op.Status, op.Err = StatusConflict, err.Error()
	default:
		op.Status, op.Err = StatusError, err.Error()
	}
	w.in.log.Record(op)
	return err == nil
}

func (w *worker) reader() {
	for !w.stopped() {
		w.read(w.key())
		w.pause(w.jitter(w.in.cfg.ReadPause))
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
		w.read(id)
		w.pause(w.jitter(w.in.cfg.WritePause))
	}
}
