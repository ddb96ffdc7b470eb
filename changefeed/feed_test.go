package changefeed_test

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/changefeed"
	"github.com/gormcache/gormcache/internal/testenv"
	"github.com/gormcache/gormcache/invalidation"
)

// TestRawWrites: writes by another connection, through no cache (UPDATE,
// DELETE, INSERT, multi-row, savepoints, TRUNCATE), are served by every
// instance within the bound.
func TestRawWrites(t *testing.T) {
	e := newEnv(t, 2)
	d, u := e.docsTable(), e.usersTable()
	for id := int64(1); id <= 6; id++ {
		e.exec(`INSERT INTO "`+d+`" (id, title, version) VALUES (?, ?, 1)`, id, "d0")
		e.exec(`INSERT INTO "`+u+`" (id, token, name) VALUES (?, ?, ?)`, id, "tok", "u0")
		e.exec(`UPDATE "`+u+`" SET token = token || id::text WHERE id = ?`, id)
	}
	r := start(t, e.options(0))
	e.streaming(r)
	e.warm(1, 2, 3, 4, 5, 6, 7)

	var worst time.Duration
	step := func(name string, ids ...int64) {
		t.Helper()
		took := e.fresh(ids...)
		worst = max(worst, took)
		t.Logf("%s: every instance fresh after %v", name, took)
	}
	// UPDATE of a versioned row that raises the version, and of an
	// unversioned row.
	e.exec(`UPDATE "` + d + `" SET title = 'd1', version = version + 1 WHERE id = 1`)
	e.exec(`UPDATE "` + u + `" SET name = 'u1' WHERE id = 1`)
	step("update", 1)
	// UPDATE of a versioned row by a writer that leaves the version as it
	// is (no trigger, default replica identity): the cached row at that
	// version must go all the same.
	e.warm(1)
	e.exec(`UPDATE "` + d + `" SET title = 'd1-same-version' WHERE id = 1`)
	step("update, version unchanged", 1)
	// DELETE.
	e.exec(`DELETE FROM "` + d + `" WHERE id = 2`)
	e.exec(`DELETE FROM "` + u + `" WHERE id = 2`)
	step("delete", 2)
	// INSERT of a row cached as missing.
	e.exec(`INSERT INTO "` + d + `" (id, title, version) VALUES (7, 'new', 1)`)
	e.exec(`INSERT INTO "` + u + `" (id, token, name) VALUES (7, 'tok7', 'new')`)
	step("insert", 7)
	// One statement, several rows.
	e.exec(`UPDATE "` + d + `" SET title = 'multi', version = version + 1 WHERE id IN (3, 4, 5)`)
	e.exec(`UPDATE "` + u + `" SET name = 'multi' WHERE id >= 3`)
	step("multi-row", 3, 4, 5, 6)
	// A transaction with savepoints, one rolled back.
	tx := e.base.Begin()
	tx.Exec(`UPDATE "` + d + `" SET title = 'sp-kept', version = version + 1 WHERE id = 3`)
	tx.Exec(`SAVEPOINT a`)
	tx.Exec(`UPDATE "` + d + `" SET title = 'sp-undone', version = version + 1 WHERE id = 4`)
	tx.Exec(`DELETE FROM "` + u + `" WHERE id = 5`)
	tx.Exec(`ROLLBACK TO SAVEPOINT a`)
	tx.Exec(`SAVEPOINT b`)
	tx.Exec(`UPDATE "` + u + `" SET name = 'sp-b' WHERE id = 6`)
	tx.Exec(`RELEASE SAVEPOINT b`)
	if err := tx.Commit().Error; err != nil {
		t.Fatal(err)
	}
	step("savepoints", 3, 4, 5, 6)
	// The unique-column mapping of a new value (cached as missing).
	ctx := context.Background()
	for _, in := range e.in {
		if _, err := in.users.GetBy(ctx, "token", "fresh-token"); err == nil {
			t.Fatal("fresh-token found before it exists")
		}
	}
	e.exec(`UPDATE "` + u + `" SET token = 'fresh-token' WHERE id = 6`)
	for i, in := range e.in {
		testenv.Eventually(t, feedBound, func() bool {
			v, err := in.users.GetBy(ctx, "token", "fresh-token")
			return err == nil && v.ID == 6
		}, "instance %d does not find the new unique value", i)
	}
	// TRUNCATE retires the table.
	e.exec(`TRUNCATE "` + d + `", "` + u + `"`)
	step("truncate", 1, 3, 4, 5, 6, 7)

	st := r.Stats()
	if st.AppliedTxns == 0 || st.AppliedRows == 0 || st.Retired == 0 {
		t.Fatalf("stats: %+v", st)
	}
	if st.Leader != "relay0" || !st.IsLeader || st.FencingToken == 0 {
		t.Fatalf("leadership in stats: %+v", st)
	}
	testenv.Eventually(t, feedBound, func() bool { return uint64(r.Stats().AckedLSN) > 0 && e.slotLSN() >= uint64(r.Stats().AckedLSN) },
		"the slot's confirmed position does not follow the relay's acknowledgements")
	t.Logf("worst commit → fresh-everywhere step: %v; stats %+v", worst, st)
}

