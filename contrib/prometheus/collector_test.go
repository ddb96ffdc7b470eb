package prometheus_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache"
	"github.com/gormcache/gormcache/cache"
	gcprom "github.com/gormcache/gormcache/contrib/prometheus"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

// item is the test model.
type item struct {
	ID   int64 `gorm:"primaryKey"`
	Name string
	repository.Version
}

func name() string {
	var b [4]byte
	rand.Read(b[:])
	return "t_prom_" + hex.EncodeToString(b[:])
}

// fleet is one instance: a cache, its bus and a repository of items, on the
// test Redis and PostgreSQL (GORMCACHE_REDIS_ADDR, GORMCACHE_PG_DSN).
type fleet struct {
	c     *cache.Cache
	bus   *invalidation.Bus
	items *repository.Repository[item, int64]
	col   *gcprom.Collector
}

func newFleet(t *testing.T) fleet {
	addr, dsn := os.Getenv("GORMCACHE_REDIS_ADDR"), os.Getenv("GORMCACHE_PG_DSN")
	if addr == "" || dsn == "" {
		t.Skip("GORMCACHE_REDIS_ADDR and GORMCACHE_PG_DSN not set: run with the test Redis and PostgreSQL")
	}
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	prefix := name()
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard, NamingStrategy: schema.NamingStrategy{TablePrefix: prefix + "_"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.AutoMigrate(&item{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Migrator().DropTable(&item{})
		if s, err := db.DB(); err == nil {
			s.Close()
		}
	})
	c, err := cache.New(ctx, cache.Options{Redis: rdb, Namespace: prefix, L1MaxBytes: 1 << 20, L1Shards: 16, L1MaxEntryBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	bus, err := invalidation.New(ctx, c, invalidation.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := bus.WaitHealthy(wctx); err != nil {
		t.Fatal(err)
	}
	col := gcprom.NewCollector()
	items, err := repository.New[item, int64](db, c, repository.Options{Observe: col.Observe("test")})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{col.AddCache("test", c), col.AddBus("test", bus), col.AddPlugin("test", &gormcache.Plugin{Cache: c})} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := col.AddFeed("test", "orders", func() gcprom.FeedStats {
		return gcprom.FeedStats{Lag: 250 * time.Millisecond, RetainedWALBytes: 4096, Leader: true}
	}); err != nil {
		t.Fatal(err)
	}
	return fleet{c: c, bus: bus, items: items, col: col}
}

func TestCollector(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	it := &item{Name: "a"}
	if err := f.items.Create(ctx, it); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := f.items.Get(ctx, it.ID); err != nil {
			t.Fatal(err)
		}
		f.c.Settle()
	}
	if _, err := f.items.Get(ctx, it.ID+1000); err == nil {
		t.Fatal("found a row that does not exist")
	}
	it.Name = "b"
	if err := f.items.Update(ctx, it); err != nil {
		t.Fatal(err)
	}
	if _, err := f.items.GetMany(ctx, []int64{it.ID}); err != nil {
		t.Fatal(err)
	}
	if err := f.col.AddCache("test", f.c); err == nil {
		t.Error("the same cache added twice under one instance name")
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(f.col)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	ns := f.c.Namespace()
	want := `
# HELP gormcache_cache_hits_total Reads served from a cache tier (l1: in-process, l2: Redis).
# TYPE gormcache_cache_hits_total counter
gormcache_cache_hits_total{instance="test",namespace="NS",tier="l1"} 4
gormcache_cache_hits_total{instance="test",namespace="NS",tier="l2"} 0
# HELP gormcache_bus_healthy 1 while the invalidation subscription is confirmed and answering (L1 served), 0 otherwise.
# TYPE gormcache_bus_healthy gauge
gormcache_bus_healthy{instance="test",namespace="NS"} 1
# HELP gormcache_feed_leader 1 if this relay holds the lease and streams.
# TYPE gormcache_feed_leader gauge
gormcache_feed_leader{instance="test",namespace="orders"} 1
# HELP gormcache_repository_rows_read_total Rows read through repositories, by the tier that served them.
# TYPE gormcache_repository_rows_read_total counter
gormcache_repository_rows_read_total{instance="test",table="` + f.items.Table() + `",tier="db"} 3
gormcache_repository_rows_read_total{instance="test",table="` + f.items.Table() + `",tier="l1"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(strings.ReplaceAll(want, "NS", ns)),
		"gormcache_cache_hits_total", "gormcache_bus_healthy", "gormcache_feed_leader", "gormcache_repository_rows_read_total"); err != nil {
		t.Error(err)
	}
	n, err := testutil.GatherAndCount(reg, "gormcache_repository_operations_total")
	if err != nil || n < 4 { // create, get (db / l1 / not_found), update, get_many
		t.Errorf("%d repository operation series (%v)", n, err)
	}
	if path := os.Getenv("GORMCACHE_SCRAPE_FILE"); path != "" { // a sample scrape, for the README
		if err := prometheus.WriteToTextfile(path, reg); err != nil {
			t.Error(err)
		}
	}
}
