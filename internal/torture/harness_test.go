package torture

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/changefeed"
	"github.com/gormcache/gormcache/internal/testenv"
	"github.com/gormcache/gormcache/invalidation"
)

// faultKind names a fault the parent injects.
type faultKind string

// The faults.
const (
	fNone         faultKind = ""
	fKillPubsub   faultKind = "client-kill-pubsub" // CLIENT KILL TYPE pubsub
	fPause        faultKind = "client-pause-write" // CLIENT PAUSE <ms> WRITE
	fScriptFlush  faultKind = "script-flush"       // SCRIPT FLUSH
	fRedisRestart faultKind = "redis-restart"      // SIGKILL the redis-server, start it again (empty)
	fSigstop      faultKind = "sigstop"            // SIGSTOP an instance process, SIGCONT later
	fPGKill       faultKind = "pg-terminate"       // pg_terminate_backend of instances' connections
	fLatency      faultKind = "net-latency"        // delay through an instance's proxy (data or bus)
	fReset        faultKind = "net-reset"          // RST every connection through an instance's proxy
	fBlackhole    faultKind = "net-blackhole-bus"  // an instance's bus connection silent
	fCut          faultKind = "net-cut-data"       // an instance's cache connections refused
	fCutBus       faultKind = "net-cut-bus"        // an instance's bus connections refused
	fPGLatency    faultKind = "net-latency-pg"     // delay through the instances' Postgres proxy
	fPGReset      faultKind = "net-reset-pg"       // RST every connection through the Postgres proxy

	// The faults of issue 10: Redis loses, evicts or refuses what it
	// acknowledged, and writers that stop at the wrong moment.
	fSentinelFailover faultKind = "sentinel-failover"        // SENTINEL FAILOVER during traffic (sentinel profiles)
	fSentinelKill     faultKind = "sentinel-kill-lagging"    // the replica stops replicating, the primary is killed -9, the sentinels promote the replica
	fRDBRestore       faultKind = "rdb-restore"              // SAVE, writes go on, SIGKILL, restart from the older dump.rdb
	fMaxmemNoEvict    faultKind = "maxmemory-noeviction"     // memory full (filler), maxmemory-policy noeviction
	fMaxmemAllLRU     faultKind = "maxmemory-allkeys-lru"    // memory full (filler), allkeys-lru
	fMaxmemVolLRU     faultKind = "maxmemory-volatile-lru"   // memory full (filler), volatile-lru
	fMaxmemAllRandom  faultKind = "maxmemory-allkeys-random" // memory full (filler), allkeys-random
	fSlowRedis        faultKind = "slow-redis"               // 150-500 ms each way on one instance's cache connections (slower than RedisTimeout)
	fSlowLossy        faultKind = "slow-lossy-redis"         // the same, and its connections reset every 30-100 ms (commands in flight are lost)
	fWriterShutdown   faultKind = "writer-shutdown"          // cut one instance's cache connections, then Close it (rolling deploy): healed before, during, or never
	fKill9            faultKind = "kill9-after-commit"       // an instance commits a write and kills itself (SIGKILL) before invalidating
	fOperatorDel      faultKind = "operator-del"             // DEL of every key of the namespace but the epoch's
	fOutsideWrite     faultKind = "outside-write"            // writes around the library (version unchanged, or DELETE + re-insert at 1), then Repository.Invalidate
	fPausedRestore    faultKind = "paused-across-restore"    // SAVE, writes, SIGSTOP an instance, restart Redis from the dump, SIGCONT

	// Writes the library never sees, and Redis Cluster.
	fExternal        faultKind = "external-writer"  // another program's plain-SQL UPDATEs, INSERTs and DELETEs, covered by the change feed; sometimes the feed's leader is killed -9
	fClusterFailover faultKind = "cluster-failover" // CLUSTER FAILOVER on a replica, or kill -9 of a primary, of the slot of a hot key, the epoch key or the bus channel (cluster profiles)
	fClusterMigrate  faultKind = "cluster-migrate"  // that slot moved to another primary (SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE)
)

// feedLeaseTTL is the relays' changefeed.Options.LeaseTTL in these runs
// (default 5 s): short, so that a killed leader is replaced within a run.
const feedLeaseTTL = time.Second

// feedBound is the change feed's bound, added to B_check for the writes
// of the external writer (which the library never sees). The project
// states it in two parts. While a leader streams, every committed
// transaction is invalidated from the stream within milliseconds (README,
// change feed: COMMIT to a fresh read on another instance p99 3 ms, max
// 10 ms). While the relay is down or re-electing, "writes wait in its slot
// and are applied when it resumes (leader lease TTL plus reconnection)":
// a dead leader is replaced within about LeaseTTL*4/3
// (changefeed.Options.LeaseTTL), a walsender it left holds the slot for at
// most one more lease lifetime, and the reconnection is allowed 1 s here
// (the relays' MaxBackoff is 500 ms; a session starts on a loaded machine).
// The changefeed tests' feedBound (15 s) is a loose limit for loaded CI
// runs, not the bound. Like B_check's 250 ms over HealthWindow, the check
// adds a scheduling slack (feedSlack): on 2 shared cores under -race, with
// a CPU hog, a takeover ran up to 0.2 s past the stated bound (its steps are
// timers, connections and process starts, all at the scheduler's mercy).
const feedBound = feedLeaseTTL*4/3 + feedLeaseTTL + time.Second + feedSlack

// feedSlack is the scheduling slack of feedBound (see there).
const feedSlack = time.Second

// verboseFaults are logged with their start time (they are rare and
// change the server under the instances).
var verboseFaults = map[faultKind]bool{fSentinelFailover: true, fSentinelKill: true, fRDBRestore: true, fPausedRestore: true, fWriterShutdown: true, fKill9: true,
	fClusterFailover: true, fClusterMigrate: true}

// maxmemPolicy is each maxmemory fault's policy.
var maxmemPolicy = map[faultKind]string{
	fMaxmemNoEvict: "noeviction", fMaxmemAllLRU: "allkeys-lru", fMaxmemVolLRU: "volatile-lru", fMaxmemAllRandom: "allkeys-random",
}

// maxFaultDur caps any fault's duration.
const maxFaultDur = 2 * time.Second

// span is a duration range [lo, hi] in which a fault's length is drawn.
type span struct{ lo, hi time.Duration }