// TestFeedLatency measures outside COMMIT → eviction on another instance
// (a read there returns the new row), over a few hundred single-row writes.
func TestFeedLatency(t *testing.T) {
	e := newEnv(t, 2)
	d := e.docsTable()
	e.exec(`INSERT INTO "` + d + `" (id, title, version) VALUES (1, 'v', 1)`)
	r := start(t, e.options(0))
	e.streaming(r)
	other := e.in[1]
	n := *latencyWrites
	if testing.Short() {
		n = min(n, 50)
	}
	lat := make([]time.Duration, 0, n)
	for i := range n {
		if _, err := get(other.docs, 1); err != nil { // cached at the old version
			t.Fatal(err)
		}
		t0 := time.Now()
		e.exec(`UPDATE "`+d+`" SET title = ?, version = version + 1 WHERE id = 1`, fmt.Sprint(i))
		committed := time.Since(t0) // the UPDATE's round trip: its COMMIT is somewhere in it
		want := e.truthDoc(1)
		for deadline := time.Now().Add(feedBound); ; time.Sleep(100 * time.Microsecond) {
			v, err := get(other.docs, 1)
			if err == nil && v != nil && v.Version == want.Version {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("write %d not seen", i)
			}
		}
		lat = append(lat, time.Since(t0)-committed/2)
	}
	sortDur(lat)
	t.Logf("outside COMMIT (mid-round-trip) → another instance reads the new row (polled every 100 µs): p50 %v p90 %v p99 %v max %v over %d writes",
		lat[len(lat)/2], lat[len(lat)*9/10], lat[len(lat)*99/100], lat[len(lat)-1], len(lat))
}

// latencyWrites: go test -run TestFeedLatency -changefeed.latency-writes=10000
// for the figure the README states.
var latencyWrites = flag.Int("changefeed.latency-writes", 200, "writes TestFeedLatency measures")

func sortDur(d []time.Duration) {
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && d[j] < d[j-1]; j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
}

// TestUnsupportedTable: a followed table without a primary key or replica
// identity is reported by Check and in Stats, and is kept out of the
// publication (so PostgreSQL still accepts its UPDATEs).
func TestUnsupportedTable(t *testing.T) {
	e := newEnv(t, 1)
	bare := e.prefix + "bare"
	e.exec(`CREATE TABLE "` + bare + `" (a int, b text)`)
	o := e.options(0)
	o.Tables = append(o.Tables, bare, e.prefix+"missing")
	rl, err := changefeed.New(o)
	if err != nil {
		t.Fatal(err)
	}
	err = rl.Check(context.Background())
	if !errorsIs(err, changefeed.ErrUnsupportedTable) {
		t.Fatalf("Check: %v, want ErrUnsupportedTable", err)
	}
	t.Logf("Check: %v", err)
	r := start(t, o)
	e.streaming(r)
	if got := r.Stats().Unsupported; len(got) != 2 {
		t.Fatalf("Stats.Unsupported = %q, want the bare and the missing table", got)
	}
	e.exec(`INSERT INTO "` + bare + `" VALUES (1, 'x')`)
	e.exec(`UPDATE "` + bare + `" SET b = 'y'`) // refused if it were published
	// The supported tables are still followed.
	e.exec(`INSERT INTO "` + e.docsTable() + `" (id, title, version) VALUES (1, 'a', 1)`)
	e.warm(1)
	e.exec(`UPDATE "` + e.docsTable() + `" SET title = 'b', version = 2 WHERE id = 1`)
	e.fresh(1)
}

