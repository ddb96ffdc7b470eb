package cache_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/gormcache/gormcache/cache"
)

type Product struct {
	ID      int64
	Name    string
	Version uint64
}

// Get reads through the cache: the loader runs on a miss only, and returns
// the row's version so that the cache can order fills against writes.
func ExampleGet() {
	ctx := context.Background()
	c, _ := cache.New(ctx, cache.Options{}) // no Redis: process-local; pass Options.Redis for L2
	defer c.Close()

	db := map[string]Product{"product:1": {ID: 1, Name: "lamp", Version: 3}}
	load := func(ctx context.Context, key string) (Product, uint64, error) {
		fmt.Println("loading", key)
		p, ok := db[key]
		if !ok {
			return p, 0, cache.ErrNotFound // cached for NotFoundTTL
		}
		return p, p.Version, nil
	}
	p, _ := cache.Get(ctx, c, "product:1", load)
	p, _ = cache.Get(ctx, c, "product:1", load) // served from L1
	fmt.Println(p.Name, p.Version)
	_, err := cache.Get(ctx, c, "product:2", load)
	fmt.Println(errors.Is(err, cache.ErrNotFound))
	// Output:
	// loading product:1
	// lamp 3
	// loading product:2
	// true
}

// Invalidate, called after a write commits, retires the old version: no
// reader that loaded it before the write can put it back.
func ExampleCache_Invalidate() {
	ctx := context.Background()
	c, _ := cache.New(ctx, cache.Options{})
	defer c.Close()

	row := Product{ID: 1, Name: "lamp", Version: 1}
	load := func(ctx context.Context, key string) (Product, uint64, error) { return row, row.Version, nil }
	p, _ := cache.Get(ctx, c, "product:1", load)
	fmt.Println(p.Name, p.Version)

	row = Product{ID: 1, Name: "desk lamp", Version: 2} // UPDATE ... COMMIT
	c.Invalidate(ctx, "product:1", 2)

	p, _ = cache.Get(ctx, c, "product:1", load)
	fmt.Println(p.Name, p.Version)
	// Output:
	// lamp 1
	// desk lamp 2
}

// GetMany reads a batch: one L1 pass, one Redis round trip, one loader call
// for the rest.
func ExampleGetMany() {
	ctx := context.Background()
	c, _ := cache.New(ctx, cache.Options{})
	defer c.Close()
	load := func(ctx context.Context, keys []string) (map[string]cache.Versioned[string], error) {
		fmt.Println("loading", len(keys), "keys")
		out := map[string]cache.Versioned[string]{}
		for _, k := range keys {
			if k != "missing" {
				out[k] = cache.Versioned[string]{Value: "value of " + k, Version: 1}
			}
		}
		return out, nil
	}
	got, _ := cache.GetMany(ctx, c, []string{"a", "b", "missing"}, load)
	got, _ = cache.GetMany(ctx, c, []string{"a", "b", "missing"}, load) // all cached, "missing" too
	fmt.Println(len(got), got["a"])
	// Output:
	// loading 3 keys
	// 2 value of a
}