func (s span) draw(r *rand.Rand) time.Duration {
	if s.hi <= s.lo {
		return s.lo
	}
	return s.lo + time.Duration(r.Int64N(int64(s.hi-s.lo)))
}

// profile is one torture run's shape.
type profile struct {
	name      string
	instances int
	rows      int
	hotRows   int
	zipfS     float64

	readers, writers, txers int
	gormWriters             int           // plain-GORM writers through the plugin (Config.GormWriters)
	gormExecEvery           time.Duration // their raw UPDATEs' pace (Config.GormExecEvery; 0: none)
	readPause, writePause   time.Duration
	chainProb, rollbackProb float64
	txUniform               bool
	burstOn, burstOff       time.Duration

	duration time.Duration
	// minOps and minFaults extend the run past duration until that many
	// operations have been recorded and faults injected (maxDuration caps
	// it).
	minOps, minFaults int
	maxDuration       time.Duration
	faults            map[faultKind]int // weights
	faultGap          span              // pause between faults
	// fault lengths, by kind (defaults below)
	lengths map[faultKind]span

	disable         string // guards switched off in the instances, comma-separated
	l1Only          bool   // process-local caches, no Redis, no bus
	noL1            bool
	pgProxy         bool // the instances reach Postgres through a proxy
	pgLatency       time.Duration
	healthWindow    time.Duration
	slack           time.Duration
	epochInterval   time.Duration
	redisRetryAfter time.Duration

	// sentinel runs the instances against a Sentinel deployment (a primary,
	// a replica and three sentinels) with redis.NewFailoverClient, each
	// server reached through the instance's proxies.
	sentinel bool
	// cluster runs the instances against a Redis Cluster
	// (testenv.StartCluster: three primaries with a replica each) with
	// redis.NewClusterClient, each node reached through the instance's
	// proxies.
	cluster bool
	// externalRows are written only by the external writer (fExternal),
	// which needs the logical cluster (GORMCACHE_PG_LOGICAL_DSN): with
	// fExternal in the mix, the run is on it and every instance runs a
	// change-feed relay.
	externalRows int
	// noRelays runs the external writer with no change-feed relay (what
	// the checker must then report as stale reads).
	noRelays bool
	// l2TTL is the instances' cache.Options.L2TTL (0: default) and the
	// checker's TTLAllowance for what only the TTLs bound.
	l2TTL time.Duration
	// fillDelay delays every Redis fill in the instances (targeted runs).
	fillDelay time.Duration
	// outsideRows and longRows: see Config; outsideBurst is how many
	// outside writes one fOutsideWrite makes (default 5).
	outsideRows, longRows, outsideBurst int
	// shutdownVariant forces fWriterShutdown's variant: 1 heals before
	// Close, 2 during it, 3 never (0: drawn).
	shutdownVariant int

	strict          bool          // no exemption for the known library issues
	stopOnViolation bool          // mutation runs: stop at the first violation
	checkEvery      time.Duration // how often to check while running (stopOnViolation)
	convergence     bool          // check convergence after the run
}

var defaultLengths = map[faultKind]span{
	fPause:        {50 * time.Millisecond, 300 * time.Millisecond},
	fRedisRestart: {100 * time.Millisecond, 400 * time.Millisecond},
	fSigstop:      {100 * time.Millisecond, 400 * time.Millisecond},
	fLatency:      {200 * time.Millisecond, 800 * time.Millisecond},
	fBlackhole:    {200 * time.Millisecond, 700 * time.Millisecond},
	fCut:          {100 * time.Millisecond, 500 * time.Millisecond},
	fCutBus:       {100 * time.Millisecond, 500 * time.Millisecond},
	fPGLatency:    {200 * time.Millisecond, 800 * time.Millisecond},

	fSentinelKill:    {300 * time.Millisecond, 800 * time.Millisecond}, // writes the replica misses before the kill
	fRDBRestore:      {200 * time.Millisecond, 800 * time.Millisecond}, // writes after the snapshot
	fMaxmemNoEvict:   {500 * time.Millisecond, 1500 * time.Millisecond},
	fMaxmemAllLRU:    {500 * time.Millisecond, 1500 * time.Millisecond},
	fMaxmemVolLRU:    {500 * time.Millisecond, 1500 * time.Millisecond},
	fMaxmemAllRandom: {500 * time.Millisecond, 1500 * time.Millisecond},
	fSlowRedis:       {1000 * time.Millisecond, 2000 * time.Millisecond},
	fSlowLossy:       {1000 * time.Millisecond, 2000 * time.Millisecond},
	fWriterShutdown:  {1200 * time.Millisecond, 2000 * time.Millisecond}, // the cut before Close: writes fail their invalidations
	fPausedRestore:   {300 * time.Millisecond, 600 * time.Millisecond},   // writes after the snapshot
	fExternal:        {500 * time.Millisecond, 1500 * time.Millisecond},  // the external writer's burst
}

// feed reports whether the run has the external writer, hence the change
// feed.
func (p profile) feed() bool { return p.faults[fExternal] > 0 }

// bound is B_check.
func (p profile) bound() time.Duration {
	hw := p.healthWindow
	if hw == 0 {
		hw = invalidation.DefaultHealthWindow
	}
	return hw + p.slack
}

func (p profile) epochAllowance() time.Duration {
	if p.epochInterval > 0 {
		return p.epochInterval
	}
	return cache.DefaultEpochInterval
}

// child is a running instance process.
type child struct {
	n      int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	enc    *json.Encoder
	lines  chan []byte // stdout lines
	stderr *lockedBuffer
	log    string
	tail   *Tail
	exited chan struct{}
	gone   bool // killed or shut down by a fault (and replaced)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (c *child) call(req request, timeout time.Duration) (response, error) {
	if err := c.enc.Encode(req); err != nil {
		return response{}, fmt.Errorf("instance %d: %w", c.n, err)
	}
	select {
	case line, ok := <-c.lines:
		if !ok {
			return response{}, fmt.Errorf("instance %d exited: %s", c.n, c.stderr)
		}
		var r response
		if err := json.Unmarshal(line, &r); err != nil {
			return r, fmt.Errorf("instance %d: %w", c.n, err)
		}
		if r.Err != "" {
			return r, fmt.Errorf("instance %d: %s", c.n, r.Err)
		}
		return r, nil
	case <-time.After(timeout):
		return response{}, fmt.Errorf("instance %d: no answer to %q within %v", c.n, req.Cmd, timeout)
	}
}