// TestSchemaChange: a changed relation retires the table's cache.
func TestSchemaChange(t *testing.T) {
	e := newEnv(t, 2)
	d := e.docsTable()
	e.exec(`INSERT INTO "` + d + `" (id, title, version) VALUES (1, 'a', 1)`)
	r := start(t, e.options(0))
	e.streaming(r)
	e.exec(`UPDATE "` + d + `" SET title = 'b', version = 2 WHERE id = 1`)
	e.fresh(1)
	before := r.Stats().Retired
	epochs := e.in[1].c.Stats().EpochChanges
	e.exec(`ALTER TABLE "` + d + `" ADD COLUMN extra int`)
	e.exec(`UPDATE "` + d + `" SET title = 'c', version = 3 WHERE id = 1`)
	testenv.Eventually(t, feedBound, func() bool { return r.Stats().Retired > before }, "schema change did not retire the table")
	testenv.Eventually(t, feedBound, func() bool { return e.in[1].c.Stats().EpochChanges > epochs }, "the other instance did not adopt the new epoch")
	e.fresh(1)
}

// TestFeedThroughput commits single-row transactions from several
// connections as fast as they go and measures how fast the relay applies
// them (and its lag at the end of the burst). It asserts only that every
// one is applied; the figures are logged (they mean little under -race).
func TestFeedThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	e := newEnv(t, 1)
	ids := e.rows(200)
	r := start(t, e.options(0))
	e.streaming(r)
	base := r.Stats().AppliedTxns
	const writers, each = 8, 1000
	t0 := time.Now()
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			var err error
			for i := range each {
				id := ids[(w*each+i)%len(ids)]
				if err = e.base.Exec(`UPDATE "`+e.docsTable()+`" SET version = version + 1 WHERE id = ?`, id).Error; err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	var maxLag time.Duration
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	wrote := time.Since(t0)
	testenv.Eventually(t, 2*time.Minute, func() bool {
		maxLag = max(maxLag, r.Stats().Lag)
		return r.Stats().AppliedTxns >= base+writers*each
	}, "relay did not apply every transaction: %+v", r.Stats())
	took := time.Since(t0)
	n := float64(writers * each)
	t.Logf("%d single-row commits in %v (%.0f/s written); all applied after %v (%.0f/s); max lag seen at the end %v; stats %+v",
		writers*each, wrote, n/wrote.Seconds(), took, n/took.Seconds(), maxLag, r.Stats())
}

// TestDescribedTables: a relay with no repository and its own cache (as
// cmd/gormcache-relay runs) keys rows as the instances' repositories do.
func TestDescribedTables(t *testing.T) {
	e := newEnv(t, 2)
	ids := e.rows(3)
	ctx := context.Background()
	c, err := cache.New(ctx, cache.Options{Redis: testenv.Redis(t), Namespace: e.ns, L1MaxBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	bus, err := invalidation.New(ctx, c, invalidation.Options{InstanceID: "standalone"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	o := e.options(0)
	o.Cache, o.DB, o.Tables = c, nil, nil
	o.Describe = []changefeed.Table{{Name: e.docsTable(), Version: "version"}, {Name: e.usersTable(), Uniques: []string{"token"}}}
	r := start(t, o)
	e.streaming(r)
	e.warm(ids...)
	for _, in := range e.in {
		if _, err := in.users.GetBy(ctx, "token", "new-token"); err == nil {
			t.Fatal("new-token found before it exists")
		}
	}
	e.exec(`UPDATE "` + e.docsTable() + `" SET title = 'x', version = version + 1 WHERE id = 1`)
	e.exec(`UPDATE "` + e.usersTable() + `" SET name = 'x', token = 'new-token' WHERE id = 2`)
	e.exec(`DELETE FROM "` + e.docsTable() + `" WHERE id = 3`)
	e.fresh(ids...)
	for i, in := range e.in {
		testenv.Eventually(t, feedBound, func() bool {
			v, err := in.users.GetBy(ctx, "token", "new-token")
			return err == nil && v.ID == 2
		}, "instance %d does not find the new unique value", i)
	}
}
