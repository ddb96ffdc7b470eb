package benchmarks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"
	"github.com/dtm-labs/rockscache"
	gocache "github.com/eko/gocache/lib/v4/cache"
	"github.com/eko/gocache/lib/v4/marshaler"
	gocachestore "github.com/eko/gocache/lib/v4/store"
	bigcachestore "github.com/eko/gocache/store/bigcache/v4"
	redisstore "github.com/eko/gocache/store/redis/v4"
	"github.com/go-gorm/caches/v4"
	gorediscache "github.com/go-redis/cache/v9"
	jetcache "github.com/mgtv-tech/jetcache-go"
	jetlocal "github.com/mgtv-tech/jetcache-go/local"
	jetlogger "github.com/mgtv-tech/jetcache-go/logger"
	jetremote "github.com/mgtv-tech/jetcache-go/remote"
	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"
	"gorm.io/gorm"
)

// ---------------------------------------------------------------- jetcache-go

// jetLog replaces jetcache-go's logger (which writes to stderr, e.g. its
// per-minute stats) and counts what it was told: the sync events it dropped
// because its event channel was full, and any other warning or error.
type jetLog struct{ dropped, other atomic.Uint64 }

// jetDropFormat is jetcache-go's warning for a dropped sync event.
const jetDropFormat = "reach max send buffer(%d)"

func (*jetLog) Debug(string, ...any) {}
func (*jetLog) Info(string, ...any)  {}
func (l *jetLog) Warn(format string, _ ...any) {
	if format == jetDropFormat {
		l.dropped.Add(1)
		return
	}
	l.other.Add(1)
}
func (l *jetLog) Error(string, ...any) { l.other.Add(1) }

var jetLogs = new(jetLog)

func init() { jetlogger.SetDefaultLogger(jetLogs) } // "should only be called during init"

// jetInstance is jetcache-go as its README configures it: FreeCache
// (256 MiB) in front of Redis through the go-redis v9 adapter, the generic
// T wrapper for Get/MGet, and syncLocal with the README's pub/sub event
// handler so that other instances drop their local copy after a write.
type jetInstance struct {
	rdb      *redis.Client
	c        jetcache.Cache
	t        *jetcache.T[int64, *Row]
	db       *gorm.DB
	ns       string
	prefix   string // key prefix passed to T ("<ns>:row"): keys are rowKey(ns, id)
	sourceID string
	sub      *redis.PubSub
	done     chan struct{}
}

func openJetcache(e *env, ns string) (instance, error) {
	j := &jetInstance{rdb: e.newRedis(), db: e.db, ns: ns, prefix: ns + ":row", sourceID: randHex(8), done: make(chan struct{})}
	channel := ns + ":jetcache-sync"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j.sub = j.rdb.Subscribe(ctx, channel)
	if _, err := j.sub.Receive(ctx); err != nil { // wait for the subscription
		j.sub.Close()
		j.rdb.Close()
		return nil, err
	}
	j.c = jetcache.New(
		jetcache.WithName(ns),
		jetcache.WithRemote(jetremote.NewGoRedisV9Adapter(j.rdb)),
		// FreeCache is process-wide in jetcache-go (one 256 MiB arena, sized
		// by the first call); the per-instance inner key prefix keeps the
		// local tiers of two instances apart.
		jetcache.WithLocal(jetlocal.NewFreeCache(256*jetlocal.MB, localTTL, j.sourceID)),
		jetcache.WithErrNotFound(gorm.ErrRecordNotFound),
		jetcache.WithRemoteExpiry(remoteTTL),
		jetcache.WithSourceId(j.sourceID),
		jetcache.WithSyncLocal(true),
		jetcache.WithEventHandler(func(ev *jetcache.Event) {
			bs, _ := json.Marshal(ev)
			j.rdb.Publish(context.Background(), channel, string(bs))
		}),
	)
	j.t = jetcache.NewT[int64, *Row](j.c)
	msgs := j.sub.Channel()
	go func() {
		defer close(j.done)
		for msg := range msgs {
			var ev jetcache.Event
			if json.Unmarshal([]byte(msg.Payload), &ev) != nil || ev.SourceID == j.sourceID {
				continue
			}
			for _, k := range ev.Keys {
				j.c.DeleteFromLocalCache(k)
			}
		}
	}()
	return j, nil
}

