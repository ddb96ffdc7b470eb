// Command quickstart shows the repository on one page: a miss, a hit, an
// update that meets an optimistic-locking conflict, a lookup by a unique
// column, and the cache's counters.
//
//	go run ./example/quickstart                      # embedded Redis and SQLite
//	go run ./example/quickstart -redis 127.0.0.1:6379 \
//	    -dsn 'host=127.0.0.1 user=postgres dbname=test sslmode=disable'
//
// GORMCACHE_REDIS_ADDR and GORMCACHE_PG_DSN are read when the flags are not
// given.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/example/internal/demoenv"
	"github.com/gormcache/gormcache/repository"
)

// Product is an ordinary GORM model with one addition: repository.Version.
type Product struct {
	ID         uint   `gorm:"primaryKey"`
	SKU        string `gorm:"uniqueIndex;size:64"`
	Name       string
	PriceCents int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
	repository.Version
}

// TableName keeps the demo's table apart from anything of yours.
func (Product) TableName() string { return "gormcache_quickstart_products" }

func main() {
	redisAddr, dsn := demoenv.Flags()
	flag.Parse()
	if err := run(*redisAddr, *dsn); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(redisAddr, dsn string) error {
	ctx := context.Background()
	env, err := demoenv.Open(redisAddr, dsn)
	if err != nil {
		return err
	}
	defer env.Close()
	fmt.Println("using", env.Describe())

	db := env.DB
	if err := db.Migrator().DropTable(&Product{}); err != nil {
		return err
	}
	if err := db.AutoMigrate(&Product{}); err != nil {
		return err
	}
	defer db.Migrator().DropTable(&Product{})

	var tag [4]byte
	rand.Read(tag[:])
	// SingleInstance: this process is the only one on its (random)
	// namespace. Several processes sharing one would each attach an
	// invalidation bus instead (see example/multiinstance); without either,
	// L1 entries live only cache.DefaultStalenessBound.
	c, err := cache.New(ctx, cache.Options{Redis: env.Redis, Namespace: "quickstart-" + hex.EncodeToString(tag[:]), SingleInstance: true})
	if err != nil {
		return err
	}
	defer c.Close()
	products, err := repository.New[Product, uint](db, c, repository.Options{})
	if err != nil {
		return err
	}

	p := &Product{SKU: "GC-001", Name: "Cache warmer", PriceCents: 1999}
	if err := products.Create(ctx, p); err != nil {
		return err
	}
	fmt.Printf("created   product %d at version %d\n", p.ID, p.Version)

	read := func(label string) (*Product, error) {
		before := c.Stats()
		start := time.Now()
		got, err := products.Get(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		fmt.Printf("%-9s %-28s version %d, %q, %8v  served by %s\n", label, fmt.Sprintf("product %d", got.ID), got.Version, got.Name, time.Since(start).Round(time.Microsecond), tier(before, c.Stats()))
		return got, nil
	}
	if _, err := read("get"); err != nil {
		return err
	}
	if _, err := read("get"); err != nil {
		return err
	}

	// Two clients hold version 1; the first to write wins.
	alice, _ := products.Get(ctx, p.ID)
	bob, _ := products.Get(ctx, p.ID)
	alice.PriceCents = 1799
	if err := products.Update(ctx, alice); err != nil {
		return err
	}
	fmt.Printf("update    alice: price 1799, now version %d\n", alice.Version)
	bob.Name = "Cache warmer Pro"
	err = products.Update(ctx, bob)
	fmt.Printf("update    bob (read version 1): %v; errors.Is(err, repository.ErrConflict) = %v\n", err, errors.Is(err, repository.ErrConflict))
	if !errors.Is(err, repository.ErrConflict) {
		return fmt.Errorf("expected a conflict, got %v", err)
	}
	bob, _ = products.Get(ctx, p.ID) // re-read and retry
	bob.Name = "Cache warmer Pro"
	if err := products.Update(ctx, bob); err != nil {
		return err
	}
	fmt.Printf("update    bob after re-reading: version %d\n", bob.Version)
	if _, err := read("get"); err != nil {
		return err
	}
	if _, err := read("get"); err != nil {
		return err
	}

	bySKU, err := products.GetBy(ctx, "sku", "GC-001")
	if err != nil {
		return err
	}
	fmt.Printf("get by    sku GC-001 -> product %d, version %d\n", bySKU.ID, bySKU.Version)
	if _, err := products.Get(ctx, 424242); errors.Is(err, repository.ErrNotFound) {
		fmt.Printf("get       product 424242: %v (cached as not found)\n", err)
	}

	s := c.Stats()
	fmt.Printf("\nstats: L1 hits %d, L2 hits %d, misses %d, loads %d, invalidations %d, stale fills rejected %d\n",
		s.L1Hits, s.L2Hits, s.Misses, s.Loads, s.Invalidations, s.RejectedFills)
	return nil
}

// tier names where a read was served, from the counters around it.
func tier(before, after cache.Stats) string {
	switch {
	case after.L1Hits > before.L1Hits:
		return "L1 (in-process)"
	case after.L2Hits > before.L2Hits:
		return "L2 (Redis)"
	default:
		return "the database"
	}
}
