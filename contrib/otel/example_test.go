package otel_test

import (
	"context"
	"log"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	gcotel "github.com/gormcache/gormcache/contrib/otel"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

type User struct {
	ID   uint `gorm:"primaryKey"`
	Name string
}

// A cache, its bus and a repository observed on an OpenTelemetry meter.
func ExampleNew() {
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

	provider := sdkmetric.NewMeterProvider( /* sdkmetric.WithReader(an exporter) */ )
	m, err := gcotel.New(provider.Meter("github.com/gormcache/gormcache"))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	_ = m.AddCache("api-1", c) // errors only for a name used twice
	_ = m.AddBus("api-1", bus)
	users, err := repository.New[User, uint](db, c, repository.Options{Observe: m.Observe("api-1")})
	if err != nil {
		log.Fatal(err)
	}
	_ = users
}
