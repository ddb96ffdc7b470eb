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
)

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
}

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
	srv     *testenv.RedisServer
	admin   *redis.Client
	db      *gorm.DB
	appName string
	kids    []*child
	data    []*testenv.Proxy // per instance: the cache's Redis connections
	bus     []*testenv.Proxy // per instance: the bus's Redis connections
	pg      *testenv.Proxy
	dir     string

	faults map[faultKind]int
	paused map[int][]Window // instance → SIGSTOP..SIGCONT windows
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
}

func newCluster(t *testing.T, p profile) *cluster {
	t.Helper()
	cl := &cluster{t: t, p: p, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)), faults: map[faultKind]int{}, paused: map[int][]Window{}, dir: t.TempDir()}
	dsn := os.Getenv(testenv.EnvPostgres)
	if !p.l1Only {
		cl.srv = testenv.StartRedis(t)
		cl.admin = redis.NewClient(&redis.Options{Addr: cl.srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { cl.admin.Close() })
	} else {
		testenv.RedisAddr(t) // skip without `make test`
	}
	cl.db = testenv.PostgresPrefixed(t)
	if err := cl.db.AutoMigrate(&Row{}); err != nil {
		t.Fatal(err)
	}
	seed := make([]Row, p.rows)
	for i := range seed {
		seed[i] = Row{ID: int64(i + 1), Note: "seed", Version: 1}
	}
	if err := cl.db.CreateInBatches(seed, 500).Error; err != nil {
		t.Fatal(err)
	}
	prefix := cl.db.Config.NamingStrategy.(schema.NamingStrategy).TablePrefix
	cl.appName = testenv.Name(t)
	ns := testenv.Name(t)
	if p.pgProxy {
		host, port := pgHostPort(dsn)
		cl.pg = testenv.NewProxy(t, host+":"+port)
		cl.pg.SetLatency(p.pgLatency)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.kill)
	for i := 1; i <= p.instances; i++ {
		cfg := Config{
			Inst: i, DSN: instanceDSN(dsn, cl.appName+"_i"+strconv.Itoa(i), cl.pg), TablePrefix: prefix, Namespace: ns,
			Rows: p.rows, HotRows: p.hotRows, ZipfS: p.zipfS,
			Readers: p.readers, Writers: p.writers, Txers: p.txers, ReadPause: p.readPause, WritePause: p.writePause,
			ChainProb: p.chainProb, RollbackProb: p.rollbackProb, TxUniform: p.txUniform, BurstOn: p.burstOn, BurstOff: p.burstOff,
			NoL1: p.noL1, HealthWindow: p.healthWindow, EpochInterval: p.epochInterval, RedisRetryAfter: p.redisRetryAfter,
			Log: filepath.Join(cl.dir, fmt.Sprintf("ops-%d.jsonl", i)), Seed: cl.rng.Uint64(),
		}
		if !p.l1Only {
			dp, bp := testenv.NewProxy(t, cl.srv.Addr()), testenv.NewProxy(t, cl.srv.Addr())
			cl.data, cl.bus = append(cl.data, dp), append(cl.bus, bp)
			cfg.RedisAddr, cfg.BusRedisAddr = dp.Addr(), bp.Addr()
		}
		cl.spawn(exe, cfg)
	}
	for _, k := range cl.kids {
		if _, err := k.wait(60 * time.Second); err != nil {
			t.Fatalf("instance %d did not start: %v\n%s", k.n, err, k.stderr)
		}
	}
	return cl
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
	for _, k := range cl.kids {
		k.enc.Encode(request{Cmd: "quit"})
		k.stdin.Close()
	}
	for _, k := range cl.kids {
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
	out := make([]response, len(cl.kids))
	errs := make([]error, len(cl.kids))
	var wg sync.WaitGroup
	for i, k := range cl.kids {
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
	res := &result{faults: cl.faults}
	var ops []Op
	collect := func() {
		for _, k := range cl.kids {
			more, err := k.tail.Next()
			if err != nil {
				t.Fatal(err)
			}
			ops = append(ops, more...)
		}
	}
	opts := CheckOptions{Bound: p.bound(), EpochAllowance: p.epochAllowance()}
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
		ok := err == nil
		for _, s := range sts {
			ok = ok && s.Status != nil && s.Status.Settled()
		}
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
	time.Sleep(2 * cl.p.bound())
	giveUp := time.Now().Add(10 * time.Second)
	for first := true; ; first = false {
		bad, err := cl.compare()
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	inst := cl.rng.IntN(len(cl.kids))
	d := cl.length(k)
	var err error
	switch k {
	case fNone:
		return
	case fKillPubsub:
		err = cl.admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err()
	case fPause:
		err = cl.admin.Do(ctx, "CLIENT", "PAUSE", d.Milliseconds(), "WRITE").Err()
		time.Sleep(d)
	case fScriptFlush:
		err = cl.admin.ScriptFlush(ctx).Err()
	case fRedisRestart:
		cl.srv.Stop()
		time.Sleep(d)
		cl.srv.Start()
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
	for _, k := range cl.kids {
		syscall.Kill(k.cmd.Process.Pid, syscall.SIGCONT)
	}
}

// summary renders a run's figures.
func (res *result) summary(p profile) string {
	var b strings.Builder
	fmt.Fprintf(&b, "profile %q: %d instances, %d rows (hot %d), %d readers + %d writers + %d transactions per instance, B_check = %v (HealthWindow %v + slack %v)",
		p.name, p.instances, p.rows, cmp.Or(p.hotRows, p.rows), p.readers, p.writers, p.txers, p.bound(), p.bound()-p.slack, p.slack)
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
	var subs, gaps, unhealthy, pubErr uint64
	for _, s := range res.busStats {
		subs, gaps, unhealthy, pubErr = subs+s.Subscribes, gaps+s.Gaps, unhealthy+s.Unhealthy, pubErr+s.PublishErrors
	}
	if len(res.busStats) > 0 {
		fmt.Fprintf(&b, "buses: subscriptions %d, sequence gaps %d, unhealthy periods %d, publish errors %d\n", subs, gaps, unhealthy, pubErr)
	}
	return b.String()
}

func first(d []Disagreement) any {
	if len(d) == 0 {
		return "none"
	}
	return d[0]
}
