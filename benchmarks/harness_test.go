package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// staleAfter is the staleness bound the suite holds every library to: a read
// that starts more than staleAfter after a write was acknowledged must not
// return an older version.
const staleAfter = 250 * time.Millisecond

// group is the set of instances one sub-benchmark uses (one, or two for the
// two-instance workloads), with the state that must outlive a single call of
// the benchmark function: go test calls it several times while it sizes b.N,
// and -count times in a row, and the caches stay warm across those calls as
// they would in a running service.
type group struct {
	key   string // b.Name()
	ns    string
	insts []instance
	// tracker records acknowledged writes, for the stale-read check.
	tracker *tracker
	// next is the next never-read id, for the workloads that need cold keys.
	next int64
	// batches are the id sets of the GetMany workload.
	batches [][]int64
}

var current struct {
	mu sync.Mutex
	g  *group
}

// acquire returns the group of b's sub-benchmark, opening n instances of c
// (sharing one namespace) and running warm on them the first time. The group
// of the previous sub-benchmark is closed and its Redis keys deleted, so
// each contestant runs alone with its own data.
func acquire(b *testing.B, e *env, c contestant, n int, warm func(*group) error) *group {
	b.Helper()
	current.mu.Lock()
	defer current.mu.Unlock()
	if current.g != nil && current.g.key == b.Name() {
		return current.g
	}
	closeGroupLocked()
	g, err := openGroup(e, c, n)
	if err != nil {
		b.Fatalf("open %s: %v", c.name, err)
	}
	g.key = b.Name()
	current.g = g
	if warm != nil {
		start := time.Now()
		if err := warm(g); err != nil {
			b.Fatalf("warm %s: %v", c.name, err)
		}
		if os.Getenv(envVerbose) != "" {
			b.Logf("%s: warmed in %v", c.name, time.Since(start).Round(time.Millisecond))
		}
		// Let asynchronous work the warm-up started (background Redis
		// fills, queued sync events) finish outside the timed loop.
		time.Sleep(quiesce)
	}
	return g
}

// quiesce is the pause between warming and measuring.
const quiesce = 200 * time.Millisecond

// envVerbose, when set, makes the suite log its set-up times.
const envVerbose = "GORMCACHE_BENCH_VERBOSE"

// renew replaces the current group with a fresh one (new namespace, cold
// caches), keeping its key.
func renew(b *testing.B, e *env, c contestant, n int) *group {
	b.Helper()
	current.mu.Lock()
	defer current.mu.Unlock()
	key := current.g.key
	closeGroupLocked()
	g, err := openGroup(e, c, n)
	if err != nil {
		b.Fatalf("open %s: %v", c.name, err)
	}
	g.key = key
	current.g = g
	return g
}

func openGroup(e *env, c contestant, n int) (*group, error) {
	g := &group{ns: e.newNamespace(c.name), tracker: newTracker(numRows), next: 1}
	for i := 0; i < n; i++ {
		inst, err := c.open(e, g.ns)
		if err != nil {
			g.close()
			return nil, err
		}
		g.insts = append(g.insts, inst)
	}
	return g, nil
}

func (g *group) close() {
	for _, inst := range g.insts {
		inst.Close()
	}
	if theEnv != nil {
		rdb := theEnv.newRedis()
		deletePrefix(rdb, g.ns+":")
		rdb.Close()
	}
}

func closeGroupLocked() {
	if current.g != nil {
		current.g.close()
		current.g = nil
	}
}

// releaseGroup closes the last group (TestMain).
func releaseGroup() {
	current.mu.Lock()
	defer current.mu.Unlock()
	closeGroupLocked()
}

// warmAll fills both tiers of inst with the whole table: through the
// library's own batch read where it fills the per-row entries (gormcache,
// jetcache-go, rockscache), through its own Set where it has no batch read
// (gocache, go-redis/cache: the rows are read in pages of 10k first), else
// with parallel Gets.
func warmAll(e *env, inst instance, batchFill bool) error {
	ctx := context.Background()
	if f, ok := inst.(filler); ok {
		const page = 10_000
		for first := int64(1); first <= numRows; first += page {
			var rows []Row
			if err := e.db.WithContext(ctx).Where("id BETWEEN ? AND ?", first, first+page-1).Order("id").Find(&rows).Error; err != nil {
				return err
			}
			if err := parallelDo(len(rows), func(i int) error { return f.Fill(ctx, &rows[i]) }); err != nil {
				return err
			}
		}
		return nil
	}
	if m, ok := inst.(manyGetter); ok && batchFill {
		const batch = 500
		ids := make([]int64, 0, batch)
		for id := int64(1); id <= numRows; id++ {
			ids = append(ids, id)
			if len(ids) == batch || id == numRows {
				if _, err := m.GetMany(ctx, ids); err != nil {
					return err
				}
				ids = ids[:0]
			}
		}
		return nil
	}
	return parallelGet(ctx, inst, 1, numRows)
}

