package invalidation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/leakcheck"
	"github.com/gormcache/gormcache/internal/testenv"
)

// TestMain fails the package if any test leaves a goroutine running. The
// example runs against the shared Redis, and is skipped without it as the
// tests that need it skip.
func TestMain(m *testing.M) {
	testenv.SkipExamplesWithout(testenv.EnvRedis)
	leakcheck.VerifyTestMain(m)
}

// store is the source of truth shared by the instances of a test: versioned
// values per key.
type store struct {
	mu   sync.Mutex // protects vals
	vals map[string]uint64
}

func newStore() *store { return &store{vals: map[string]uint64{}} }

func (s *store) load(_ context.Context, key string) (uint64, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vals[key]
	if !ok {
		return 0, 0, cache.ErrNotFound
	}
	return v, v, nil
}

// bump commits a new version of key and returns it.
func (s *store) bump(key string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vals[key]++
	return s.vals[key]
}

// instance is one running copy of the application: its own Redis clients,
// cache and bus.
type instance struct {
	c   *cache.Cache
	bus *Bus
}

func (in instance) read(t testing.TB, s *store, key string) uint64 {
	t.Helper()
	v, err := cache.Get(context.Background(), in.c, key, s.load)
	if err != nil {
		t.Errorf("read %s: %v", key, err)
	}
	return v
}

// write commits a new version on s and invalidates it through this instance.
func (in instance) write(t testing.TB, s *store, key string) uint64 {
	v := s.bump(key)
	if err := in.c.Invalidate(context.Background(), key, v); err != nil {
		t.Errorf("invalidate: %v", err)
	}
	return v
}

type cluster struct {
	t   testing.TB
	ns  string
	ins []instance
}

// newCluster starts n instances on the Redis at addr, sharing a namespace.
func newCluster(t testing.TB, addr string, n int, mod func(*cache.Options, *Options)) *cluster {
	t.Helper()
	cl := &cluster{t: t, ns: testenv.Name(t)}
	for i := 0; i < n; i++ {
		rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
		co := cache.Options{Redis: rdb, Namespace: cl.ns, RedisTimeout: 200 * time.Millisecond, RedisRetryAfter: 100 * time.Millisecond, EpochInterval: 100 * time.Millisecond}
		bo := Options{InstanceID: fmt.Sprintf("i%d", i)}
		if mod != nil {
			mod(&co, &bo)
		}
		c, err := cache.New(context.Background(), co)
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(context.Background(), c, bo)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			b.Close()
			c.Close()
			rdb.Close()
		})
		cl.ins = append(cl.ins, instance{c, b})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, in := range cl.ins {
		if err := in.bus.WaitHealthy(ctx); err != nil {
			t.Fatalf("bus not healthy: %v", err)
		}
	}
	t.Cleanup(func() {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		defer rdb.Close()
		testenv.DeletePrefix(rdb, cl.ns+":")
	})
	return cl
}

// TestWriteVisibleEverywhere writes on one instance and reads on the others:
// each sees the new version once the event is applied, long before any TTL.
func TestWriteVisibleEverywhere(t *testing.T) {
	t.Parallel()
	applied := make(chan string, 64)
	cl := newCluster(t, testenv.RedisAddr(t), 3, func(_ *cache.Options, o *Options) {
		o.OnApply = func(e Event, _ time.Duration) { applied <- e.Origin }
	})
	s := newStore()
	s.bump("k")
	for _, in := range cl.ins {
		if v := in.read(t, s, "k"); v != 1 {
			t.Fatalf("initial read %d", v)
		}
		in.read(t, s, "k") // now in every L1
	}
	v := cl.ins[0].write(t, s, "k")
	if got := cl.ins[0].read(t, s, "k"); got != v {
		t.Fatalf("writer reads %d, want its own write %d", got, v)
	}
	for i := 0; i < 2; i++ {
		select {
		case <-applied:
		case <-time.After(10 * time.Second):
			t.Fatal("event not applied")
		}
	}
	for i, in := range cl.ins {
		if got := in.read(t, s, "k"); got != v {
			t.Fatalf("instance %d reads %d, want %d", i, got, v)
		}
	}
	for i, in := range cl.ins[1:] {
		st := in.bus.Stats()
		if st.KeysApplied != 1 || st.Received != 1 || st.LagP50 == 0 {
			t.Fatalf("instance %d: %+v", i+1, st)
		}
	}
	// The writer's own event comes back on its subscription in its own
	// time (the others' applying it says nothing of when).
	testenv.Eventually(t, 10*time.Second, func() bool { return cl.ins[0].bus.Stats().OwnEvents >= 1 }, "the writer's own event never came back")
	if st := cl.ins[0].bus.Stats(); st.Sent != 1 || st.OwnEvents != 1 || st.KeysApplied != 0 {
		t.Fatalf("writer: %+v", st)
	}
}

