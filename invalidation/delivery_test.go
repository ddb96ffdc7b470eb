package invalidation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/failpoint"
	"github.com/gormcache/gormcache/internal/testenv"
)

// TestWriteWaitsForItsEvent: Redis confirms a write's tombstones but refuses
// its PUBLISH (here an ACL without the command; in production a reply lost
// to a timeout). Subscribers vouch for their L1 with heartbeats of their
// own, so until the event is out they serve the old row from L1 however
// long it takes. The write must therefore not be acknowledged before its
// event is published: it reports ErrInvalidationUnconfirmed (degraded), and
// its epoch bump retires the old row everywhere. With GuardDelivery off, it
// returns nil and the reader serves the old row after the bound.
func TestWriteWaitsForItsEvent(t *testing.T) {
	for _, guarded := range []bool{true, false} {
		name := map[bool]string{true: "guarded", false: "guard off"}[guarded]
		t.Run(name, func(t *testing.T) {
			if !guarded {
				defer failpoint.Disable(failpoint.GuardDelivery)()
			}
			ctx := context.Background()
			reader, wc, refuse := refusedPublishFleet(t, 100*time.Millisecond)
			s := newStore()
			s.bump("k")
			if v := reader.read(t, s, "k"); v != 1 {
				t.Fatalf("read v%d", v)
			}
			refuse()
			v := s.bump("k")
			err := wc.Invalidate(ctx, "k", v)
			acked := time.Now()
			switch {
			case guarded && !errors.Is(err, cache.ErrInvalidationUnconfirmed):
				t.Fatalf("Invalidate whose event could not be published: %v, want ErrInvalidationUnconfirmed", err)
			case !guarded && err != nil:
				t.Fatalf("Invalidate: %v", err)
			}
			if guarded { // degraded: bounded from the writer's epoch bump
				testenv.WaitFor(3*time.Second, func() bool { return reader.read(t, s, "k") == v })
				if got := reader.read(t, s, "k"); got != v {
					t.Fatalf("reader still serves v%d after the degraded write's epoch bump", got)
				}
				return
			}
			time.Sleep(DefaultHealthWindow + 200*time.Millisecond)
			if got := reader.read(t, s, "k"); got == v {
				t.Fatalf("the reader read v%d %v after the write: the scenario does not exercise the delivery wait", got, time.Since(acked))
			}
		})
	}
}

// TestRetireAllWaitsForItsEvent: as TestWriteWaitsForItsEvent, for a write
// whose keys are not known (cache.RetireAll bumps the namespace epoch).
// Other instances learn of the bump from its event, or at their next
// EpochInterval (an hour here): until the event is out, RetireAll is not
// acknowledged. With GuardDelivery off it returns nil while the reader
// keeps serving the retired row from L1.
func TestRetireAllWaitsForItsEvent(t *testing.T) {
	for _, guarded := range []bool{true, false} {
		name := map[bool]string{true: "guarded", false: "guard off"}[guarded]
		t.Run(name, func(t *testing.T) {
			if !guarded {
				defer failpoint.Disable(failpoint.GuardDelivery)()
			}
			ctx := context.Background()
			reader, wc, refuse := refusedPublishFleet(t, time.Hour)
			s := newStore()
			s.bump("k")
			reader.read(t, s, "k")
			if v := reader.read(t, s, "k"); v != 1 {
				t.Fatalf("read v%d", v)
			}
			refuse()
			v := s.bump("k") // a write whose keys the writer does not know
			err := wc.RetireAll(ctx)
			if guarded {
				if !errors.Is(err, cache.ErrInvalidationUnconfirmed) {
					t.Fatalf("RetireAll whose event could not be published: %v, want ErrInvalidationUnconfirmed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("RetireAll: %v", err)
			}
			time.Sleep(DefaultHealthWindow + 200*time.Millisecond)
			if got := reader.read(t, s, "k"); got == v {
				t.Fatalf("the reader read v%d after the bump: the scenario does not exercise the delivery wait", got)
			}
		})
	}
}

// refusedPublishFleet starts a Redis of its own with a reader instance (cache
// and bus) and a writer cache with its bus, connected as an ACL user; both
// caches re-read the epoch every epochInterval. refuse takes PUBLISH away
// from the writer's user: its tombstones and epoch bumps still land, its
// events do not.
func refusedPublishFleet(t *testing.T, epochInterval time.Duration) (reader instance, writer *cache.Cache, refuse func()) {
	t.Helper()
	srv := testenv.StartRedis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "writer", "on", ">pw", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	reader = newCluster(t, srv.Addr(), 1, func(co *cache.Options, _ *Options) { co.EpochInterval = epochInterval }).ins[0]
	wdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "writer", Password: "pw", ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { wdb.Close() })
	wc, err := cache.New(ctx, cache.Options{Redis: wdb, Namespace: reader.c.Namespace(), WriteTimeout: 300 * time.Millisecond, EpochInterval: epochInterval})
	if err != nil {
		t.Fatal(err)
	}
	wb, err := New(ctx, wc, Options{InstanceID: "writer"})
	if err != nil {
		wc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { wb.Close(); wc.Close() })
	return reader, wc, func() {
		if err := admin.Do(ctx, "ACL", "SETUSER", "writer", "-publish").Err(); err != nil {
			t.Fatal(err)
		}
	}
}