func (j *jetInstance) Get(ctx context.Context, id int64) (*Row, error) {
	return j.t.Get(ctx, j.prefix, id, func(ctx context.Context, id int64) (*Row, error) {
		return loadRow(ctx, j.db, id)
	})
}

func (j *jetInstance) GetMany(ctx context.Context, ids []int64) ([]*Row, error) {
	found, err := j.t.MGetWithErr(ctx, j.prefix, ids, func(ctx context.Context, ids []int64) (map[int64]*Row, error) {
		return loadRows(ctx, j.db, ids)
	})
	if err != nil {
		return nil, err
	}
	return inOrder(ids, found)
}

func (j *jetInstance) Update(ctx context.Context, row *Row) error {
	if err := updateRow(ctx, j.db, row); err != nil {
		return err
	}
	return j.t.Delete(ctx, j.prefix, row.ID)
}

func (j *jetInstance) EvictLocal(id int64) { j.c.DeleteFromLocalCache(rowKey(j.ns, id)) }

func (j *jetInstance) Close() error {
	j.c.Close()
	j.sub.Close()
	<-j.done
	return j.rdb.Close()
}

// -------------------------------------------------------------------- gocache

// gocacheInstance is eko/gocache v4 as its README composes it: a loadable
// cache over a chain of bigcache (1 min life window) and Redis (10 min),
// wrapped in the msgpack marshaler. The loader returns the msgpack bytes
// the stores hold (bigcache stores only bytes).
type gocacheInstance struct {
	rdb      *redis.Client
	bc       *bigcache.BigCache
	local    *bigcachestore.BigcacheStore
	loadable *gocache.LoadableCache[any]
	m        *marshaler.Marshaler
	db       *gorm.DB
	ns       string
}

func openGocache(e *env, ns string) (instance, error) {
	g := &gocacheInstance{rdb: e.newRedis(), db: e.db, ns: ns}
	var err error
	if g.bc, err = bigcache.New(context.Background(), bigcache.DefaultConfig(localTTL)); err != nil {
		g.rdb.Close()
		return nil, err
	}
	g.local = bigcachestore.NewBigcache(g.bc)
	remote := redisstore.NewRedis(g.rdb, gocachestore.WithExpiration(remoteTTL))
	chain := gocache.NewChain[any](gocache.New[any](g.local), gocache.New[any](remote))
	db := g.db
	g.loadable = gocache.NewLoadable[any](func(ctx context.Context, key any) (any, []gocachestore.Option, error) {
		id, err := idOfKey(key.(string))
		if err != nil {
			return nil, nil, err
		}
		row, err := loadRow(ctx, db, id)
		if err != nil {
			return nil, nil, err
		}
		b, err := msgpack.Marshal(row)
		return b, nil, err
	}, chain)
	g.m = marshaler.New(g.loadable)
	return g, nil
}

// idOfKey parses the id at the end of "<ns>:row:<id>".
func idOfKey(key string) (int64, error) {
	return strconv.ParseInt(key[strings.LastIndexByte(key, ':')+1:], 10, 64)
}

func (g *gocacheInstance) Get(ctx context.Context, id int64) (*Row, error) {
	r := new(Row)
	if _, err := g.m.Get(ctx, rowKey(g.ns, id), r); err != nil {
		return nil, err
	}
	return r, nil
}

func (g *gocacheInstance) Update(ctx context.Context, row *Row) error {
	if err := updateRow(ctx, g.db, row); err != nil {
		return err
	}
	return g.m.Delete(ctx, rowKey(g.ns, row.ID))
}