// checker records acknowledged writes and checks reads against them: a read
// that began more than bound after a write was acknowledged must not return
// an older version.
type checker struct {
	mu    sync.Mutex // protects acks
	acks  []ack
	bound time.Duration
	stale atomic.Int64
	reads atomic.Int64
}

type ack struct {
	at time.Time
	v  uint64
}

func (c *checker) acked(v uint64) {
	c.mu.Lock()
	c.acks = append(c.acks, ack{time.Now(), v})
	c.mu.Unlock()
}

// floor is the newest version acknowledged more than bound before start.
func (c *checker) floor(start time.Time) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var v uint64
	for _, a := range c.acks {
		if a.at.Add(c.bound).Before(start) && a.v > v {
			v = a.v
		}
	}
	return v
}

func (c *checker) check(t testing.TB, start time.Time, got uint64) {
	c.reads.Add(1)
	if f := c.floor(start); got < f {
		c.stale.Add(1)
		t.Errorf("stale read: version %d, but %d was acknowledged more than %v before the read", got, f, c.bound)
	}
}

// runWorkload writes one key on instance 0 and reads it on every instance
// until stop is closed, checking every read.
func runWorkload(t *testing.T, cl *cluster, s *store, ck *checker, stop chan struct{}) *sync.WaitGroup {
	ck.acked(cl.ins[0].write(t, s, "k"))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			ck.acked(cl.ins[0].write(t, s, "k"))
		}
	}()
	for i, in := range cl.ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				before := in.c.Stats()
				v := in.read(t, s, "k")
				if f := ck.floor(start); v < f {
					after := in.c.Stats()
					t.Logf("instance %d stale %d<%d: l1 %d->%d l2 %d->%d loads %d->%d epoch %d serving %v healthy %v",
						i, v, f, before.L1Hits, after.L1Hits, before.L2Hits, after.L2Hits, before.Loads, after.Loads, after.Epoch, in.c.LocalServing(), in.bus.Healthy())
				}
				ck.check(t, start, v)
			}
		}()
	}
	return &wg
}

