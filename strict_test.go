package gormcache

import (
	"context"
	"strconv"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/internal/failpoint"
)

// TestStrictWrite: a write of a strict model returns only once the other
// instance has evicted the row, though it applies events late (a failpoint
// holds its receive loop 60 ms, within HealthWindow: it acknowledges).
// Switched off, the write returns while the other instance still holds the
// old row in L1.
func TestStrictWrite(t *testing.T) {
	run := func(t *testing.T) (stale bool) {
		f, db := strictFleet(t, 60*time.Millisecond)
		start := time.Now()
		if err := db.Model(&user{ID: 1}).Update("name", "new").Error; err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		l1, _, err := f.in[1].c.Peek(context.Background(), table(f.base, &user{})+":1")
		if err != nil {
			t.Fatal(err)
		}
		st := f.in[0].bus.Stats()
		t.Logf("the write took %v (strict waits acknowledged %d, timed out %d); the other instance's L1 holds the row: %v",
			took.Round(time.Millisecond), st.StrictAcked, st.StrictTimeouts, l1.Present)
		return l1.Present
	}
	t.Run("guarded", func(t *testing.T) {
		if run(t) {
			t.Fatal("the strict write returned while another instance still held the row in L1")
		}
	})
	t.Run("guard off", func(t *testing.T) {
		defer failpoint.Disable(failpoint.GuardStrict)()
		if !run(t) {
			t.Fatal("the other instance had evicted the row anyway: the test does not exercise the guard")
		}
	})
}

// TestStrictWriteSilentInstance: an instance that does not acknowledge (its
// receive loop is held 400 ms, beyond HealthWindow) is waited for until
// HealthWindow has passed; by then it no longer serves the row from L1, so
// a read there right after the write returns gets the new row.
func TestStrictWriteSilentInstance(t *testing.T) {
	f, db := strictFleet(t, 400*time.Millisecond)
	if err := db.Model(&user{ID: 1}).Update("name", "new").Error; err != nil {
		t.Fatal(err)
	}
	u, err := f.in[1].users.Get(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "new" {
		t.Fatalf("the silent instance serves %q after the strict write returned", u.Name)
	}
	if st := f.in[0].bus.Stats(); st.StrictTimeouts != 1 {
		t.Fatalf("strict waits: %+v", st)
	}
}

// strictFleet returns two instances with user 1 cached on both, a handle on
// instance 0 whose plugin makes user writes strict, and a failpoint that
// holds instance 1's receive loop for hold before each event.
func strictFleet(t testing.TB, hold time.Duration) (*fleet, *gorm.DB) {
	t.Helper()
	f := newFleet(t, 2, nil)
	f.seed(t, user{ID: 1, Token: "t1", Name: "old"})
	f.warm(t, 1)
	db := reopen(t, f.in[0].db)
	if err := db.Use(&Plugin{Cache: f.in[0].c, Bus: f.in[0].bus, StrictModels: []any{&user{}}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // both instances' presence entries are written
	t.Cleanup(failpoint.Set(failpoint.BeforeApply, f.in[1].bus.InstanceID(), func(context.Context, string) {
		time.Sleep(hold)
	}))
	return f, db
}

// BenchmarkStrictUpdate: what a strict write adds to a plain-GORM update
// on two instances (the other acknowledges over Redis).
func BenchmarkStrictUpdate(b *testing.B) {
	for _, strict := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "strict"}[strict]
		b.Run(name, func(b *testing.B) {
			f := newFleet(b, 2, nil)
			f.seed(b, user{ID: 1, Token: "t1", Name: "old"})
			db := reopen(b, f.in[0].db)
			p := &Plugin{Cache: f.in[0].c, Bus: f.in[0].bus}
			if strict {
				p.StrictModels = []any{&user{}}
			}
			if err := db.Use(p); err != nil {
				b.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if err := db.Model(&user{ID: 1}).Update("name", strconv.Itoa(i)).Error; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