func (g *gocacheInstance) Fill(ctx context.Context, row *Row) error {
	return g.m.Set(ctx, rowKey(g.ns, row.ID), row)
}

func (g *gocacheInstance) EvictLocal(id int64) {
	_ = g.local.Delete(context.Background(), rowKey(g.ns, id))
}

func (g *gocacheInstance) Close() error {
	// The chain's setter goroutine has no Close in gocache v4; it idles.
	g.loadable.Close()
	g.bc.Close()
	return g.rdb.Close()
}

// ------------------------------------------------------------- go-redis/cache

// goRedisInstance is go-redis/cache v9 as its README uses it: Once with a
// TinyLFU local cache in front of Redis. The README's TinyLFU holds 1000
// entries; here it holds the whole table (100k), as every local tier does.
type goRedisInstance struct {
	rdb *redis.Client
	c   *gorediscache.Cache
	db  *gorm.DB
	ns  string
}

func openGoRedisCache(e *env, ns string) (instance, error) {
	rdb := e.newRedis()
	return &goRedisInstance{
		rdb: rdb,
		c:   gorediscache.New(&gorediscache.Options{Redis: rdb, LocalCache: gorediscache.NewTinyLFU(numRows, localTTL)}),
		db:  e.db,
		ns:  ns,
	}, nil
}