// TestSubscriptionKill kills every pub/sub connection (CLIENT KILL TYPE
// pubsub) during a stream of writes: events published while the
// subscriptions are down are lost, yet no instance serves a stale L1 entry,
// because L1 is off while a subscription is down and flushed when it is back.
func TestSubscriptionKill(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	cl := newCluster(t, srv.Addr(), 3, nil)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	s := newStore()
	ck := &checker{bound: DefaultHealthWindow + 250*time.Millisecond} // scheduling slack under -race on 2 cores
	stop := make(chan struct{})
	wg := runWorkload(t, cl, s, ck, stop)
	for round := 0; round < 5; round++ {
		time.Sleep(100 * time.Millisecond)
		if err := admin.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	// On a loaded machine the reads are slow: keep going until there are
	// enough of them to mean something.
	testenv.WaitFor(20*time.Second, func() bool { return ck.reads.Load() >= 100 }) // checked below
	close(stop)
	wg.Wait()
	var subs uint64
	for _, in := range cl.ins {
		subs += in.bus.Stats().Subscribes
	}
	if subs < 3+3 {
		t.Fatalf("%d subscriptions: the kills did not take effect", subs)
	}
	if ck.reads.Load() < 100 || ck.stale.Load() != 0 {
		t.Fatalf("%d reads, %d stale", ck.reads.Load(), ck.stale.Load())
	}
	t.Logf("%d reads, %d writes, %d (re)subscriptions, 0 stale", ck.reads.Load(), len(ck.acks), subs)
}

// TestRedisRestart stops Redis (killed by PID: it loses everything) during a
// stream of writes and starts it again: readers see no errors during the
// outage, and no stale entry once it is over.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	cl := newCluster(t, srv.Addr(), 3, nil)
	s := newStore()
	ck := &checker{bound: DefaultHealthWindow + 250*time.Millisecond}
	stop := make(chan struct{})
	wg := runWorkload(t, cl, s, ck, stop)
	time.Sleep(150 * time.Millisecond)
	srv.Stop()
	time.Sleep(400 * time.Millisecond)
	srv.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, in := range cl.ins {
		if err := in.bus.WaitHealthy(ctx); err != nil {
			t.Fatalf("no recovery: %v", err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if ck.stale.Load() != 0 {
		t.Fatalf("%d stale reads", ck.stale.Load())
	}
	// After recovery every instance agrees with the source.
	final := s.vals["k"]
	var last []string
	testenv.Eventually(t, 5*time.Second, func() bool {
		last = last[:0]
		ok := true
		for _, in := range cl.ins {
			v, err := cache.Get(context.Background(), in.c, "k", s.load)
			last = append(last, fmt.Sprintf("v=%d err=%v cache=%+v bus=%+v", v, err, in.c.Stats(), in.bus.Stats()))
			ok = ok && err == nil && v == final
		}
		return ok
	}, "instances do not converge on version %d: %v", final, last)
	t.Logf("%d reads, %d writes, epochs adopted %d", ck.reads.Load(), len(ck.acks), cl.ins[1].c.Stats().EpochChanges)
}

// TestBadPayloads publishes garbage and events of another namespace on the
// channel: they are counted and ignored, nothing is evicted, nothing panics.
func TestBadPayloads(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, testenv.RedisAddr(t), 1, nil)
	in := cl.ins[0]
	s := newStore()
	s.bump("k")
	in.read(t, s, "k")
	rdb := testenv.Redis(t)
	other, _ := Encode(nil, Event{Kind: KindInvalidate, Namespace: "someone-else", Origin: "x", Seq: 1, Keys: []cache.Invalidation{{Key: "k", Version: 9}}})
	for _, p := range []string{"", "garbage", "gI\x01\x01\xff", `{"key":"k"}`, string(other)} {
		rdb.Publish(context.Background(), in.bus.channel, p)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return in.bus.Stats().BadEvents == 5 }, "bad events not counted: %+v", in.bus.Stats())
	if st := in.bus.Stats(); st.KeysApplied != 0 || in.c.Stats().LocalEvictions != 0 || st.Gaps != 0 {
		t.Fatalf("garbage evicted something: %+v %+v", st, in.c.Stats())
	}
}

// TestSequenceGapFlushes: a gap in an origin's sequence numbers means lost
// events, so L1 is flushed. Other flushes (a return to health, a
// resubscription) can happen on a loaded machine; an attempt during which
// one did proves nothing about the gap and is repeated with a new gap.
func TestSequenceGapFlushes(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, testenv.RedisAddr(t), 1, nil)
	in := cl.ins[0]
	rdb := testenv.Redis(t)
	send := func(seq uint64) {
		p, _ := Encode(nil, Event{Kind: KindInvalidate, Namespace: cl.ns, Origin: "peer", Seq: seq, Keys: []cache.Invalidation{{Key: "other", Version: 1}}})
		rdb.Publish(context.Background(), in.bus.channel, p)
	}
	seq := uint64(0)
	for attempt := 1; attempt <= 5; attempt++ {
		// One event in sequence, so that the origin is known (a
		// resubscription forgets every origin), then one after a gap.
		seq++
		received := in.bus.Stats().Received
		send(seq)
		testenv.Eventually(t, 5*time.Second, func() bool { return in.bus.Stats().Received > received }, "event not received")
		before, cbefore := in.bus.Stats(), in.c.Stats()
		seq += 3 // seq-2 and seq-1 are lost
		send(seq)
		testenv.WaitFor(5*time.Second, func() bool { return in.bus.Stats().Gaps != before.Gaps }) // checked below
		after, cafter := in.bus.Stats(), in.c.Stats()
		if after.Unhealthy != before.Unhealthy || after.Recoveries != before.Recoveries || after.Subscribes != before.Subscribes || cafter.Epoch != cbefore.Epoch {
			continue // another flush happened (or the origin was forgotten): try again
		}
		if after.Gaps != before.Gaps+1 {
			t.Fatalf("gap not seen: %+v", after)
		}
		if cafter.Flushes != cbefore.Flushes+1 {
			t.Fatalf("gap did not flush L1 once: flushes %d -> %d", cbefore.Flushes, cafter.Flushes)
		}
		return
	}
	t.Fatal("the bus never stayed healthy for a whole attempt")
}

