package changefeed_test

import (
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/changefeed"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func TestNewOptions(t *testing.T) {
	c := &cache.Cache{}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	ok := changefeed.Options{ConnString: "host=127.0.0.1 port=1", Cache: c, Redis: rdb, Tables: []string{"users"}}
	if _, err := changefeed.New(ok); err != nil {
		t.Fatal(err)
	}
	bad := []func(o *changefeed.Options){
		func(o *changefeed.Options) { o.ConnString = "" },
		func(o *changefeed.Options) { o.ConnString = "host=x port=notaport" },
		func(o *changefeed.Options) { o.Cache = nil },
		func(o *changefeed.Options) { o.Redis = nil },
		func(o *changefeed.Options) { o.Tables = nil },
		func(o *changefeed.Options) { o.AllTables = true },
		func(o *changefeed.Options) { o.Slot = "Bad-Name" },
		func(o *changefeed.Options) { o.LeaseTTL = -1 },
		func(o *changefeed.Options) { o.LeaseTTL = 10 },
		func(o *changefeed.Options) { o.Tables = []string{"a.b.c"} },
		func(o *changefeed.Options) { o.Describe = []changefeed.Table{{Name: "x", Namespace: "{x}"}} },
	}
	for i, f := range bad {
		o := ok
		f(&o)
		if _, err := changefeed.New(o); !errors.Is(err, changefeed.ErrInvalidOption) {
			t.Errorf("case %d: %v, want ErrInvalidOption", i, err)
		}
	}
}
