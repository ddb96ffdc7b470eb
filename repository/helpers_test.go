package repository

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/testenv"
)

// account is a versioned model with a unique column and soft delete.
type account struct {
	ID        int64  `gorm:"primaryKey"`
	Email     string `gorm:"uniqueIndex"`
	Name      string
	Balance   int64
	CreatedAt time.Time
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt `gorm:"index"`
	Version
}

// note is an unversioned model, like most existing schemas.
type note struct {
	ID   int64 `gorm:"primaryKey"`
	Body string
}

type env struct {
	db      *gorm.DB
	c       *cache.Cache
	queries *atomic.Int64 // SELECTs run on db
}

// newEnv migrates the test models into tables unique to t and returns a
// cache on the shared Redis with a unique namespace.
func newEnv(t testing.TB, mod func(*cache.Options)) env {
	t.Helper()
	db := testenv.PostgresPrefixed(t)
	if err := db.AutoMigrate(&account{}, &note{}); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	db.Callback().Query().After("gorm:query").Register("test:count", func(*gorm.DB) { n.Add(1) })
	db.Callback().Row().After("gorm:row").Register("test:count", func(*gorm.DB) { n.Add(1) })
	rdb := testenv.Redis(t)
	o := cache.Options{Redis: rdb, Namespace: testenv.Namespace(t, rdb)}
	if mod != nil {
		mod(&o)
	}
	c, err := cache.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return env{db: db, c: c, queries: &n}
}

func accounts(t testing.TB, e env) *Repository[account, int64] {
	t.Helper()
	r, err := New[account, int64](e.db, e.c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func notes(t testing.TB, e env) *Repository[note, int64] {
	t.Helper()
	r, err := New[note, int64](e.db, e.c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustCreate[T any, ID comparable](t testing.TB, r *Repository[T, ID], v *T) {
	t.Helper()
	if err := r.Create(context.Background(), v); err != nil {
		t.Fatal(err)
	}
}
