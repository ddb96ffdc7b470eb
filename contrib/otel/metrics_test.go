package otel_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/cache"
	gcotel "github.com/gormcache/gormcache/contrib/otel"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

type item struct {
	ID   int64 `gorm:"primaryKey"`
	Name string
	repository.Version
}

func TestMetrics(t *testing.T) {
	addr, dsn := os.Getenv("GORMCACHE_REDIS_ADDR"), os.Getenv("GORMCACHE_PG_DSN")
	if addr == "" || dsn == "" {
		t.Skip("GORMCACHE_REDIS_ADDR and GORMCACHE_PG_DSN not set: run with the test Redis and PostgreSQL")
	}
	ctx := context.Background()
	var b [4]byte
	rand.Read(b[:])
	prefix := "t_otel_" + hex.EncodeToString(b[:])
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard, NamingStrategy: schema.NamingStrategy{TablePrefix: prefix + "_"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.AutoMigrate(&item{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		db.Migrator().DropTable(&item{})
		if s, err := db.DB(); err == nil {
			s.Close()
		}
	}()
	c, err := cache.New(ctx, cache.Options{Redis: rdb, Namespace: prefix, L1MaxBytes: 1 << 20, L1Shards: 16, L1MaxEntryBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bus, err := invalidation.New(ctx, c, invalidation.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := bus.WaitHealthy(wctx); err != nil {
		t.Fatal(err)
	}

	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(ctx)
	m, err := gcotel.New(provider.Meter("gormcache"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.AddCache("test", c); err != nil {
		t.Fatal(err)
	}
	if err := m.AddBus("test", bus); err != nil {
		t.Fatal(err)
	}
	if err := m.AddBus("test", bus); err == nil {
		t.Error("the same bus added twice under one instance name")
	}
	items, err := repository.New[item, int64](db, c, repository.Options{Observe: m.Observe("test")})
	if err != nil {
		t.Fatal(err)
	}
	it := &item{Name: "a"}
	if err := items.Create(ctx, it); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := items.Get(ctx, it.ID); err != nil {
			t.Fatal(err)
		}
		c.Settle()
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			got[md.Name] = md.Data
		}
	}
	sumOf := func(name string, want attribute.KeyValue) int64 {
		t.Helper()
		s, ok := got[name].(metricdata.Sum[int64])
		if !ok {
			t.Fatalf("%s: %T, want an int64 sum", name, got[name])
		}
		for _, dp := range s.DataPoints {
			if v, ok := dp.Attributes.Value(want.Key); ok && v == want.Value {
				return dp.Value
			}
		}
		t.Fatalf("%s: no point with %v: %+v", name, want, s.DataPoints)
		return 0
	}
	if n := sumOf("gormcache.cache.hits", attribute.String("tier", "l1")); n != 4 {
		t.Errorf("L1 hits %d, want 4", n)
	}
	if n := sumOf("gormcache.cache.misses", attribute.String("namespace", prefix)); n != 1 {
		t.Errorf("misses %d, want 1", n)
	}
	if n := sumOf("gormcache.repository.rows_read", attribute.String("tier", "l1")); n != 4 {
		t.Errorf("repository L1 rows %d, want 4", n)
	}
	if n := sumOf("gormcache.repository.rows_read", attribute.String("tier", "db")); n != 1 {
		t.Errorf("repository db rows %d, want 1", n)
	}
	h, ok := got["gormcache.bus.healthy"].(metricdata.Gauge[float64])
	if !ok || len(h.DataPoints) != 1 || h.DataPoints[0].Value != 1 {
		t.Errorf("bus.healthy: %+v", got["gormcache.bus.healthy"])
	}
	if _, ok := got["gormcache.repository.operation.duration"].(metricdata.Histogram[float64]); !ok {
		t.Errorf("no operation duration histogram: %T", got["gormcache.repository.operation.duration"])
	}
	if _, ok := got["gormcache.bus.propagation_lag"].(metricdata.Gauge[float64]); !ok {
		t.Errorf("no propagation lag gauge")
	}
}