// filler is implemented by instances whose library has no batch read but a
// Set that fills the same entries a read would.
type filler interface {
	// Fill stores row in every tier, as a read that loaded it would.
	Fill(ctx context.Context, row *Row) error
}

// parallelDo calls fn(0..n-1) from 16 goroutines and returns the first error.
func parallelDo(n int, fn func(i int) error) error {
	var next atomic.Int64
	next.Store(-1)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i >= int64(n) {
					return
				}
				if err := fn(int(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// parallelGet reads ids [first, last] with 16 goroutines.
func parallelGet(ctx context.Context, inst instance, first, last int64) error {
	return parallelDo(int(last-first+1), func(i int) error {
		id := first + int64(i)
		if _, err := inst.Get(ctx, id); err != nil {
			return fmt.Errorf("get %d: %w", id, err)
		}
		return nil
	})
}

// counters is a snapshot of the suite-wide counters.
type counters struct {
	selects, rtt, jetDropped, jetOther uint64
}

func snapshot() counters {
	return counters{selects: selects.Load(), rtt: redisRTT.Load(), jetDropped: jetLogs.dropped.Load(), jetOther: jetLogs.other.Load()}
}

// report adds the metrics every workload reports: database queries per 1000
// reads and Redis round trips per operation; for jetcache-go also the sync
// events it dropped (its event channel holds 100) and, in the log, any other
// warning or error it reported.
func (c counters) report(b *testing.B, ct contestant, reads int64) {
	now := snapshot()
	if reads > 0 {
		b.ReportMetric(float64(now.selects-c.selects)*1000/float64(reads), "dbq/1000reads")
	}
	if b.N > 0 {
		b.ReportMetric(float64(now.rtt-c.rtt)/float64(b.N), "redis-rtt/op")
	}
	if ct.name == cJetcache.name {
		b.ReportMetric(float64(now.jetDropped-c.jetDropped), "jet-dropped-events")
		if n := now.jetOther - c.jetOther; n > 0 {
			b.Logf("jetcache-go logged %d other warnings or errors", n)
		}
	}
}

// checkRow fails when a read returned another row than asked for.
func checkRow(r *Row, id int64) error {
	if r == nil || r.ID != id {
		return fmt.Errorf("asked for row %d, got %+v", id, r)
	}
	return nil
}

// ---------------------------------------------------------------- staleness

// tracker records, per key, the versions writers had acknowledged and when,
// and tells a reader the newest version acknowledged before a given time.
type tracker struct {
	keys []keyAcks
}

type keyAcks struct {
	mu   sync.Mutex
	acks []ack // at most one entry older than pruneAfter, kept sorted by time of record
}

type ack struct {
	version uint64
	at      int64 // unix nanoseconds
}

// pruneAfter is how old an ack must be before a newer-version older-than-
// staleAfter ack may replace it. It exceeds staleAfter by a margin for reads
// that started a little before the write that prunes.
const pruneAfter = staleAfter + time.Second

func newTracker(n int) *tracker { return &tracker{keys: make([]keyAcks, n+1)} }

// record notes that version of id was acknowledged at.
func (t *tracker) record(id int64, version uint64, at time.Time) {
	k := &t.keys[id]
	k.mu.Lock()
	k.acks = append(k.acks, ack{version: version, at: at.UnixNano()})
	// Keep only the newest version among the acks older than pruneAfter.
	cut := at.Add(-pruneAfter).UnixNano()
	best, bestIdx := uint64(0), -1
	for i, a := range k.acks {
		if a.at < cut && a.version >= best {
			best, bestIdx = a.version, i
		}
	}
	if bestIdx >= 0 {
		kept := k.acks[:0]
		for i, a := range k.acks {
			if a.at >= cut || i == bestIdx {
				kept = append(kept, a)
			}
		}
		k.acks = kept
	}
	k.mu.Unlock()
}

// floor returns the newest version of id acknowledged before t (0: none).
func (t *tracker) floor(id int64, before time.Time) uint64 {
	k := &t.keys[id]
	cut := before.UnixNano()
	var v uint64
	k.mu.Lock()
	for _, a := range k.acks {
		if a.at < cut && a.version > v {
			v = a.version
		}
	}
	k.mu.Unlock()
	return v
}

// ---------------------------------------------------------------- key choice

// zipfKeys draws ids 1..numRows with a Zipf(s=1.1) distribution over ranks,
// the ranks scattered over the table by a fixed permutation so that hot rows
// do not share pages or neighbouring keys. Not safe for concurrent use.
type zipfKeys struct {
	r *rand.Rand
	z *rand.Zipf
}

// zipfPerm is a multiplier coprime to numRows: rank -> id is a permutation.
const zipfPerm = 7919

func newZipfKeys(seed uint64) *zipfKeys {
	r := rand.New(rand.NewPCG(seed, 0x5851f42d4c957f2d))
	return &zipfKeys{r: r, z: rand.NewZipf(r, 1.1, 1, numRows-1)}
}

func (z *zipfKeys) next() int64 {
	rank := z.z.Uint64()
	return int64(rank*zipfPerm%numRows) + 1
}

// ---------------------------------------------------------------- mixed ops

// mixedStats are the per-run counters of a mixed workload.
type mixedStats struct {
	reads, writes, stale, conflicts atomic.Int64
}

// mixedWrite is the write of the mixed workloads: read the row through the
// writer instance, change it, write it through the library.
//
// Only gormcache refuses a write based on a stale read (optimistic locking:
// the peers' UPDATE overwrites whatever is there). On its conflicts the
// write re-reads and retries after an exponential backoff with full jitter,
// as an application would; on the hottest row, where a dozen goroutines
// write at once, this costs retries that the blind writes of the peers do
// not pay (they lose updates instead). Conflicts are counted.
func mixedWrite(ctx context.Context, w instance, g *group, id int64, st *mixedStats, seq uint64, r *rand.Rand) error {
	const (
		backoffBase = 200 * time.Microsecond
		backoffCap  = 20 * time.Millisecond
		giveUpAfter = 10 * time.Second
	)
	start := time.Now()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if time.Since(start) > giveUpAfter {
				return fmt.Errorf("update %d: still conflicting after %d attempts in %v", id, attempt, giveUpAfter)
			}
			ceiling := min(backoffCap, backoffBase<<min(attempt-1, 10))
			time.Sleep(time.Duration(r.Int64N(int64(ceiling))))
		}
		row, err := w.Get(ctx, id)
		st.reads.Add(1)
		if err != nil {
			return fmt.Errorf("get %d: %w", id, err)
		}
		if err := checkRow(row, id); err != nil {
			return err
		}
		row.Score = int64(seq)
		row.Active = !row.Active
		err = w.Update(ctx, row)
		if errors.Is(err, errConflict) {
			st.conflicts.Add(1)
			continue
		}
		if err != nil {
			return fmt.Errorf("update %d: %w", id, err)
		}
		g.tracker.record(id, uint64(row.Version), time.Now())
		st.writes.Add(1)
		return nil
	}
}

// mixedOp is one operation of the mixed workloads: a write through w
// (writeShare of them) or a read through r of a Zipf-distributed row.
func mixedOp(ctx context.Context, keys *zipfKeys, w, r instance, g *group, st *mixedStats, seq *atomic.Uint64) error {
	id := keys.next()
	if keys.r.Float64() < writeShare {
		return mixedWrite(ctx, w, g, id, st, seq.Add(1), keys.r)
	}
	return mixedRead(ctx, r, g, id, st)
}

// settleMixed runs the mixed workload untimed for d on mixedGoroutines
// goroutines, so that each library is measured in its steady state under
// writes rather than just after warming (gorm-caches, for one, empties its
// whole cache on the first write).
func settleMixed(g *group, w, r instance, d time.Duration) error {
	ctx := context.Background()
	var st mixedStats
	var seq atomic.Uint64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	errs := make(chan error, mixedGoroutines)
	for k := 0; k < mixedGoroutines; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys := newZipfKeys(uint64(1000 + k))
			for time.Now().Before(deadline) {
				if err := mixedOp(ctx, keys, w, r, g, &st, &seq); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// mixedRead is the read of the mixed workloads, with the stale check.
func mixedRead(ctx context.Context, r instance, g *group, id int64, st *mixedStats) error {
	start := time.Now()
	want := g.tracker.floor(id, start.Add(-staleAfter))
	row, err := r.Get(ctx, id)
	st.reads.Add(1)
	if err != nil {
		return fmt.Errorf("get %d: %w", id, err)
	}
	if err := checkRow(row, id); err != nil {
		return err
	}
	if uint64(row.Version) < want {
		st.stale.Add(1)
	}
	return nil
}