// TestSilenceTurnsL1Off blackholes the subscription: within HealthWindow L1
// stops being served, and when the connection answers again L1 is flushed
// before it serves.
func TestSilenceTurnsL1Off(t *testing.T) {
	t.Parallel()
	proxy := testenv.NewProxy(t, testenv.RedisAddr(t))
	direct := testenv.Redis(t)
	subRdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	defer subRdb.Close()
	c, err := cache.New(context.Background(), cache.Options{Redis: direct, Namespace: testenv.Namespace(t, direct)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := New(context.Background(), c, Options{Redis: subRdb})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	if !c.LocalServing() {
		t.Fatal("L1 off while healthy")
	}
	proxy.Blackhole()
	testenv.Eventually(t, 5*time.Second, func() bool { return !c.LocalServing() }, "L1 still served after the subscription went silent: %+v", b.Stats())
	flushes, subs := c.Stats().Flushes, b.Stats().Subscribes
	proxy.Restore()
	// The blackhole dropped the subscription's connection: L1 serves again
	// only after a resubscription, which flushes it first.
	testenv.Eventually(t, 10*time.Second, func() bool {
		return b.Stats().Subscribes > subs && b.Healthy() && c.LocalServing()
	}, "no recovery: %+v", b.Stats())
	if c.Stats().Flushes <= flushes {
		t.Fatalf("recovered without flushing: %+v", c.Stats())
	}
}

func TestOptionsValidation(t *testing.T) {
	if _, err := New(context.Background(), nil, Options{}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("nil cache: %v", err)
	}
	c, _ := cache.New(context.Background(), cache.Options{})
	defer c.Close()
	if _, err := New(context.Background(), c, Options{}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("cache without Redis: %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	if _, err := New(context.Background(), c, Options{Redis: rdb, PingInterval: time.Second, HealthWindow: time.Millisecond}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("window under interval: %v", err)
	}
}

// TestScriptFlushDuringInvalidation: when the tombstone script meets
// NOSCRIPT, the event sent in the same round trip is sent again after the
// script is re-sent, so the other instance's final state is the new version.
func TestScriptFlushDuringInvalidation(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t) // SCRIPT FLUSH must not disturb other tests
	cl := newCluster(t, srv.Addr(), 2, nil)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	s := newStore()
	s.bump("k")
	cl.ins[1].read(t, s, "k")
	cl.ins[1].read(t, s, "k") // in instance 2's L1
	if err := admin.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	v := cl.ins[0].write(t, s, "k")
	testenv.Eventually(t, 5*time.Second, func() bool { return cl.ins[1].bus.Stats().KeysApplied >= 1 }, "event not applied")
	if got := cl.ins[1].read(t, s, "k"); got != v {
		t.Fatalf("instance 2 reads %d, want %d", got, v)
	}
	if st := cl.ins[0].bus.Stats(); st.Sent == 0 {
		t.Fatalf("writer: %+v", st)
	}
}
