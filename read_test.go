package gormcache

import (
	"context"
	"errors"
	"testing"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/failpoint"
)

// lookups counts the cache lookups of c (hits in either tier and misses).
func lookups(c *cache.Cache) uint64 {
	s := c.Stats()
	return s.L1Hits + s.L2Hits + s.Misses
}

func seedUsers(t *testing.T, f *fleet) {
	f.seed(t, user{ID: 1, Token: "t1", OrgID: 1, Name: "a"}, user{ID: 2, Token: "t2", OrgID: 1, Name: "b"},
		user{ID: 3, Token: "t3", OrgID: 2, Name: "c"})
	if err := f.base.Delete(&user{ID: 3}).Error; err != nil { // soft-deleted
		t.Fatal(err)
	}
}

// TestCachedReads: primary-key reads through plain GORM with the Cached
// clause are served from the cache and equal what GORM reads from the
// database, found or not, soft-deleted or not.
func TestCachedReads(t *testing.T) {
	f := newFleet(t, 1, nil)
	seedUsers(t, f)
	db, c := f.in[0].db, f.in[0].c
	one := []struct {
		name string
		read func(db *gorm.DB, u *user) error
	}{
		{"First id", func(db *gorm.DB, u *user) error { return db.First(u, 1).Error }},
		{"First int64 id", func(db *gorm.DB, u *user) error { return db.First(u, int64(2)).Error }},
		{"Take", func(db *gorm.DB, u *user) error { return db.Take(u, 1).Error }},
		{"Last", func(db *gorm.DB, u *user) error { return db.Last(u, 2).Error }},
		{"Where id = ?", func(db *gorm.DB, u *user) error { return db.Where("id = ?", 1).First(u).Error }},
		{"Where struct", func(db *gorm.DB, u *user) error { return db.Where(&user{ID: 2}).Take(u).Error }},
		{"First missing", func(db *gorm.DB, u *user) error { return db.First(u, 99).Error }},
		{"First soft-deleted", func(db *gorm.DB, u *user) error { return db.First(u, 3).Error }},
	}
	for _, r := range one {
		t.Run(r.name, func(t *testing.T) {
			var want, got, again user
			werr := r.read(f.base, &want)
			before := lookups(c)
			gerr := r.read(db.Clauses(Cached), &got)
			_ = r.read(db.Clauses(Cached), &again)
			if lookups(c) != before+2 {
				t.Fatalf("not served from the cache (%d lookups)", lookups(c)-before)
			}
			if got != want || again != want || (werr == nil) != (gerr == nil) {
				t.Fatalf("cached read %+v (%v), again %+v; GORM reads %+v (%v)", got, gerr, again, want, werr)
			}
			if werr != nil && gerr != gorm.ErrRecordNotFound { // compared as old code compares it
				t.Fatalf("not found is %v, want gorm.ErrRecordNotFound itself", gerr)
			}
		})
	}
	many := []struct {
		name string
		ids  any
	}{
		{"Find ids", []int64{1, 2}},
		{"Find with missing and soft-deleted", []int{2, 3, 99}},
		{"Find duplicates", []int64{1, 1}},
	}
	for _, r := range many {
		t.Run(r.name, func(t *testing.T) {
			var want, got []user
			var ptrs []*user
			f.base.Order("id").Find(&want, r.ids)
			before := lookups(c)
			res := db.Clauses(Cached).Find(&got, r.ids)
			if res.Error != nil || db.Clauses(Cached).Find(&ptrs, r.ids).Error != nil {
				t.Fatal(res.Error)
			}
			if lookups(c) == before {
				t.Fatal("not served from the cache")
			}
			if len(got) != len(want) || len(ptrs) != len(want) || res.RowsAffected != int64(len(want)) {
				t.Fatalf("cached Find %+v (%d rows affected); GORM finds %+v", got, res.RowsAffected, want)
			}
			for i := range want {
				if got[i] != want[i] || *ptrs[i] != want[i] {
					t.Fatalf("cached Find %+v; GORM finds %+v", got, want)
				}
			}
		})
	}
}