// cluster is the parent's view of a run: the servers, proxies and instances.
type cluster struct {
	t       *testing.T
	p       profile
	rng     *rand.Rand
	srv     *testenv.RedisServer   // single-server profiles
	admin   *redis.Client          // of srv
	sg      *testenv.SentinelGroup // sentinel profiles
	rc      *testenv.Cluster       // cluster profiles
	ext     *ExternalWriter        // feed profiles: the external writer
	extTail *Tail                  // and its log
	slot    string                 // feed profiles: the relays' slot and publication
	db      *gorm.DB
	appName string
	ns      string
	dsn     string
	prefix  string
	exe     string
	kids    []*child
	data    []pgroup // per instance: the cache's Redis connections
	bus     []pgroup // per instance: the bus's Redis connections
	pg      *testenv.Proxy
	dir     string

	faults map[faultKind]int
	paused map[int][]Window // instance → SIGSTOP..SIGCONT windows
	// ttlBound: an instance died with writes only the TTLs bound (kill -9,
	// or Close without reaching Redis): convergence waits for the TTL.
	ttlBound bool
	notes    map[string]int // outcomes of fault variants, for the summary
}

// pgroup is an instance's proxies to every Redis server of the deployment
// (one for a single server): a network fault applies to all of them.
type pgroup []*testenv.Proxy

func (g pgroup) Cut() {
	for _, p := range g {
		p.Cut()
	}
}

func (g pgroup) Blackhole() {
	for _, p := range g {
		p.Blackhole()
	}
}

func (g pgroup) Restore() {
	for _, p := range g {
		p.Restore()
	}
}

func (g pgroup) SetLatency(d time.Duration) {
	for _, p := range g {
		p.SetLatency(d)
	}
}

func (g pgroup) Reset() {
	for _, p := range g {
		p.Reset()
	}
}

// primary returns the current primary and an administrative client of it.
func (cl *cluster) primary(ctx context.Context) (*testenv.RedisServer, *redis.Client, error) {
	if cl.rc != nil {
		return nil, nil, nil // cluster faults address the nodes themselves
	}
	if cl.sg == nil {
		return cl.srv, cl.admin, nil
	}
	return cl.sg.Primary(ctx)
}

// live returns the indices of the instances still running (not killed or
// shut down by a fault).
func (cl *cluster) live() []int {
	var out []int
	for i, k := range cl.kids {
		if !k.gone {
			out = append(out, i)
		}
	}
	return out
}

// result is everything a run measured.
type result struct {
	report      *Report
	ops         []Op
	faults      map[faultKind]int
	elapsed     time.Duration
	detectedAt  time.Duration  // mutation runs: time from the start to the check that saw a violation
	converged   bool           // every tier agreed with the database 2B after the cluster settled
	convergence time.Duration  // from healing the faults to agreement
	settle      time.Duration  // from healing the faults to every instance settled
	disagree    []Disagreement // at 2B after settling, not explained
	// explained counts the disagreements left by writes that committed
	// although their caller got an error (a known library issue; counted
	// apart unless -torture.strict), explainedList the first comparison's.
	explained     int
	explainedList []Disagreement
	cacheStats    []cache.Stats
	busStats      []invalidation.Stats
	feedStats     []changefeed.Stats
	notes         map[string]int
}

