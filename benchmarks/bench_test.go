package benchmarks

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Every benchmark runs one sub-benchmark per contestant, in the order of
// allContestants, named Benchmark<Workload>/<contestant>. See README.md for
// what each workload does and why.

// forEach runs fn as a sub-benchmark for each contestant.
func forEach(b *testing.B, cs []contestant, fn func(b *testing.B, e *env, c contestant)) {
	e := getEnv(b)
	for _, c := range cs {
		b.Run(c.name, func(b *testing.B) { fn(b, e, c) })
	}
}

// withMany is the contestants that have a batch read.
func withMany(cs []contestant) []contestant {
	var out []contestant
	for _, c := range cs {
		if c.many {
			out = append(out, c)
		}
	}
	return out
}

// hotID is the row of the L1-hit workloads.
const hotID = 42

// warmIDs returns a warm function that reads ids twice through every
// instance (the second read fills tiers that a first read fills lazily).
func warmIDs(first, n int64) func(*group) error {
	return func(g *group) error {
		for _, inst := range g.insts {
			for pass := 0; pass < 2; pass++ {
				if err := parallelGet(context.Background(), inst, first, first+n-1); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// BenchmarkL1Hit reads one hot row over and over from one goroutine: the
// in-process tier's hit path (Redis's, for the contestants without one; the
// database's, for raw GORM).
func BenchmarkL1Hit(b *testing.B) {
	forEach(b, allContestants, func(b *testing.B, e *env, c contestant) {
		g := acquire(b, e, c, 1, warmIDs(hotID, 1))
		inst, ctx := g.insts[0], context.Background()
		before := snapshot()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r, err := inst.Get(ctx, hotID)
			if err != nil {
				b.Fatal(err)
			}
			if err := checkRow(r, hotID); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		before.report(b, c, int64(b.N))
	})
}

// BenchmarkL1HitParallel is BenchmarkL1Hit from GOMAXPROCS goroutines at once.
func BenchmarkL1HitParallel(b *testing.B) {
	forEach(b, allContestants, func(b *testing.B, e *env, c contestant) {
		g := acquire(b, e, c, 1, warmIDs(hotID, 1))
		inst, ctx := g.insts[0], context.Background()
		before := snapshot()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r, err := inst.Get(ctx, hotID)
				if err == nil {
					err = checkRow(r, hotID)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		before.report(b, c, int64(b.N))
	})
}

// The L2-hit workload rotates over l2Keys rows that Redis holds.
const (
	l2First = 1001
	l2Keys  = 1000
)

// BenchmarkL2Hit reads rows that Redis holds but the in-process tier does
// not: before each read the row is dropped from the local tier with the
// library's own local-only delete (inside the timed loop; it costs far less
// than the Redis round trip). Rotating over 1000 rows lets asynchronous
// local fills (gocache) finish long before the row comes round again.
func BenchmarkL2Hit(b *testing.B) {
	forEach(b, allContestants, func(b *testing.B, e *env, c contestant) {
		g := acquire(b, e, c, 1, warmIDs(l2First, l2Keys))
		inst, ctx := g.insts[0], context.Background()
		ev, _ := inst.(localEvicter)
		before := snapshot()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			id := int64(l2First + i%l2Keys)
			if ev != nil {
				ev.EvictLocal(id)
			}
			r, err := inst.Get(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			if err := checkRow(r, id); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		before.report(b, c, int64(b.N))
	})
}

// BenchmarkMiss reads rows that neither tier has: each read is a row this
// group of instances never read (a fresh namespace when the table is used
// up), so it measures the whole read-through: local miss, Redis miss, the
// SELECT, and filling both tiers.
func BenchmarkMiss(b *testing.B) {
	forEach(b, allContestants, func(b *testing.B, e *env, c contestant) {
		g := acquire(b, e, c, 1, nil)
		inst, ctx := g.insts[0], context.Background()
		before := snapshot()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if g.next > numRows {
				b.StopTimer()
				g = renew(b, e, c, 1)
				inst = g.insts[0]
				b.StartTimer()
			}
			id := g.next
			g.next++
			r, err := inst.Get(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			if err := checkRow(r, id); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		before.report(b, c, int64(b.N))
	})
}

// stampedeReaders is how many goroutines read the same cold row at once.
const stampedeReaders = 1000

// BenchmarkStampede starts 1000 goroutines (outside the timer), releases
// them at once on one cold row, and times until all have it. dbq/stampede
// is the number of SELECTs each stampede cost.
func BenchmarkStampede(b *testing.B) { stampede(b, 1) }

// BenchmarkStampedeFleet is the same stampede spread over 4 instances of
// each library (250 goroutines each): a fleet-wide miss storm.
func BenchmarkStampedeFleet(b *testing.B) { stampede(b, 4) }

func stampede(b *testing.B, n int) {
	forEach(b, allContestants, func(b *testing.B, e *env, c contestant) {
		g := acquire(b, e, c, n, nil)
		ctx := context.Background()
		before := snapshot()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			if g.next > numRows {
				g = renew(b, e, c, n)
			}
			id := g.next
			g.next++
			start := make(chan struct{})
			var wg sync.WaitGroup
			var failed atomic.Value
			for k := 0; k < stampedeReaders; k++ {
				inst := g.insts[k%n]
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					r, err := inst.Get(ctx, id)
					if err == nil {
						err = checkRow(r, id)
					}
					if err != nil {
						failed.CompareAndSwap(nil, err)
					}
				}()
			}
			b.StartTimer()
			close(start)
			wg.Wait()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		before.report(b, c, int64(b.N)*stampedeReaders)
		b.ReportMetric(float64(selects.Load()-before.selects)/float64(b.N), "dbq/stampede")
	})
}

// getManySize is the batch of the GetMany workload.
const getManySize = 100

// BenchmarkGetMany reads 100 rows at once, rotating over 10 fixed batches of
// random rows that both tiers hold, with each library's batch read (not
// every library has one). gorm-caches caches each batch as one query result.
func BenchmarkGetMany(b *testing.B) {
	forEach(b, withMany(allContestants), func(b *testing.B, e *env, c contestant) {
		g := acquire(b, e, c, 1, func(g *group) error {
			r := rand.New(rand.NewPCG(7, 11))
			perm := r.Perm(numRows)
			for i := 0; i < 10; i++ {
				batch := make([]int64, getManySize)
				for k := range batch {
					batch[k] = int64(perm[i*getManySize+k]) + 1
				}
				g.batches = append(g.batches, batch)
				for pass := 0; pass < 2; pass++ {
					if _, err := g.insts[0].(manyGetter).GetMany(context.Background(), batch); err != nil {
						return err
					}
				}
			}
			return nil
		})
		inst, ctx := g.insts[0].(manyGetter), context.Background()
		before := snapshot()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			batch := g.batches[i%len(g.batches)]
			rows, err := inst.GetMany(ctx, batch)
			if err != nil {
				b.Fatal(err)
			}
			if len(rows) != len(batch) {
				b.Fatalf("asked for %d rows, got %d", len(batch), len(rows))
			}
			for k, r := range rows {
				if err := checkRow(r, batch[k]); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		before.report(b, c, int64(b.N)*getManySize)
	})
}

// mixedParallelism multiplies GOMAXPROCS into the goroutines of the mixed
// workloads (16 on the 2-vCPU reference machine): they wait on PostgreSQL
// and Redis, so GOMAXPROCS goroutines would leave the machine idle.
const mixedParallelism = 8

// mixedGoroutines is the goroutines of the untimed settling phase: as many
// as the timed phase has on the reference machine.
const mixedGoroutines = 16

// settleTime is how long the mixed workloads run untimed after warming.
const settleTime = time.Second

// writeShare is the fraction of mixed operations that are writes.
const writeShare = 0.05

// BenchmarkMixed is 95 % reads and 5 % writes of Zipf(1.1)-distributed rows
// of the whole table, from 16 goroutines on one instance whose caches hold
// every row at the start (warmed outside the timer, once per contestant).
// Writes go through the library (each with its own invalidation); reads
// count a stale read when they return a version older than one acknowledged
// more than 250 ms before the read started.
func BenchmarkMixed(b *testing.B) {
	forEach(b, mixedContestants, func(b *testing.B, e *env, c contestant) {
		g := acquire(b, e, c, 1, warmMixed(e, c))
		mixed(b, c, g, g.insts[0], g.insts[0])
	})
}

// BenchmarkMixedTwoInstances is BenchmarkMixed over two instances of each
// library (separate local tiers and Redis clients, shared Redis data):
// writes go through the first, reads through the second, so only the
// library's cross-instance invalidation keeps the reader fresh.
func BenchmarkMixedTwoInstances(b *testing.B) {
	forEach(b, mixedContestants, func(b *testing.B, e *env, c contestant) {
		g := acquire(b, e, c, 2, warmMixed(e, c))
		mixed(b, c, g, g.insts[0], g.insts[1])
	})
}

// warmMixed vacuums the table (so that each contestant meets the same
// database, not the dead row versions of the previous one's writes), fills
// every instance of the group with the whole table, then lets the workload
// settle (settleMixed). Raw GORM has nothing to warm, and gorm-caches
// neither: its first write empties its whole cache, so what it holds in its
// steady state is what the settling phase leaves.
func warmMixed(e *env, c contestant) func(*group) error {
	return func(g *group) error {
		if err := e.db.Exec(`VACUUM ANALYZE "` + e.table + `"`).Error; err != nil {
			return err
		}
		if c.name != cRaw.name && c.name != cGormCaches.name {
			for _, inst := range g.insts {
				if err := warmAll(e, inst, c.batchFill); err != nil {
					return err
				}
			}
		}
		return settleMixed(g, g.insts[0], g.insts[len(g.insts)-1], settleTime)
	}
}

// mixed runs the mixed workload of contestant c: writes on w, reads on r.
func mixed(b *testing.B, c contestant, g *group, w, r instance) {
	ctx := context.Background()
	var st mixedStats
	var goroutine, seq atomic.Uint64
	before := snapshot()
	b.SetParallelism(mixedParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		keys := newZipfKeys(goroutine.Add(1))
		for pb.Next() {
			if err := mixedOp(ctx, keys, w, r, g, &st, &seq); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	before.report(b, c, st.reads.Load())
	b.ReportMetric(float64(st.stale.Load()), "stale-reads")
	b.ReportMetric(float64(st.stale.Load())*1e6/float64(max(st.reads.Load(), 1)), "stale-ppm")
	b.ReportMetric(float64(st.conflicts.Load()), "conflicts")
}
