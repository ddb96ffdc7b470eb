package prometheus_test

import (
	"context"
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	gcprom "github.com/gormcache/gormcache/contrib/prometheus"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

type User struct {
	ID   uint `gorm:"primaryKey"`
	Name string
}

// A cache, its bus and a repository exported on /metrics.
func ExampleCollector() {
	ctx := context.Background()
	var db *gorm.DB // gorm.Open(...)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	c, err := cache.New(ctx, cache.Options{Redis: rdb, Namespace: "shop"})
	if err != nil {
		log.Fatal(err)
	}
	bus, err := invalidation.New(ctx, c, invalidation.Options{})
	if err != nil {
		log.Fatal(err)
	}

	col := gcprom.NewCollector()
	_ = col.AddCache("api-1", c) // errors only for a name used twice
	_ = col.AddBus("api-1", bus)
	users, err := repository.New[User, uint](db, c, repository.Options{Observe: col.Observe("api-1")})
	if err != nil {
		log.Fatal(err)
	}
	_ = users

	reg := prometheus.NewRegistry()
	reg.MustRegister(col)
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
}