func newCluster(t *testing.T, p profile) *cluster {
	t.Helper()
	cl := &cluster{t: t, p: p, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)), faults: map[faultKind]int{}, paused: map[int][]Window{},
		dir: t.TempDir(), notes: map[string]int{}}
	dsn := os.Getenv(testenv.EnvPostgres)
	if p.feed() {
		if os.Getenv(testenv.EnvPostgresLogical) == "" {
			if len(p.faults) == 1 {
				t.Skipf("%s: %s is not set (the external writer needs the change feed, on the logical cluster; `source /tmp/env.sh` or `make services`)", fExternal, testenv.EnvPostgresLogical)
			}
			t.Logf("%s left out of the mix: %s is not set (the external writer needs the change feed, on the logical cluster)", fExternal, testenv.EnvPostgresLogical)
			p.faults = maps.Clone(p.faults)
			delete(p.faults, fExternal)
			cl.p = p
		} else {
			dsn = testenv.LogicalPG(t)
		}
	}
	switch {
	case p.l1Only:
		testenv.RedisAddr(t) // skip without `make test`
	case p.sentinel:
		cl.sg = testenv.StartSentinelGroup(t, 1)
	case p.cluster:
		cl.rc = testenv.StartCluster(t)
	default:
		// Its own directory, for SAVE and the restart from an older dump.rdb.
		cl.srv = testenv.StartRedis(t, "--dir", t.TempDir(), "--dbfilename", "dump.rdb")
		cl.admin = redis.NewClient(&redis.Options{Addr: cl.srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { cl.admin.Close() })
	}
	if p.feed() {
		cl.db = prefixedOn(t, dsn)
	} else {
		cl.db = testenv.PostgresPrefixed(t)
	}
	if err := cl.db.AutoMigrate(&Row{}); err != nil {
		t.Fatal(err)
	}
	seed := make([]Row, p.rows+p.outsideRows+p.longRows+p.externalRows)
	for i := range seed {
		seed[i] = Row{ID: int64(i + 1), Note: "seed", Version: 1}
	}
	if err := cl.db.CreateInBatches(seed, 500).Error; err != nil {
		t.Fatal(err)
	}
	cl.prefix = cl.db.Config.NamingStrategy.(schema.NamingStrategy).TablePrefix
	cl.appName = testenv.Name(t)
	cl.ns = testenv.Name(t)
	cl.dsn = dsn
	if p.pgProxy {
		host, port := pgHostPort(dsn)
		cl.pg = testenv.NewProxy(t, host+":"+port)
		cl.pg.SetLatency(p.pgLatency)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cl.exe = exe
	if p.feed() {
		cl.startFeed(dsn) // its cleanup runs after the instances are killed
	}
	t.Cleanup(cl.kill)
	for range p.instances {
		cl.addInstance()
	}
	for _, k := range cl.kids {
		if _, err := k.wait(60 * time.Second); err != nil {
			t.Fatalf("instance %d did not start: %v\n%s", k.n, err, k.stderr)
		}
	}
	return cl
}

// addInstance spawns one more instance process (numbered after the
// others), with proxies of its own; the caller waits for it to be ready.
func (cl *cluster) addInstance() *child {
	t, p := cl.t, cl.p
	i := len(cl.kids) + 1
	cfg := Config{
		Inst: i, DSN: instanceDSN(cl.dsn, cl.appName+"_i"+strconv.Itoa(i), cl.pg), TablePrefix: cl.prefix, Namespace: cl.ns,
		Rows: p.rows, HotRows: p.hotRows, ZipfS: p.zipfS,
		Readers: p.readers, Writers: p.writers, Txers: p.txers, GormWriters: p.gormWriters, GormExecEvery: p.gormExecEvery, ReadPause: p.readPause, WritePause: p.writePause,
		ChainProb: p.chainProb, RollbackProb: p.rollbackProb, TxUniform: p.txUniform, BurstOn: p.burstOn, BurstOff: p.burstOff,
		NoL1: p.noL1, HealthWindow: p.healthWindow, EpochInterval: p.epochInterval, RedisRetryAfter: p.redisRetryAfter,
		L2TTL: p.l2TTL, FillDelay: p.fillDelay, OutsideRows: p.outsideRows, LongRows: p.longRows, ExternalRows: p.externalRows,
		Log: filepath.Join(cl.dir, fmt.Sprintf("ops-%d.jsonl", i)), Seed: cl.rng.Uint64(),
	}
	if cl.slot != "" && !p.noRelays {
		cfg.FeedDSN = instanceDSN(cl.dsn, cl.appName+"_i"+strconv.Itoa(i)+"_feed", nil)
		cfg.FeedSlot, cfg.FeedPublication, cfg.FeedLeaseTTL = cl.slot, cl.slot, feedLeaseTTL
	}
	switch {
	case cl.rc != nil:
		cfg.ClusterAddrs = cl.rc.Addrs()
		cfg.DataAddrMap, cfg.BusAddrMap = map[string]string{}, map[string]string{}
		var dg, bg pgroup
		for _, addr := range cl.rc.Addrs() {
			dp, bp := testenv.NewProxy(t, addr), testenv.NewProxy(t, addr)
			dg, bg = append(dg, dp), append(bg, bp)
			cfg.DataAddrMap[addr], cfg.BusAddrMap[addr] = dp.Addr(), bp.Addr()
		}
		cl.data, cl.bus = append(cl.data, dg), append(cl.bus, bg)
	case cl.sg != nil:
		cfg.SentinelAddrs, cfg.MasterName = cl.sg.SentinelAddrs(), cl.sg.Master
		cfg.DataAddrMap, cfg.BusAddrMap = map[string]string{}, map[string]string{}
		var dg, bg pgroup
		for _, s := range cl.sg.Servers {
			dp, bp := testenv.NewProxy(t, s.Addr()), testenv.NewProxy(t, s.Addr())
			dg, bg = append(dg, dp), append(bg, bp)
			cfg.DataAddrMap[s.Addr()], cfg.BusAddrMap[s.Addr()] = dp.Addr(), bp.Addr()
		}
		cl.data, cl.bus = append(cl.data, dg), append(cl.bus, bg)
	case !p.l1Only:
		dp, bp := testenv.NewProxy(t, cl.srv.Addr()), testenv.NewProxy(t, cl.srv.Addr())
		cl.data, cl.bus = append(cl.data, pgroup{dp}), append(cl.bus, pgroup{bp})
		cfg.RedisAddr, cfg.BusRedisAddr = dp.Addr(), bp.Addr()
	}
	cl.spawn(cl.exe, cfg)
	return cl.kids[len(cl.kids)-1]
}

// replace starts an instance in place of one a fault ended (marked gone)
// and starts its workload.
func (cl *cluster) replace() error {
	k := cl.addInstance()
	if _, err := k.wait(60 * time.Second); err != nil {
		return fmt.Errorf("replacement instance %d did not start: %v\n%s", k.n, err, k.stderr)
	}
	_, err := k.call(request{Cmd: "start"}, 30*time.Second)
	return err
}

// pgHostPort extracts host and port from a keyword/value DSN.
func pgHostPort(dsn string) (host, port string) {
	host, port = "127.0.0.1", "5432"
	for _, f := range strings.Fields(dsn) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "host":
			host = v
		case "port":
			port = v
		}
	}
	return host, port
}

// instanceDSN is dsn with the instance's application_name (so that its
// backends, and only its, can be terminated) and, with a proxy, its address.
func instanceDSN(dsn, app string, pg *testenv.Proxy) string {
	var out []string
	for _, f := range strings.Fields(dsn) {
		k, _, _ := strings.Cut(f, "=")
		if k == "application_name" || pg != nil && (k == "host" || k == "port") {
			continue
		}
		out = append(out, f)
	}
	if pg != nil {
		host, port, _ := strings.Cut(pg.Addr(), ":")
		out = append(out, "host="+host, "port="+port)
	}
	return strings.Join(append(out, "application_name="+app), " ")
}

func (cl *cluster) spawn(exe string, cfg Config) {
	t := cl.t
	b, _ := json.Marshal(cfg)
	args := []string{"-torture.child", "-torture.config=" + string(b)}
	for g := range strings.SplitSeq(cl.p.disable, ",") {
		if g == "" {
			continue
		}
		args = append(args, "-torture.disable="+g)
	}
	cmd := exec.Command(exe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the parent
	k := &child{n: cfg.Inst, cmd: cmd, stderr: &lockedBuffer{}, log: cfg.Log, tail: NewTail(cfg.Log), lines: make(chan []byte, 16), exited: make(chan struct{})}
	cmd.Stderr = k.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Our own pipe, not StdoutPipe: Wait (in its own goroutine) must not
	// close it before the reader has seen every line.
	stdout, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		stdout.Close()
		t.Fatal(err)
	}
	k.stdin, k.enc = stdin, json.NewEncoder(stdin)
	go func() {
		defer close(k.lines)
		defer stdout.Close()
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			k.lines <- append([]byte(nil), sc.Bytes()...)
		}
	}()
	go func() {
		cmd.Wait()
		close(k.exited)
	}()
	cl.kids = append(cl.kids, k)
}

// wait reads the instance's first line (ready).
func (c *child) wait(timeout time.Duration) (response, error) {
	select {
	case line, ok := <-c.lines:
		if !ok {
			return response{}, errors.New("exited")
		}
		var r response
		err := json.Unmarshal(line, &r)
		return r, err
	case <-time.After(timeout):
		return response{}, errors.New("timeout")
	}
}

