package changefeed_test

import (
	"context"
	"log"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/changefeed"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

// A relay inside an application instance: the repositories registered on db
// say how rows are keyed; every instance may run one, one streams.
func Example() {
	ctx := context.Background()
	dsn := "host=127.0.0.1 user=postgres dbname=app sslmode=disable"
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	c, err := cache.New(ctx, cache.Options{Redis: rdb})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	bus, err := invalidation.New(ctx, c, invalidation.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()
	type Doc struct {
		ID    int64
		Title string
		repository.Version
	}
	docs, err := repository.New[Doc, int64](db, c, repository.Options{})
	if err != nil {
		log.Fatal(err)
	}

	relay, err := changefeed.New(changefeed.Options{
		ConnString: dsn, // a role with REPLICATION; wal_level = logical
		Cache:      c,
		DB:         db,
		Tables:     []string{docs.Table()},
		Redis:      rdb,
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := relay.Check(ctx); err != nil {
		log.Print(err) // tables the feed cannot key
	}
	go relay.Run(ctx)
	defer relay.Close()

	// An UPDATE by any program now evicts the row on every instance.
	_ = docs
}