func (g *goRedisInstance) Get(ctx context.Context, id int64) (*Row, error) {
	r := new(Row)
	err := g.c.Once(&gorediscache.Item{
		Ctx:   ctx,
		Key:   rowKey(g.ns, id),
		Value: r,
		TTL:   remoteTTL,
		Do: func(it *gorediscache.Item) (any, error) {
			return loadRow(it.Context(), g.db, id)
		},
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (g *goRedisInstance) Update(ctx context.Context, row *Row) error {
	if err := updateRow(ctx, g.db, row); err != nil {
		return err
	}
	return g.c.Delete(ctx, rowKey(g.ns, row.ID))
}

func (g *goRedisInstance) Fill(ctx context.Context, row *Row) error {
	return g.c.Set(&gorediscache.Item{Ctx: ctx, Key: rowKey(g.ns, row.ID), Value: row, TTL: remoteTTL})
}

func (g *goRedisInstance) EvictLocal(id int64) { g.c.DeleteFromLocalCache(rowKey(g.ns, id)) }

func (g *goRedisInstance) Close() error { return g.rdb.Close() }

// ----------------------------------------------------------------- rockscache

// rocksInstance is dtm-labs/rockscache with NewDefaultOptions, as its README:
// Fetch after a miss, TagAsDeleted after a write. It has no local tier.
// Default options mean weak consistency: after TagAsDeleted the old value is
// still returned while one caller recomputes it.
type rocksInstance struct {
	rdb *redis.Client
	rc  *rockscache.Client
	db  *gorm.DB
	ns  string
}

func openRockscache(e *env, ns string) (instance, error) {
	rdb := e.newRedis()
	return &rocksInstance{rdb: rdb, rc: rockscache.NewClient(rdb, rockscache.NewDefaultOptions()), db: e.db, ns: ns}, nil
}

func (r *rocksInstance) Get(ctx context.Context, id int64) (*Row, error) {
	s, err := r.rc.Fetch2(ctx, rowKey(r.ns, id), remoteTTL, func() (string, error) {
		row, err := loadRow(ctx, r.db, id)
		if err != nil {
			return "", err
		}
		b, err := msgpack.Marshal(row)
		return string(b), err
	})
	if err != nil {
		return nil, err
	}
	if s == "" {
		return nil, gorm.ErrRecordNotFound
	}
	row := new(Row)
	if err := msgpack.Unmarshal([]byte(s), row); err != nil {
		return nil, err
	}
	return row, nil
}

func (r *rocksInstance) GetMany(ctx context.Context, ids []int64) ([]*Row, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = rowKey(r.ns, id)
	}
	vals, err := r.rc.FetchBatch2(ctx, keys, remoteTTL, func(idxs []int) (map[int]string, error) {
		want := make([]int64, len(idxs))
		for i, idx := range idxs {
			want[i] = ids[idx]
		}
		found, err := loadRows(ctx, r.db, want)
		if err != nil {
			return nil, err
		}
		out := make(map[int]string, len(found))
		for _, idx := range idxs {
			if row := found[ids[idx]]; row != nil {
				b, err := msgpack.Marshal(row)
				if err != nil {
					return nil, err
				}
				out[idx] = string(b)
			}
		}
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*Row, len(ids))
	for i := range ids {
		s := vals[i]
		if s == "" {
			return nil, fmt.Errorf("row %d missing from a batch read", ids[i])
		}
		out[i] = new(Row)
		if err := msgpack.Unmarshal([]byte(s), out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r *rocksInstance) Update(ctx context.Context, row *Row) error {
	if err := updateRow(ctx, r.db, row); err != nil {
		return err
	}
	return r.rc.TagAsDeleted2(ctx, rowKey(r.ns, row.ID))
}

func (r *rocksInstance) Close() error { return r.rdb.Close() }

// ---------------------------------------------------------------- gorm-caches

// gormCachesInstance is go-gorm/caches v4: a plugin on a *gorm.DB of its own
// with the easer on and the Redis cacher of its README (whole query results
// as JSON, 10 min TTL; every write, after it commits, invalidates every
// cached query by SCAN + DEL). Its keys are prefixed with the namespace so runs stay apart.
type gormCachesInstance struct {
	rdb *redis.Client
	db  *gorm.DB
}

func openGormCaches(e *env, ns string) (instance, error) {
	db, err := e.openGorm()
	if err != nil {
		return nil, err
	}
	rdb := e.newRedis()
	plugin := &caches.Caches{Conf: &caches.Config{Easer: true, Cacher: &redisCacher{rdb: rdb, prefix: ns + ":"}}}
	if err := db.Use(plugin); err != nil {
		rdb.Close()
		return nil, err
	}
	return &gormCachesInstance{rdb: rdb, db: db}, nil
}

func (g *gormCachesInstance) Get(ctx context.Context, id int64) (*Row, error) {
	return loadRow(ctx, g.db, id)
}

func (g *gormCachesInstance) GetMany(ctx context.Context, ids []int64) ([]*Row, error) {
	found, err := loadRows(ctx, g.db, ids)
	if err != nil {
		return nil, err
	}
	return inOrder(ids, found)
}

func (g *gormCachesInstance) Update(ctx context.Context, row *Row) error {
	return updateRow(ctx, g.db, row) // the plugin invalidates
}

func (g *gormCachesInstance) Close() error { return g.rdb.Close() }

// redisCacher is the README's Redis cacher, with the key prefix and the
// suite's TTL.
type redisCacher struct {
	rdb    *redis.Client
	prefix string
}

func (c *redisCacher) Get(ctx context.Context, key string, q *caches.Query[any]) (*caches.Query[any], error) {
	res, err := c.rdb.Get(ctx, c.prefix+key).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := q.Unmarshal([]byte(res)); err != nil {
		return nil, err
	}
	return q, nil
}

func (c *redisCacher) Store(ctx context.Context, key string, val *caches.Query[any]) error {
	res, err := val.Marshal()
	if err != nil {
		return err
	}
	c.rdb.Set(ctx, c.prefix+key, res, remoteTTL)
	return nil
}

func (c *redisCacher) Invalidate(ctx context.Context) error {
	var (
		cursor uint64
		keys   []string
	)
	for {
		k, next, err := c.rdb.Scan(ctx, cursor, c.prefix+caches.IdentifierPrefix+"*", 0).Result()
		if err != nil {
			return err
		}
		keys = append(keys, k...)
		cursor = next
		if cursor == 0 {
			break
		}
	}
	if len(keys) > 0 {
		if _, err := c.rdb.Del(ctx, keys...).Result(); err != nil {
			return err
		}
	}
	return nil
}