// kill stops every instance process by PID (continuing it first if it was
// stopped) and waits for it.
func (cl *cluster) kill() {
	for _, k := range cl.kids {
		select {
		case <-k.exited:
			continue
		default:
		}
		syscall.Kill(k.cmd.Process.Pid, syscall.SIGCONT)
		k.cmd.Process.Kill()
		<-k.exited
		for range k.lines { // let the reader goroutine finish
		}
	}
}

// quit asks every instance to exit and checks that each exited cleanly
// (a data race report in an instance makes it exit non-zero).
func (cl *cluster) quit() {
	var kids []*child
	for _, i := range cl.live() {
		kids = append(kids, cl.kids[i])
	}
	for _, k := range kids {
		k.enc.Encode(request{Cmd: "quit"})
		k.stdin.Close()
	}
	for _, k := range kids {
		select {
		case <-k.exited:
		case <-time.After(20 * time.Second):
			cl.t.Errorf("instance %d did not exit", k.n)
			k.cmd.Process.Kill()
			<-k.exited
		}
		for range k.lines {
		}
		if code := k.cmd.ProcessState.ExitCode(); code != 0 {
			cl.t.Errorf("instance %d exited with %d:\n%s", k.n, code, k.stderr)
		}
	}
}

// all sends cmd to every instance at once.
func (cl *cluster) all(cmd string, timeout time.Duration) ([]response, error) {
	var kids []*child
	for _, i := range cl.live() {
		kids = append(kids, cl.kids[i])
	}
	out := make([]response, len(kids))
	errs := make([]error, len(kids))
	var wg sync.WaitGroup
	for i, k := range kids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = k.call(request{Cmd: cmd}, timeout)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// run drives the whole run: workload, faults, checks, convergence.
func (cl *cluster) run() *result {
	t, p := cl.t, cl.p
	res := &result{faults: cl.faults, notes: cl.notes}
	var ops []Op
	collect := func() {
		tails := make([]*Tail, 0, len(cl.kids)+1)
		for _, k := range cl.kids {
			tails = append(tails, k.tail)
		}
		if cl.extTail != nil {
			tails = append(tails, cl.extTail)
		}
		for _, tl := range tails {
			more, err := tl.Next()
			if err != nil {
				t.Fatal(err)
			}
			ops = append(ops, more...)
		}
	}
	opts := CheckOptions{Bound: p.bound(), EpochAllowance: p.epochAllowance(), TTLAllowance: p.l2TTL}
	if cl.ext != nil {
		opts.FeedBound = feedBound
	}
	if _, err := cl.all("start", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deadline := start.Add(p.duration)
	lastCheck, lastCount := start, start
	for {
		if !time.Now().Before(deadline) {
			if p.minOps == 0 && p.minFaults == 0 || time.Since(start) > p.maxDuration {
				break
			}
			if time.Since(lastCount) > 5*time.Second {
				lastCount = time.Now()
				collect()
				total := 0
				for _, n := range cl.faults {
					total += n
				}
				t.Logf("%v: %d operations, %d faults", time.Since(start).Round(time.Second), len(ops), total)
				if len(ops) >= p.minOps && total >= p.minFaults {
					break
				}
			}
			deadline = time.Now().Add(time.Second)
		}
		if len(p.faults) > 0 {
			cl.sleep(p.faultGap.draw(cl.rng), deadline)
			if time.Now().Before(deadline) {
				cl.inject(cl.pick())
			}
		} else {
			cl.sleep(100*time.Millisecond, deadline)
		}
		if p.stopOnViolation && time.Since(lastCheck) >= p.checkEvery {
			lastCheck = time.Now()
			collect()
			if r := Check(ops, opts); confirmed(r) {
				res.detectedAt = time.Since(start)
				break
			}
		}
	}
	cl.heal()
	healed := time.Now()
	stops, err := cl.all("stop", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	res.elapsed = time.Since(start)
	for _, s := range stops {
		if s.Cache != nil {
			res.cacheStats = append(res.cacheStats, *s.Cache)
		}
		if s.Bus != nil {
			res.busStats = append(res.busStats, *s.Bus)
		}
		if s.Feed != nil {
			res.feedStats = append(res.feedStats, *s.Feed)
		}
	}
	collect() // "stop" flushed every log
	res.ops = ops
	if p.convergence {
		cl.converge(res, healed)
	}
	if !p.strict {
		opts.Paused, opts.PauseGrace = cl.paused, p.bound()
	}
	res.report = Check(ops, opts)
	cl.quit()
	return res
}

// confirmed reports whether a check made while the instances still run
// found a violation that later lines cannot explain: a read whose write has
// not been flushed yet looks like a value of no write (or from the
// future), so those kinds wait for the final check.
func confirmed(r *Report) bool {
	return r.Violations() > r.Counts[Unknown]+r.Counts[Future]
}

func (cl *cluster) sleep(d time.Duration, until time.Time) {
	if rest := time.Until(until); d > rest {
		d = rest
	}
	if d > 0 {
		time.Sleep(d)
	}
}

// converge waits until every instance has recovered, then 2B more, and
// compares every tier of every instance with the database; on a
// disagreement it keeps looking (up to 10 s) to measure when they agree.
func (cl *cluster) converge(res *result, healed time.Time) {
	t := cl.t
	settleBy := time.Now().Add(30 * time.Second)
	for {
		sts, err := cl.all("status", 10*time.Second)
		ok, leader := err == nil, cl.ext == nil || cl.p.noRelays
		for _, s := range sts {
			ok = ok && s.Status != nil && s.Status.Settled()
			leader = leader || s.Status != nil && s.Status.FeedLeader
		}
		ok = ok && leader // the feed has a leader again (after a kill or a lost lease)
		if ok {
			break
		}
		if time.Now().After(settleBy) {
			var desc []string
			for _, s := range sts {
				desc = append(desc, fmt.Sprintf("%+v", s.Status))
			}
			t.Errorf("instances did not recover within 30 s of the last fault: %v %s", err, strings.Join(desc, " "))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.settle = time.Since(healed)
	wait := 2 * cl.p.bound()
	if cl.ext != nil { // the leader may have just been elected: its backlog
		wait = max(wait, cl.p.bound()+feedBound)
	}
	if cl.ttlBound { // an instance died with writes only the TTLs bound
		wait = max(wait, cmp.Or(cl.p.l2TTL, cache.DefaultL2TTL)+cl.p.bound())
	}
	time.Sleep(wait)
	giveUp := time.Now().Add(10 * time.Second)
	for first := true; ; {
		bad, err := cl.compare()
		if err != nil && time.Now().Before(giveUp) {
			// The comparison could not be made (a peek or the database
			// query failed on a loaded machine): that is no disagreement,
			// and the check at 2B is the first comparison that completes.
			t.Logf("convergence check: could not compare (retrying): %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		Explain(bad, res.ops)
		var real, explained []Disagreement
		for _, d := range bad {
			if d.Unacknowledged != nil && !cl.p.strict {
				explained = append(explained, d)
			} else {
				real = append(real, d)
			}
		}
		res.explained = len(explained)
		if first {
			res.disagree, res.explainedList = real, explained
		}
		if err == nil && len(real) == 0 {
			res.converged = first
			res.convergence = time.Since(healed)
			return
		}
		if time.Now().After(giveUp) {
			res.convergence = -1
			if err != nil {
				t.Errorf("convergence check: %v", err)
			}
			return
		}
		first = false
		time.Sleep(100 * time.Millisecond)
	}
}

// compare peeks at every row on every instance and compares with the database.
func (cl *cluster) compare() ([]Disagreement, error) {
	var rows []Row
	if err := cl.db.Select("id", "version").Find(&rows).Error; err != nil {
		return nil, err
	}
	db := make(map[int64]uint64, len(rows))
	for _, r := range rows {
		db[r.ID] = uint64(r.Version)
	}
	resps, err := cl.all("peek", 30*time.Second)
	if err != nil {
		return nil, err
	}
	peeks := make([]InstancePeek, 0, len(resps))
	for _, r := range resps {
		peeks = append(peeks, *r.Peek)
	}
	return CheckConvergence(db, peeks), nil
}

// pick draws a fault kind by weight.
func (cl *cluster) pick() faultKind {
	total := 0
	for _, w := range cl.p.faults {
		total += w
	}
	if total == 0 {
		return fNone
	}
	kinds := make([]string, 0, len(cl.p.faults))
	for k := range cl.p.faults {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds) // deterministic order for a given seed
	n := cl.rng.IntN(total)
	for _, k := range kinds {
		if n -= cl.p.faults[faultKind(k)]; n < 0 {
			return faultKind(k)
		}
	}
	return fNone
}

func (cl *cluster) length(k faultKind) time.Duration {
	s, ok := cl.p.lengths[k]
	if !ok {
		s = defaultLengths[k]
	}
	return min(s.draw(cl.rng), maxFaultDur)
}

// inject applies one fault, for its duration, and counts it.
func (cl *cluster) inject(k faultKind) {
	t := cl.t
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	live := cl.live()
	inst := live[cl.rng.IntN(len(live))]
	d := cl.length(k)
	var err error
	begun := time.Now()
	var srv *testenv.RedisServer
	var admin *redis.Client
	if !cl.p.l1Only {
		if srv, admin, err = cl.primary(ctx); err != nil {
			t.Logf("fault %s: no primary: %v", k, err)
			return
		}
	}
	switch k {
	case fNone:
		return
	case fKillPubsub:
		err = admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err()
	case fPause:
		err = admin.Do(ctx, "CLIENT", "PAUSE", d.Milliseconds(), "WRITE").Err()
		time.Sleep(d)
	case fScriptFlush:
		err = admin.ScriptFlush(ctx).Err()
	case fRedisRestart:
		srv.Stop()
		time.Sleep(d)
		srv.Start()
	case fSentinelFailover, fSentinelKill:
		if err = cl.sg.WaitReady(30 * time.Second); err != nil {
			break // not in shape for another failover yet
		}
		var addr string
		if k == fSentinelFailover {
			addr, err = cl.sg.Failover(20 * time.Second)
		} else {
			addr, err = cl.sg.KillLaggingPrimary(d, 20*time.Second)
		}
		if err == nil {
			t.Logf("%s: the master is now %s", k, addr)
		}
	case fRDBRestore:
		// A snapshot, writes the snapshot will not have, then a crash and
		// a restart from the snapshot.
		if err = admin.Save(ctx).Err(); err == nil {
			time.Sleep(d)
			srv.Stop()
			srv.Start()
		}
	case fMaxmemNoEvict, fMaxmemAllLRU, fMaxmemVolLRU, fMaxmemAllRandom:
		err = cl.memoryFull(ctx, admin, maxmemPolicy[k], d)
	case fSlowRedis, fSlowLossy:
		px := cl.data[inst]
		px.SetLatency(150*time.Millisecond + time.Duration(cl.rng.Int64N(int64(350*time.Millisecond))))
		for end := time.Now().Add(d); time.Now().Before(end); {
			if k == fSlowRedis {
				time.Sleep(time.Until(end))
				break
			}
			time.Sleep(30*time.Millisecond + time.Duration(cl.rng.Int64N(int64(70*time.Millisecond))))
			px.Reset()
		}
		px.SetLatency(0)
	case fWriterShutdown:
		err = cl.writerShutdown(inst, d)
	case fKill9:
		err = cl.kill9(inst)
	case fOperatorDel:
		err = cl.operatorDel(ctx, admin)
	case fPausedRestore:
		// The instance sleeps through a restart from an older snapshot:
		// when it runs again, its readers may run before it has checked
		// the server's identity.
		if err = admin.Save(ctx).Err(); err != nil {
			break
		}
		time.Sleep(d)
		pid := cl.kids[inst].cmd.Process.Pid
		w := Window{Start: time.Now().UnixNano()}
		if err = syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			break
		}
		srv.Stop()
		srv.Start()
		time.Sleep(300 * time.Millisecond) // the others notice and move to a new epoch
		err = syscall.Kill(pid, syscall.SIGCONT)
		w.End = time.Now().UnixNano()
		cl.paused[inst+1] = append(cl.paused[inst+1], w)
	case fOutsideWrite:
		_, err = cl.kids[inst].call(request{Cmd: "outside", N: cmp.Or(cl.p.outsideBurst, 5)}, 30*time.Second)
	case fExternal:
		err = cl.externalBurst(d)
	case fClusterFailover:
		err = cl.clusterFailover()
	case fClusterMigrate:
		err = cl.clusterMigrate()
	case fSigstop:
		pid := cl.kids[inst].cmd.Process.Pid
		w := Window{Start: time.Now().UnixNano()}
		if err = syscall.Kill(pid, syscall.SIGSTOP); err == nil {
			time.Sleep(d)
			err = syscall.Kill(pid, syscall.SIGCONT)
			w.End = time.Now().UnixNano()
			cl.paused[inst+1] = append(cl.paused[inst+1], w)
		}
	case fPGKill:
		pattern := cl.appName + "_i%"
		if cl.rng.IntN(2) == 0 { // one instance, or all
			pattern = cl.appName + "_i" + strconv.Itoa(inst+1)
		}
		err = cl.db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE ?`, pattern).Error
	case fLatency:
		px := cl.data[inst]
		if cl.rng.IntN(2) == 0 {
			px = cl.bus[inst]
		}
		px.SetLatency(time.Duration(1+cl.rng.IntN(30)) * time.Millisecond)
		time.Sleep(d)
		px.SetLatency(0)
	case fReset:
		if cl.rng.IntN(2) == 0 {
			cl.data[inst].Reset()
		} else {
			cl.bus[inst].Reset()
		}
	case fBlackhole:
		cl.bus[inst].Blackhole()
		time.Sleep(d)
		cl.bus[inst].Restore()
	case fCut:
		cl.data[inst].Cut()
		time.Sleep(d)
		cl.data[inst].Restore()
	case fCutBus:
		cl.bus[inst].Cut()
		time.Sleep(d)
		cl.bus[inst].Restore()
	case fPGReset:
		cl.pg.Reset()
	case fPGLatency:
		cl.pg.SetLatency(time.Duration(1+cl.rng.IntN(10)) * time.Millisecond)
		time.Sleep(d)
		cl.pg.SetLatency(cl.p.pgLatency)
	default:
		t.Fatalf("unknown fault %q", k)
	}
	if err != nil {
		t.Logf("fault %s: %v", k, err)
		return
	}
	if verboseFaults[k] {
		t.Logf("%s: %s on instance %d, %v", stamp(begun.UnixNano()), k, inst+1, time.Since(begun).Round(time.Millisecond))
	}
	cl.faults[k]++
}

// heal ends every fault: proxies forward without delay, Redis runs, every
// instance runs.
func (cl *cluster) heal() {
	for i := range cl.data {
		cl.data[i].Restore()
		cl.data[i].SetLatency(0)
		cl.bus[i].Restore()
		cl.bus[i].SetLatency(0)
	}
	if cl.pg != nil {
		cl.pg.SetLatency(cl.p.pgLatency)
	}
	if cl.srv != nil && cl.srv.PID() == 0 {
		cl.srv.Start()
	}
	if cl.sg != nil {
		for _, s := range cl.sg.Servers {
			if s.PID() == 0 {
				s.Start()
			}
		}
		if err := cl.sg.WaitReady(30 * time.Second); err != nil {
			cl.t.Logf("sentinel group after the faults: %v", err)
		}
	}
	if cl.rc != nil {
		for _, n := range cl.rc.Nodes {
			if n.PID() == 0 {
				n.Start()
			}
		}
		if err := cl.rc.WaitOK(30 * time.Second); err != nil {
			cl.t.Logf("cluster after the faults: %v", err)
		}
	}
	for _, i := range cl.live() {
		syscall.Kill(cl.kids[i].cmd.Process.Pid, syscall.SIGCONT)
	}
}

// summary renders a run's figures.
func (res *result) summary(p profile) string {
	var b strings.Builder
	fmt.Fprintf(&b, "profile %q: %d instances, %d rows (hot %d), %d readers + %d writers + %d transactions + %d plain-GORM writers per instance, B_check = %v (HealthWindow %v + slack %v)",
		p.name, p.instances, p.rows, cmp.Or(p.hotRows, p.rows), p.readers, p.writers, p.txers, p.gormWriters, p.bound(), p.bound()-p.slack, p.slack)
	if p.gormWriters > 0 {
		exec := "none (-torture.plainexec=false)"
		if p.gormExecEvery > 0 {
			exec = "one per ~" + p.gormExecEvery.String() + " per writer"
		}
		fmt.Fprintf(&b, ", plain-GORM raw UPDATEs: %s", exec)
	}
	if p.disable != "" {
		fmt.Fprintf(&b, ", guard switched off: %s", p.disable)
	}
	fmt.Fprintf(&b, "\nran %v\n", res.elapsed.Round(time.Millisecond))
	kinds := make([]string, 0, len(res.faults))
	total := 0
	for k, n := range res.faults {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	sort.Strings(kinds)
	fmt.Fprintf(&b, "faults injected: %d (%s)\n", total, strings.Join(kinds, ", "))
	notes := make([]string, 0, len(res.notes))
	for n, c := range res.notes {
		notes = append(notes, fmt.Sprintf("%s: %d", n, c))
	}
	sort.Strings(notes)
	for _, n := range notes {
		fmt.Fprintf(&b, "  %s\n", n)
	}
	b.WriteString(res.report.String())
	if res.explained > 0 {
		fmt.Fprintf(&b, "disagreements left by writes that committed although their caller got an error (known library issue, not counted): %d, e.g. %v\n",
			res.explained, first(res.explainedList))
	}
	if p.convergence {
		switch {
		case res.converged:
			fmt.Fprintf(&b, "convergence: every tier of every instance agreed with the database 2B after the instances settled (settled %v after the faults ended; checked at %v)\n",
				res.settle.Round(time.Millisecond), res.convergence.Round(time.Millisecond))
		case res.convergence > 0:
			fmt.Fprintf(&b, "convergence: FAILED at 2B after settling (%d disagreements, e.g. %v); agreed %v after the faults ended\n",
				len(res.disagree), first(res.disagree), res.convergence.Round(time.Millisecond))
		default:
			fmt.Fprintf(&b, "convergence: FAILED, no agreement within 10 s (%d disagreements at 2B, e.g. %v)\n", len(res.disagree), first(res.disagree))
		}
	}
	var l1, l2, loads, rejected, pend, epochs, flushes uint64
	for _, s := range res.cacheStats {
		l1, l2, loads, rejected, pend, epochs, flushes = l1+s.L1Hits, l2+s.L2Hits, loads+s.Loads, rejected+s.RejectedFills, pend+s.PendingEpochBumps, epochs+s.EpochChanges, flushes+s.Flushes
	}
	fmt.Fprintf(&b, "caches: L1 hits %d, L2 hits %d, loads %d, rejected fills %d, invalidations that missed Redis %d, epoch changes %d, L1 flushes %d\n",
		l1, l2, loads, rejected, pend, epochs, flushes)
	var inc, lw, lf, oom, retries, unconf, sus uint64
	for _, s := range res.cacheStats {
		inc, lw, lf, oom, retries, unconf, sus = inc+s.Incarnations, lw+s.LeaseWaits, lf+s.LeaseFallbacks, oom+s.OOMDeletes, retries+s.InvalidationRetries, unconf+s.UnconfirmedInvalidations, sus+s.Suspects
	}
	fmt.Fprintf(&b, "  server incarnations seen %d, lease waits %d (fallbacks %d), OOM deletes %d, invalidation retries %d, unconfirmed invalidations %d, suspect keys %d (live instances only)\n",
		inc, lw, lf, oom, retries, unconf, sus)
	var subs, gaps, unhealthy, pubErr uint64
	for _, s := range res.busStats {
		subs, gaps, unhealthy, pubErr = subs+s.Subscribes, gaps+s.Gaps, unhealthy+s.Unhealthy, pubErr+s.PublishErrors
	}
	if len(res.busStats) > 0 {
		fmt.Fprintf(&b, "buses: subscriptions %d, sequence gaps %d, unhealthy periods %d, publish errors %d\n", subs, gaps, unhealthy, pubErr)
	}
	if len(res.feedStats) > 0 {
		var txns, rows, reconn, retries, retired, lost uint64
		leaders := 0
		for _, s := range res.feedStats {
			txns, rows, reconn, retries, retired, lost = txns+s.AppliedTxns, rows+s.AppliedRows, reconn+s.Reconnects, retries+s.ApplyRetries, retired+s.Retired, lost+s.SlotLost
			if s.IsLeader {
				leaders++
			}
		}
		fmt.Fprintf(&b, "change feed (relays of live instances, feed bound %v): applied %d transactions (%d rows), reconnects %d, apply retries %d, retired %d, slots lost %d, leaders at the end %d\n",
			feedBound, txns, rows, reconn, retries, retired, lost, leaders)
	}
	return b.String()
}

func first(d []Disagreement) any {
	if len(d) == 0 {
		return "none"
	}
	return d[0]
}

// memoryFull sets maxmemory just above what the primary uses, with policy,
// and fills memory with junk keys (16 KB each, with a TTL, outside the
// namespace) for d; then lifts the limit and deletes the junk.
func (cl *cluster) memoryFull(ctx context.Context, admin *redis.Client, policy string, d time.Duration) error {
	info, err := admin.Info(ctx, "memory").Result()
	if err != nil {
		return err
	}
	used := infoInt(info, "used_memory")
	if err := admin.ConfigSet(ctx, "maxmemory-policy", policy).Err(); err != nil {
		return err
	}
	if err := admin.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used+1<<20, 10)).Err(); err != nil {
		return err
	}
	junk := cl.ns + "-junk:"
	filler := redis.NewClient(&redis.Options{Addr: admin.Options().Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		val := strings.Repeat("j", 16<<10)
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			fctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			filler.Set(fctx, junk+strconv.Itoa(n), val, 3*time.Second) // OOM errors under noeviction: memory stays full
			cancel()
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(d)
	close(stop)
	wg.Wait()
	filler.Close()
	err = errors.Join(admin.ConfigSet(ctx, "maxmemory", "0").Err(), admin.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err())
	testenv.DeletePrefix(admin, junk)
	return err
}

func infoInt(info, field string) int64 {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// operatorDel deletes every key of the namespace but the epoch's and the
// incarnation markers (the keys with the {e} hash tag): entries,
// tombstones and leases, as an operator clearing the cache would.
func (cl *cluster) operatorDel(ctx context.Context, admin *redis.Client) error {
	iter := admin.Scan(ctx, 0, cl.ns+":{*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return err
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := admin.Del(ctx, keys[:n]...).Err(); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// writerShutdown cuts instance i from Redis for d (its writes commit, their
// invalidations fail: Update returns ErrInvalidationUnconfirmed), then shuts
// it down as a rolling deploy would (Cache.Close, which bumps the pending
// epoch within WriteTimeout or reports that it could not), with the
// partition healed before Close, healed during it, or not healed; then
// starts a replacement.
func (cl *cluster) writerShutdown(i int, d time.Duration) error {
	if len(cl.live()) < 2 {
		return errors.New("one instance left")
	}
	k := cl.kids[i]
	cl.data[i].Cut()
	time.Sleep(d)
	variant := cl.rng.IntN(3)
	if cl.p.shutdownVariant > 0 {
		variant = cl.p.shutdownVariant - 1
	}
	var healed sync.WaitGroup
	switch variant {
	case 0:
		cl.data[i].Restore()
	case 1:
		healed.Add(1)
		go func() {
			defer healed.Done()
			time.Sleep(300 * time.Millisecond) // inside Close's WriteTimeout
			cl.data[i].Restore()
		}()
	}
	resp, err := k.call(request{Cmd: "shutdown"}, 60*time.Second)
	healed.Wait()
	cl.data[i].Restore()
	if err != nil {
		return err
	}
	select {
	case <-k.exited:
	case <-time.After(20 * time.Second):
		return fmt.Errorf("instance %d did not exit after shutdown", k.n)
	}
	k.gone = true
	name := []string{"healed before Close", "healed during Close", "never healed"}[variant]
	if resp.CloseErr != "" {
		cl.ttlBound = true
		cl.notes[fmt.Sprintf("writer shutdown, %s: Close returned an error", name)]++
		if variant == 2 && !strings.Contains(resp.CloseErr, cache.ErrInvalidationUnconfirmed.Error()) {
			return fmt.Errorf("Close of a partitioned writer: %s (want ErrInvalidationUnconfirmed)", resp.CloseErr)
		}
	} else {
		cl.notes[fmt.Sprintf("writer shutdown, %s: Close bumped the epoch", name)]++
	}
	return cl.replace()
}

// kill9 makes instance i commit its next write and kill itself (SIGKILL)
// before invalidating it, then starts a replacement.
func (cl *cluster) kill9(i int) error {
	if len(cl.live()) < 2 {
		return errors.New("one instance left")
	}
	k := cl.kids[i]
	if _, err := k.call(request{Cmd: "die"}, 10*time.Second); err != nil {
		return err
	}
	select {
	case <-k.exited:
	case <-time.After(20 * time.Second):
		return fmt.Errorf("instance %d did not kill itself", k.n)
	}
	for range k.lines {
	}
	k.gone = true
	cl.ttlBound = true
	return cl.replace()
}
