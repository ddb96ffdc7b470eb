package invalidation_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/invalidation"
)

// Product is a row of the source of truth, with its version column.
type Product struct {
	ID      int64
	Name    string
	Version uint64
}

// db stands for the database both instances read.
type db struct {
	mu  sync.Mutex // protects row
	row Product
}

func (d *db) load(_ context.Context, _ string) (Product, uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.row, d.row.Version, nil
}

func (d *db) update(name string) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.row.Name, d.row.Version = name, d.row.Version+1
	return d.row.Version
}

// instance is one running copy of the application: its own Redis client,
// cache and bus, on the namespace every copy shares.
type instance struct {
	rdb *redis.Client
	c   *cache.Cache
	bus *invalidation.Bus
}

func start(ctx context.Context, addr, ns string, opts invalidation.Options) (*instance, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	c, err := cache.New(ctx, cache.Options{Redis: rdb, Namespace: ns})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	bus, err := invalidation.New(ctx, c, opts) // attaches itself to c
	if err != nil {
		c.Close()
		rdb.Close()
		return nil, err
	}
	in := &instance{rdb: rdb, c: c, bus: bus}
	if err := bus.WaitHealthy(ctx); err != nil { // L1 is served once the bus is healthy
		in.close()
		return nil, err
	}
	return in, nil
}

func (in *instance) close() {
	in.bus.Close()
	in.c.Close()
	in.rdb.Close()
}

// An invalidation made on one instance evicts the key on every other
// instance of the namespace. The example runs against the Redis of
// `make test` (GORMCACHE_REDIS_ADDR; TestMain skips it when that is unset).
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := os.Getenv("GORMCACHE_REDIS_ADDR") // a program passes its own
	ns := uniqueNamespace()                   // one per application; unique here so that runs never meet
	defer cleanup(addr, ns)

	src := &db{row: Product{ID: 1, Name: "lamp", Version: 1}}
	applied := make(chan invalidation.Event, 1)
	a, err := start(ctx, addr, ns, invalidation.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.close()
	b, err := start(ctx, addr, ns, invalidation.Options{OnApply: func(e invalidation.Event, _ time.Duration) {
		if e.Kind == invalidation.KindInvalidate {
			applied <- e
		}
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.close()

	pa, _ := cache.Get(ctx, a.c, "product:1", src.load)
	pb, _ := cache.Get(ctx, b.c, "product:1", src.load) // both tiers of b now hold version 1
	fmt.Println("a:", pa.Name, pa.Version, "b:", pb.Name, pb.Version)

	v := src.update("desk lamp") // UPDATE ... COMMIT, on instance a
	if err := a.c.Invalidate(ctx, "product:1", v); err != nil {
		fmt.Println(err) // wraps cache.ErrInvalidationUnconfirmed: tell the caller
		return
	}
	select {
	case e := <-applied:
		fmt.Println("b evicted", e.Keys[0].Key, "up to version", e.Keys[0].Version)
	case <-ctx.Done():
		fmt.Println("b never heard of the write")
		return
	}
	pb, _ = cache.Get(ctx, b.c, "product:1", src.load)
	fmt.Println("b:", pb.Name, pb.Version)
	// Output:
	// a: lamp 1 b: lamp 1
	// b evicted product:1 up to version 2
	// b: desk lamp 2
}

func uniqueNamespace() string {
	var b [4]byte
	rand.Read(b[:])
	return "example_" + hex.EncodeToString(b[:])
}

// cleanup deletes the keys the example left under ns.
func cleanup(addr, ns string) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, ns+":*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
}
