package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/gormcache/gormcache"
	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

// gcRepoNS is the repository namespace: keys are "rows:<id>".
const gcRepoNS = "rows"

type gormcacheInstance struct {
	rdb  *redis.Client
	c    *cache.Cache
	bus  *invalidation.Bus
	repo *repository.Repository[Row, int64]
}

// openGormcache returns the opener of gormcache with L1 and the bus (full)
// or Redis only. Every other option is the library's default: L1 64 MiB,
// L1 TTL 1 min, L2 TTL 10 min. The repository stores rows column by column
// whatever the cache's codec (which only serves cache.Get of other values).
func openGormcache(full bool) func(e *env, ns string) (instance, error) {
	return func(e *env, ns string) (instance, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		opts := cache.Options{Namespace: ns, L1TTL: localTTL, L2TTL: remoteTTL}
		if !full {
			opts.L1MaxBytes = -1
		}
		g := &gormcacheInstance{rdb: e.newRedis()}
		opts.Redis = g.rdb
		var err error
		if g.c, err = cache.New(ctx, opts); err != nil {
			g.Close()
			return nil, err
		}
		if full {
			if g.bus, err = invalidation.New(ctx, g.c, invalidation.Options{}); err != nil {
				g.Close()
				return nil, err
			}
			if err := g.bus.WaitHealthy(ctx); err != nil {
				g.Close()
				return nil, fmt.Errorf("invalidation bus not healthy: %w", err)
			}
		}
		if g.repo, err = repository.New[Row, int64](e.db, g.c, repository.Options{Namespace: gcRepoNS}); err != nil {
			g.Close()
			return nil, err
		}
		return g, nil
	}
}

func (g *gormcacheInstance) Get(ctx context.Context, id int64) (*Row, error) {
	return g.repo.Get(ctx, id)
}

func (g *gormcacheInstance) GetMany(ctx context.Context, ids []int64) ([]*Row, error) {
	return g.repo.GetMany(ctx, ids)
}

func (g *gormcacheInstance) Update(ctx context.Context, row *Row) error {
	err := g.repo.Update(ctx, row)
	if errors.Is(err, repository.ErrConflict) {
		return fmt.Errorf("%w: %w", errConflict, err)
	}
	return err
}

func (g *gormcacheInstance) EvictLocal(id int64) {
	g.c.EvictLocal(gcRepoNS+":"+strconv.FormatInt(id, 10), 0)
}

func (g *gormcacheInstance) Close() error {
	if g.bus != nil {
		g.bus.Close()
	}
	if g.c != nil {
		g.c.Close()
	}
	return g.rdb.Close()
}

// lwwInstance is gormcache-full with the peers' write semantics (last
// writer wins): the same UPDATE as theirs (version = version + 1, RETURNING
// version), then cache.Invalidate with the committed version, the cache
// package's documented call after a write made outside the repository. It
// separates the cost of optimistic locking on hot rows from the rest.
type lwwInstance struct {
	*gormcacheInstance
	e *env
}

func openGormcacheLWW(e *env, ns string) (instance, error) {
	inst, err := openGormcache(true)(e, ns)
	if err != nil {
		return nil, err
	}
	return lwwInstance{gormcacheInstance: inst.(*gormcacheInstance), e: e}, nil
}

func (l lwwInstance) Update(ctx context.Context, row *Row) error {
	if err := updateRow(ctx, l.e.db, row); err != nil {
		return err
	}
	return l.c.Invalidate(ctx, gcRepoNS+":"+strconv.FormatInt(row.ID, 10), uint64(row.Version))
}

// pluginInstance is gormcache as a GORM plugin, the way go-gorm/caches is
// used: a *gorm.DB of its own (the plugin wraps its pool and replaces its
// query callback) with db.Use(&gormcache.Plugin{Cache: c}) on a cache with
// the invalidation bus, and a repository of Row registered on it so that
// primary-key reads are served from the cache. The application code is
// the peers' plain GORM: reads are loadRow and loadRows (db.Take and the IN
// query) with the gormcache.Cached clause, writes are updateRow (the same
// blind UPDATE, version = version + 1), which the plugin invalidates after
// GORM's transaction commits. So it has the peers' write semantics, as
// gormcache-full-lww.
type pluginInstance struct {
	*gormcacheInstance
	db *gorm.DB
}

func openGormcachePlugin(e *env, ns string) (instance, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := e.openGorm()
	if err != nil {
		return nil, err
	}
	g := &gormcacheInstance{rdb: e.newRedis()}
	if g.c, err = cache.New(ctx, cache.Options{Redis: g.rdb, Namespace: ns, L1TTL: localTTL, L2TTL: remoteTTL}); err != nil {
		g.Close()
		return nil, err
	}
	if g.bus, err = invalidation.New(ctx, g.c, invalidation.Options{}); err != nil {
		g.Close()
		return nil, err
	}
	if err := g.bus.WaitHealthy(ctx); err != nil {
		g.Close()
		return nil, fmt.Errorf("invalidation bus not healthy: %w", err)
	}
	if err := db.Use(&gormcache.Plugin{Cache: g.c}); err != nil {
		g.Close()
		return nil, err
	}
	if g.repo, err = repository.New[Row, int64](db, g.c, repository.Options{Namespace: gcRepoNS}); err != nil {
		g.Close()
		return nil, err
	}
	return &pluginInstance{gormcacheInstance: g, db: db}, nil
}

func (p *pluginInstance) Get(ctx context.Context, id int64) (*Row, error) {
	return loadRow(ctx, p.db.Clauses(gormcache.Cached), id)
}

func (p *pluginInstance) GetMany(ctx context.Context, ids []int64) ([]*Row, error) {
	found, err := loadRows(ctx, p.db.Clauses(gormcache.Cached), ids)
	if err != nil {
		return nil, err
	}
	return inOrder(ids, found)
}

func (p *pluginInstance) Update(ctx context.Context, row *Row) error {
	return updateRow(ctx, p.db, row) // the plugin invalidates after COMMIT
}
