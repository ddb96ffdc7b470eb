package invalidation

import (
	"context"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/testenv"
)

// notSubscribedAttrs picks out the warning that the first subscription
// could not be made.
var notSubscribedAttrs = map[string]string{"subscribe_timeout": "", "error": ""}

// slowClient is a client whose own timeouts are long: a connection attempt
// that the bus did not bound itself would hold New or Close for 30 s.
func slowClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: 30 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
	})
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// silentServer accepts connections, reads what they send and never
// answers, until the test ends.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// busGoroutines counts the goroutines running the bus's code.
func busGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "invalidation.(*Bus)")
}

// TestNewAgainstUnreachableRedis: against a Redis that refuses connections
// or never answers, New returns the bus within about SubscribeTimeout (not
// the client's 30 s timeouts), logs once that it could not subscribe, keeps
// L1 off and reports itself unhealthy while reads are still served from
// the source; Close returns promptly and leaves no bus goroutine behind.
func TestNewAgainstUnreachableRedis(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr func(*testing.T) string
	}{
		{"closed port", closedPort},
		{"silent server", silentServer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := slowClient(tc.addr(t))
			defer rdb.Close()
			c, err := cache.New(context.Background(), cache.Options{Redis: rdb, Namespace: testenv.Name(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			logs := &testenv.LogRecorder{}
			const subscribeTimeout = 200 * time.Millisecond
			start := time.Now()
			b, err := New(context.Background(), c, Options{SubscribeTimeout: subscribeTimeout, Logger: slog.New(logs)})
			if took := time.Since(start); err != nil || took > 10*time.Second {
				t.Fatalf("New: %v after %v; want the bus, within about SubscribeTimeout", err, took)
			}
			time.Sleep(5 * subscribeTimeout) // several attempts
			st := b.Stats()
			if b.Healthy() || st.Healthy || st.Subscribes != 0 || c.LocalServing() {
				t.Fatalf("healthy %v, stats %+v, L1 served %v: nothing is subscribed", b.Healthy(), st, c.LocalServing())
			}
			if n := len(logs.Matching(slog.LevelWarn, notSubscribedAttrs)); n != 1 {
				t.Fatalf("%d warnings that the bus could not subscribe, want exactly 1: %v", n, logs.Records())
			}
			s := newStore()
			want := s.bump("k")
			for range 3 {
				if v := (instance{c: c, bus: b}).read(t, s, "k"); v != want {
					t.Fatalf("read %d, want %d from the source", v, want)
				}
			}
			start = time.Now()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("Close took %v: a connection attempt outlived SubscribeTimeout", took)
			}
			testenv.Eventually(t, 5*time.Second, func() bool { return busGoroutines() == 0 }, "bus goroutines still running after Close")
		})
	}
}

// TestBusStartedDuringOutage: a bus made while Redis is unreachable turns
// healthy by itself once Redis answers, and only then serves L1.
func TestBusStartedDuringOutage(t *testing.T) {
	direct := testenv.Redis(t)
	proxy := testenv.NewProxy(t, testenv.RedisAddr(t))
	proxy.Blackhole()
	sub := slowClient(proxy.Addr())
	defer sub.Close()
	ns := testenv.Namespace(t, direct)
	c, err := cache.New(context.Background(), cache.Options{Redis: direct, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	logs := &testenv.LogRecorder{}
	b, err := New(context.Background(), c, Options{Redis: sub, SubscribeTimeout: 200 * time.Millisecond, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Healthy() || c.LocalServing() {
		t.Fatal("healthy, or L1 served, without a subscription")
	}
	proxy.Restore()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := b.WaitHealthy(ctx); err != nil {
		t.Fatalf("not healthy after Redis came back: %v, %+v", err, b.Stats())
	}
	if !c.LocalServing() || b.Stats().Subscribes == 0 {
		t.Fatalf("healthy but L1 not served or no subscription counted: %+v", b.Stats())
	}
	if n := len(logs.Matching(slog.LevelWarn, notSubscribedAttrs)); n != 1 {
		t.Fatalf("%d warnings that the bus could not subscribe, want exactly 1", n)
	}
}
