package repository

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
)

func TestCRUD(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	r := accounts(t, e)
	ctx := context.Background()
	a := &account{ID: 1, Email: "ada@example.com", Name: "Ada"}
	mustCreate(t, r, a)
	if a.Version != 1 {
		t.Fatalf("created at version %d", a.Version)
	}
	q := e.queries.Load()
	for i := 0; i < 3; i++ {
		got, err := r.Get(ctx, 1)
		if err != nil || got.Name != "Ada" || got.Version != 1 {
			t.Fatalf("Get: %v %+v", err, got)
		}
	}
	if n := e.queries.Load() - q; n != 1 {
		t.Fatalf("%d queries for 3 reads, want 1", n)
	}
	a.Name = "Ada L."
	if err := r.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	if a.Version != 2 {
		t.Fatalf("after Update: version %d", a.Version)
	}
	if got, _ := r.Get(ctx, 1); got.Name != "Ada L." || got.Version != 2 {
		t.Fatalf("read-your-writes after Update: %+v", got)
	}
	if err := r.Updates(ctx, a, map[string]any{"Balance": 100}); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Get(ctx, 1); got.Balance != 100 || got.Version != 3 || a.Version != 3 {
		t.Fatalf("after Updates: %+v (model version %d)", got, a.Version)
	}
	if err := r.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	_, err := r.Get(ctx, 1)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, gorm.ErrRecordNotFound) {
		t.Fatalf("after Delete: %v", err)
	}
	var raw account // soft-deleted: still in the table
	if err := e.db.Unscoped().Take(&raw, 1).Error; err != nil || !raw.DeletedAt.Valid {
		t.Fatalf("not soft-deleted: %v %+v", err, raw)
	}
}

func TestOptimisticConflict(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	r := accounts(t, e)
	ctx := context.Background()
	mustCreate(t, r, &account{ID: 1, Email: "a@x", Name: "a"})
	x, _ := r.Get(ctx, 1)
	y, _ := r.Get(ctx, 1)
	x.Name = "x"
	if err := r.Update(ctx, x); err != nil {
		t.Fatal(err)
	}
	before := e.c.Stats().Invalidations
	y.Name = "y"
	if err := r.Update(ctx, y); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	if y.Version != 1 {
		t.Fatalf("conflicting update changed the model's version to %d", y.Version)
	}
	if err := r.Updates(ctx, y, map[string]any{"name": "y"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale Updates: %v", err)
	}
	if err := r.Delete(ctx, y); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale Delete: %v", err)
	}
	if e.c.Stats().Invalidations != before {
		t.Fatal("a conflicting write invalidated")
	}
	if got, _ := r.Get(ctx, 1); got.Name != "x" {
		t.Fatalf("got %+v", got)
	}
}

func TestGetMany(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	r := accounts(t, e)
	ctx := context.Background()
	for i := int64(1); i <= 5; i++ {
		mustCreate(t, r, &account{ID: i, Email: fmt.Sprintf("u%d@x", i)})
	}
	r.Get(ctx, 2) // one cached already
	q := e.queries.Load()
	got, err := r.GetMany(ctx, []int64{5, 9, 2, 1, 7})
	var miss *MissingError[int64]
	if !errors.As(err, &miss) || !errors.Is(err, ErrNotFound) || fmt.Sprint(miss.IDs) != "[9 7]" {
		t.Fatalf("err = %v", err)
	}
	for i, want := range []int64{5, 0, 2, 1, 0} {
		if (want == 0) != (got[i] == nil) || (got[i] != nil && got[i].ID != want) {
			t.Fatalf("result %d = %+v, want id %d", i, got[i], want)
		}
	}
	if n := e.queries.Load() - q; n != 1 {
		t.Fatalf("%d queries, want one WHERE id IN (...)", n)
	}
	q = e.queries.Load()
	if _, err := r.GetMany(ctx, []int64{1, 2, 5}); err != nil || e.queries.Load() != q {
		t.Fatalf("second batch: %v, %d queries", err, e.queries.Load()-q)
	}
}

func TestGetByUniqueColumn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	r := accounts(t, e)
	ctx := context.Background()
	if _, err := r.GetBy(ctx, "email", "new@x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent email: %v", err) // "not found" is cached now
	}
	a := &account{ID: 1, Email: "new@x", Name: "a"}
	mustCreate(t, r, a)
	got, err := r.GetBy(ctx, "email", "new@x")
	if err != nil || got.ID != 1 {
		t.Fatalf("after create: %v %+v", err, got)
	}
	q := e.queries.Load()
	r.GetBy(ctx, "Email", "new@x") // field name works too; all cached
	if e.queries.Load() != q {
		t.Fatal("cached lookup queried the database")
	}
	// The secondary value itself changes.
	a.Email = "renamed@x"
	if err := r.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetBy(ctx, "email", "new@x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old email still resolves: %v", err)
	}
	if got, err := r.GetBy(ctx, "email", "renamed@x"); err != nil || got.ID != 1 {
		t.Fatalf("new email: %v %+v", err, got)
	}
	// Another row takes the old value.
	mustCreate(t, r, &account{ID: 2, Email: "new@x"})
	if got, err := r.GetBy(ctx, "email", "new@x"); err != nil || got.ID != 2 {
		t.Fatalf("reused email: %v %+v", err, got)
	}
	if _, err := r.GetBy(ctx, "name", "a"); !errors.Is(err, ErrNotUnique) {
		t.Fatalf("non-unique column: %v", err)
	}
	if _, err := r.GetBy(ctx, "nope", "a"); !errors.Is(err, ErrUnknownColumn) {
		t.Fatalf("unknown column: %v", err)
	}
}

