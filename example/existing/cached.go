package main

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	gormcache "github.com/gormcache/gormcache"
	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

// ---- This file is the whole change that made the service cached. ----
//
// Nothing in store.go changed: every write it makes (Create, Save, Updates,
// Where().Update, Delete, a transaction with a savepoint) now invalidates the
// rows it changed once it commits, on every instance, and its primary-key
// reads (First(&u, id)) of the listed models are served from the cache.
//
// What stays the same: reads inside a transaction, and every query that is
// not by primary key alone (Tokens' per-user list, a lookup by another
// column), run on the database. What to know: a read that feeds a write
// outside a transaction (RevokeToken's First, then Save of every column) is
// now a cached read — current for this instance's own writes at once, and
// for other instances' within the bus's bound.

// enableCache installs gormcache on db. Call it once per process, after
// gorm.Open; stop closes the cache and the bus at shutdown.
func enableCache(ctx context.Context, db *gorm.DB, rdb redis.UniversalClient, namespace string) (stop func(), err error) {
	// The two tiers: in-process (L1) and Redis (L2). Instances that share
	// a namespace share the Redis tier and hear each other's invalidations.
	c, err := cache.New(ctx, cache.Options{Redis: rdb, Namespace: namespace})
	if err != nil {
		return nil, err
	}
	// Cross-instance coherence: invalidations over Redis pub/sub. L1 is
	// served only while the bus proves it hears the other instances.
	bus, err := invalidation.New(ctx, c, invalidation.Options{})
	if err != nil {
		c.Close()
		return nil, err
	}
	stop = func() { bus.Close(); c.Close() }
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := bus.WaitHealthy(wctx); err != nil {
		stop()
		return nil, err
	}

	// The plugin: write capture for every statement on db, and cached
	// primary-key reads of these models.
	plugin := &gormcache.Plugin{
		Cache:        c,
		CachedModels: []any{&User{}, &Token{}},
		OnError:      func(_ context.Context, err error) { log.Print(err) },
	}
	if err := db.Use(plugin); err != nil {
		stop()
		return nil, err
	}
	// A repository per cached model registers its table on db; the plugin
	// reads through it. The service never calls them.
	_, uerr := repository.New[User, int64](db, c, repository.Options{})
	_, terr := repository.New[Token, int64](db, c, repository.Options{})
	if err := errors.Join(uerr, terr); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}