// TestQueryShapes: queries that are not primary-key reads are answered by
// the query cache when they read whole rows of their table alone, and by
// the database otherwise; either way they return what GORM returns.
func TestQueryShapes(t *testing.T) {
	f := newFleet(t, 1, nil)
	seedUsers(t, f)
	db, c := f.in[0].db, f.in[0].c
	queryCached := map[string]bool{"extra condition": true, "OR": true, "Order other": true, "Offset": true, "no condition": true, "string id": true}
	reads := map[string]func(db *gorm.DB, u *user) error{
		"extra condition": func(db *gorm.DB, u *user) error { return db.Where("org_id = ?", 1).First(u, 1).Error },
		"OR":              func(db *gorm.DB, u *user) error { return db.Where("id = ?", 1).Or("id = ?", 2).First(u).Error },
		"Select":          func(db *gorm.DB, u *user) error { return db.Select("id", "name").First(u, 1).Error },
		"Omit":            func(db *gorm.DB, u *user) error { return db.Omit("token").First(u, 1).Error },
		"locking": func(db *gorm.DB, u *user) error {
			return db.Clauses(clause.Locking{Strength: "UPDATE"}).First(u, 1).Error
		},
		"Unscoped":     func(db *gorm.DB, u *user) error { return db.Unscoped().First(u, 3).Error },
		"Order other":  func(db *gorm.DB, u *user) error { return db.Order("name").First(u, 1).Error },
		"Offset":       func(db *gorm.DB, u *user) error { return db.Offset(1).Limit(1).Find(u, 1).Error },
		"no condition": func(db *gorm.DB, u *user) error { return db.First(u).Error },
		"Table": func(db *gorm.DB, u *user) error {
			return db.Table(table(db, &user{})+" AS x").First(u, "x.id = ?", 1).Error
		},
		"Raw": func(db *gorm.DB, u *user) error {
			return db.Raw("SELECT * FROM " + table(db, &user{}) + " WHERE id = 1").Scan(u).Error
		},
		"string id": func(db *gorm.DB, u *user) error { return db.First(u, "1").Error },
	}
	for name, read := range reads {
		t.Run(name, func(t *testing.T) {
			var want, got, again user
			werr := read(f.base, &want)
			before := lookups(c)
			gerr := read(db.Clauses(Cached), &got)
			aerr := read(db.Clauses(Cached), &again)
			if served := lookups(c) != before; served != queryCached[name] {
				t.Fatalf("served from the cache: %v, want %v", served, queryCached[name])
			}
			if got != want || again != want || (werr == nil) != (gerr == nil) || (werr == nil) != (aerr == nil) {
				t.Fatalf("read %+v (%v), again %+v (%v); GORM reads %+v (%v)", got, gerr, again, aerr, want, werr)
			}
		})
	}
}

// TestCachedModels: a model listed in CachedModels is cached without the
// clause; Uncached opts a query out.
func TestCachedModels(t *testing.T) {
	f := newFleet(t, 1, nil)
	seedUsers(t, f)
	in := f.in[0]
	p := &Plugin{Cache: in.c, CachedModels: []any{&user{}}}
	db := f.base.Session(&gorm.Session{NewDB: true})
	db2 := reopen(t, db)
	if err := db2.Use(p); err != nil {
		t.Fatal(err)
	}
	if _, err := newUsers(db2, in.c); err != nil {
		t.Fatal(err)
	}
	var u user
	before := lookups(in.c)
	if err := db2.First(&u, 1).Error; err != nil || u.Name != "a" || lookups(in.c) != before+1 {
		t.Fatalf("listed model not cached: %+v %v (%d lookups)", u, err, lookups(in.c)-before)
	}
	if err := db2.Clauses(Uncached).First(&u, 1).Error; err != nil || lookups(in.c) != before+1 {
		t.Fatalf("Uncached went to the cache: %v", err)
	}
	if err := (&Plugin{Cache: in.c, CachedModels: []any{42}}).Initialize(f.base); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("CachedModels of a non-model: %v", err)
	}
}

// TestCachedReadsCoherent: a row read transparently on one instance is
// fresh there within B after another instance's plain GORM write, and at
// once on the writer.
func TestCachedReadsCoherent(t *testing.T) {
	f := newFleet(t, 2, nil)
	seedUsers(t, f)
	for _, in := range f.in {
		var u user
		in.db.Clauses(Cached).First(&u, 1)
	}
	if err := f.in[0].db.Model(&user{ID: 1}).Update("name", "new").Error; err != nil {
		t.Fatal(err)
	}
	var u user
	if f.in[0].db.Clauses(Cached).First(&u, 1); u.Name != "new" {
		t.Fatalf("writer reads %q", u.Name)
	}
	testenvEventually(t, func() bool {
		var u user
		f.in[1].db.Clauses(Cached).First(&u, 1)
		return u.Name == "new"
	}, "the other instance still reads the old row")
}

// TestNoFillFromWrittenTx: a transaction that updated a row and reads it
// back with the Cached clause must see its own write: reads in a
// transaction go to the transaction, never to the shared tiers (which hold
// the committed row, and must not be filled from uncommitted ones).
// Switched off, the read returns the cached committed row.
func TestNoFillFromWrittenTx(t *testing.T) {
	run := func(t *testing.T) (wrong bool) {
		f := newFleet(t, 1, nil)
		seedUsers(t, f)
		db := f.in[0].db
		var u user
		db.Clauses(Cached).First(&u, 1) // cached: "a"
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Model(&user{ID: 1}).Update("name", "in tx").Error; err != nil {
				return err
			}
			var got user
			if err := tx.Clauses(Cached).First(&got, 1).Error; err != nil {
				return err
			}
			wrong = got.Name != "in tx"
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
		var after user
		db.Clauses(Cached).First(&after, 1)
		if after.Name != "a" {
			t.Fatalf("after the rollback: %q", after.Name)
		}
		return wrong
	}
	t.Run("guarded", func(t *testing.T) {
		if run(t) {
			t.Fatal("the transaction did not read its own write")
		}
	})
	t.Run("guard off", func(t *testing.T) {
		defer failpoint.Disable(failpoint.GuardNoTxFill)()
		if !run(t) {
			t.Fatal("the transaction read its own write with the guard off: the test does not exercise it")
		}
	})
}

func testenvEventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), B)
	defer cancel()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatal(msg)
		}
	}
}
