package gormcache_test

import (
	"context"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/gormcache/gormcache"
	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

type User struct {
	ID    uint
	OrgID uint
	Token string `gorm:"uniqueIndex"`
	Name  string
}

// Install the plugin on an existing *gorm.DB: its writes invalidate after
// COMMIT, and the models listed are read through the cache.
func ExamplePlugin() {
	ctx := context.Background()
	db, err := gorm.Open(postgres.Open("host=127.0.0.1 user=postgres dbname=test sslmode=disable"), &gorm.Config{})
	if err != nil {
		return
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	c, err := cache.New(ctx, cache.Options{Redis: rdb, Namespace: "app"})
	if err != nil {
		return
	}
	defer c.Close()
	bus, err := invalidation.New(ctx, c, invalidation.Options{}) // coherence across instances
	if err != nil {
		return
	}
	defer bus.Close()
	if err := db.Use(&gormcache.Plugin{Cache: c, CachedModels: []any{&User{}}}); err != nil {
		return
	}
	if _, err := repository.New[User, uint](db, c, repository.Options{}); err != nil {
		return
	}

	var u User
	db.First(&u, 42)                   // L1 → Redis → one SELECT
	db.Model(&u).Update("name", "Ada") // invalidated after COMMIT, on every instance
	var org []User
	db.Clauses(gormcache.Cached).Where("org_id = ?", 7).Order("name").Find(&org) // the query cache
}

// A strict model's writes return only once every live instance has evicted
// the rows: for credentials, where a revoked token must fail everywhere the
// moment the revoking call returns.
func ExamplePlugin_strict() {
	var (
		db  *gorm.DB
		c   *cache.Cache
		bus *invalidation.Bus
	)
	type Credential struct {
		ID     uint
		Secret string
	}
	_ = db.Use(&gormcache.Plugin{Cache: c, Bus: bus, StrictModels: []any{&Credential{}}})
}
