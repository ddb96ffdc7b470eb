package cache

import (
	"context"
	"testing"
	"time"

	"github.com/gormcache/gormcache/internal/failpoint"
)

// epochScenarios are the races of RetireAll (a write whose keys are not
// known retires the namespace by an epoch bump) against concurrent epoch
// reads of the same cache.
var epochScenarios = []raceScenario{
	{
		// A periodic epoch read answered before the bump is adopted after
		// it: the cache returns to the old epoch and serves the entries
		// the bump retired, to the writer itself.
		name: "epoch read that began before RetireAll", guards: []string{failpoint.GuardEpochOrder}, opts: quietEpoch,
		run: func(t *testing.T, c *Cache, key string) bool {
			ctx := context.Background()
			s := newSource()
			s.put(key, sampleRow(1, 1))
			mustGet(t, c, key, s) // v1 in both tiers, at the current epoch
			reached, release := make(chan struct{}), make(chan struct{})
			defer failpoint.Set(failpoint.AfterEpochRead, c.Namespace()+"/"+epochIncarnation, once(func(context.Context, string) {
				close(reached)
				<-release
			}))()
			done := make(chan error, 1)
			go func() { done <- c.RefreshEpoch(ctx) }()
			<-reached
			s.put(key, sampleRow(1, 2)) // a write whose keys are unknown
			if err := c.RetireAll(ctx); err != nil {
				t.Fatal(err)
			}
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			return mustGet(t, c, key, s).Version != 2
		},
	},
	{
		// Another caller adopts the bumped epoch first and has not flushed
		// L1 yet: RetireAll finds the epoch in use and returns, and the
		// writer reads its L1 copy from before the write.
		name: "RetireAll returns before L1 is flushed", guards: []string{failpoint.GuardEpochOrder}, opts: quietEpoch,
		run: func(t *testing.T, c *Cache, key string) bool {
			ctx := context.Background()
			s := newSource()
			s.put(key, sampleRow(1, 1))
			mustGet(t, c, key, s)
			mustGet(t, c, key, s) // v1 in L1
			bumped, resume := make(chan struct{}), make(chan struct{})
			defer failpoint.Set(failpoint.AfterEpochRead, c.Namespace()+"/"+epochBump, once(func(context.Context, string) {
				close(bumped)
				<-resume
			}))()
			adopted, flush := make(chan struct{}), make(chan struct{})
			defer failpoint.Set(failpoint.BeforeEpochFlush, c.Namespace(), once(func(context.Context, string) {
				close(adopted)
				<-flush
			}))()
			s.put(key, sampleRow(1, 2))
			retired := make(chan error, 1)
			go func() { retired <- c.RetireAll(ctx) }()
			<-bumped // the epoch is raised in Redis, not adopted yet
			refreshed := make(chan error, 1)
			go func() { refreshed <- c.RefreshEpoch(ctx) }()
			<-adopted // the reader switched epochs and holds L1's old rows
			close(resume)
			var stale bool
			select {
			case err := <-retired: // returned while the reader has not flushed
				if err != nil {
					t.Fatal(err)
				}
				stale = mustGet(t, c, key, s).Version != 2
				close(flush)
			case <-time.After(time.Second): // guarded: waits for the flush
				close(flush)
				if err := <-retired; err != nil {
					t.Fatal(err)
				}
				stale = mustGet(t, c, key, s).Version != 2
			}
			if err := <-refreshed; err != nil {
				t.Fatal(err)
			}
			return stale
		},
	},
}

// quietEpoch keeps the maintenance loop from reading the epoch on its own
// while a scenario arranges the reads.
func quietEpoch(o *Options) { o.EpochInterval = time.Hour }

func TestEpochRaces(t *testing.T) {
	for _, sc := range epochScenarios {
		t.Run(sc.name, func(t *testing.T) { raceBothWays(t, sc) })
	}
}
