package changefeed_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/changefeed"
	"github.com/gormcache/gormcache/invalidation"
)

type gormDB = gorm.DB

// runChild runs a standalone relay until killed (TestKill9).
func runChild(spec string) int {
	f := strings.Split(spec, "\x1f")
	dsn, addr, ns, slot, pub, docs, users := f[0], f[1], f[2], f[3], f[4], f[5], f[6]
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	c, err := cache.New(ctx, cache.Options{Redis: rdb, Namespace: ns, L1MaxBytes: -1})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	if _, err := invalidation.New(ctx, c, invalidation.Options{InstanceID: "child"}); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	r, err := changefeed.New(changefeed.Options{
		ConnString: dsn, Cache: c, Slot: slot, Publication: pub, Redis: rdb, LeaseKey: ns + ":relay",
		LeaseTTL: time.Second, InstanceID: "child", StandbyInterval: 100 * time.Millisecond,
		Describe: []changefeed.Table{{Name: docs, Version: "version"}, {Name: users, Uniques: []string{"token"}}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	if err := r.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}