func TestUnversionedModel(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	r := notes(t, e)
	ctx := context.Background()
	if r.Versioned() {
		t.Fatal("note is not versioned")
	}
	n := &note{ID: 1, Body: "one"}
	mustCreate(t, r, n)
	r.Get(ctx, 1)
	n.Body = "two"
	if err := r.Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Get(ctx, 1); got.Body != "two" {
		t.Fatalf("after update: %+v", got)
	}
	if err := r.Updates(ctx, n, map[string]any{"body": "three"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Get(ctx, 1); got.Body != "three" {
		t.Fatalf("after updates: %+v", got)
	}
	if err := r.Delete(ctx, n); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(ctx, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := r.Update(ctx, &note{ID: 99, Body: "x"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing unversioned row: %v", err)
	}
}

// TestVersionReuse: a deleted then re-inserted row restarts at version 1
// and must never be shadowed by what was cached for its predecessor.
func TestVersionReuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	r := accounts(t, e)
	ctx := context.Background()
	a := &account{ID: 7, Email: "old@x", Name: "old"}
	mustCreate(t, r, a)
	for i := 0; i < 3; i++ {
		a.Balance++
		if err := r.Update(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	r.Get(ctx, 7)
	if err := e.db.Unscoped().Delete(&account{}, 7).Error; err != nil { // hard delete, so the id can return
		t.Fatal(err)
	}
	if err := r.Invalidate(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(ctx, 7); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	b := &account{ID: 7, Email: "new@x", Name: "new"}
	mustCreate(t, r, b)
	for i := 0; i < 3; i++ {
		if got, err := r.Get(ctx, 7); err != nil || got.Name != "new" || got.Version != 1 {
			t.Fatalf("re-inserted row: %v %+v", err, got)
		}
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	r := accounts(t, e)
	ctx := context.Background()
	type composite struct {
		A int64 `gorm:"primaryKey"`
		B int64 `gorm:"primaryKey"`
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"zero id", func() error { _, err := r.Get(ctx, 0); return err }(), ErrInvalidID},
		{"zero id many", func() error { _, err := r.GetMany(ctx, []int64{1, 0}); return err }(), ErrInvalidID},
		{"nil create", r.Create(ctx, nil), ErrNilModel},
		{"nil update", r.Update(ctx, nil), ErrNilModel},
		{"nil delete", r.Delete(ctx, nil), ErrNilModel},
		{"zero-id update", r.Update(ctx, &account{}), ErrInvalidID},
		{"unknown column", r.Updates(ctx, &account{ID: 1}, map[string]any{"nope": 1}), ErrUnknownColumn},
		{"version column", r.Updates(ctx, &account{ID: 1}, map[string]any{"version": 9}), ErrInvalidArgument},
		{"no fields", r.Updates(ctx, &account{ID: 1}, nil), ErrInvalidArgument},
		{"nil value", func() error { _, err := r.GetBy(ctx, "email", nil); return err }(), ErrInvalidArgument},
		{"nil db", func() error { _, err := New[account, int64](nil, e.c, Options{}); return err }(), ErrInvalidArgument},
		{"nil cache", func() error { _, err := New[account, int64](e.db, nil, Options{}); return err }(), ErrInvalidArgument},
		{"id type", func() error { _, err := New[account, string](e.db, e.c, Options{}); return err }(), ErrUnsupportedModel},
		{"composite key", func() error { _, err := New[composite, int64](e.db, e.c, Options{}); return err }(), ErrUnsupportedModel},
		{"not a struct", func() error { _, err := New[int, int64](e.db, e.c, Options{}); return err }(), ErrUnsupportedModel},
		{"unknown unique", func() error {
			_, err := New[account, int64](e.db, e.c, Options{UniqueColumns: []string{"nope"}})
			return err
		}(), ErrUnknownColumn},
		{"brace namespace", func() error { _, err := New[account, int64](e.db, e.c, Options{Namespace: "a{"}); return err }(), ErrInvalidArgument},
		{"tx-bound db", func() error {
			var err error
			e.db.Transaction(func(tx *gorm.DB) error {
				_, err = New[account, int64](tx, e.c, Options{})
				return nil
			})
			return err
		}(), ErrTxBound},
		{"nil transaction fn", Transaction(ctx, e.db, nil), ErrInvalidArgument},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}

// TestConcurrentReadersAndWriters shares one *gorm.DB between goroutines
// that read and update the same rows with optimistic locking.
func TestConcurrentReadersAndWriters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	r := accounts(t, e)
	ctx := context.Background()
	for i := int64(1); i <= 4; i++ {
		mustCreate(t, r, &account{ID: i, Email: fmt.Sprintf("c%d@x", i)})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	committed := map[int64]int64{} // id → successful increments
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				id := int64(i%4 + 1)
				a, err := r.Get(ctx, id)
				if err != nil {
					t.Error(err)
					return
				}
				a.Balance++
				switch err := r.Update(ctx, a); {
				case err == nil:
					mu.Lock()
					committed[id]++
					mu.Unlock()
				case !errors.Is(err, ErrConflict):
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for id, n := range committed {
		got, err := r.Get(ctx, id)
		if err != nil || got.Balance != n || uint64(got.Version) != uint64(n)+1 {
			t.Fatalf("row %d: %v %+v, want balance %d (no lost or stale writes)", id, err, got, n)
		}
	}
}

var _ = cache.ErrNotFound
