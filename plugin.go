package gormcache

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/bind"
	"github.com/gormcache/gormcache/internal/failpoint"
	"github.com/gormcache/gormcache/invalidation"
)

// Name is the plugin's name in GORM's registry (db.Config.Plugins).
const Name = "gormcache"

// Sentinel errors of the plugin. Every error it adds to a statement wraps one
// of them or an error of the cache package.
var (
	// ErrNoCache is returned by Initialize for a Plugin without a Cache.
	ErrNoCache = errors.New("gormcache: plugin without a cache")
	// ErrInvalidOption is returned by Initialize for a Plugin field it
	// cannot use.
	ErrInvalidOption = errors.New("gormcache: invalid plugin option")
	// ErrUntrackedTx is added to a write that runs in a transaction the
	// plugin cannot see commit: one begun by hand on a connection GORM got
	// around the pool the plugin wraps (db.Connection then Begin or
	// Transaction, a *sql.Tx passed in). Its invalidations could only run before
	// COMMIT, where a reader can refill the old row, so the write is
	// refused (the transaction rolls back).
	ErrUntrackedTx = errors.New("gormcache: write in a transaction the plugin does not track")
)

// Plugin makes every write through a *gorm.DB invalidate the cached rows it
// changed, after it commits: db.Use(&gormcache.Plugin{Cache: c}).
//
// It wraps the connection pool the database was opened with (so it sees
// each transaction's COMMIT and ROLLBACK) and registers callbacks after
// GORM's create, update, delete and raw-SQL callbacks that collect the keys
// of the rows each statement changed. Rows are keyed as repositories key
// them: "<table>:<pk>" in Cache, or as a repository created on the same
// database registered them (its Namespace and Cache); so a plain-GORM write
// retires what a Repository serves.
//
// When the changed rows cannot be known without a read — an UPDATE or
// DELETE by a condition that does not name primary keys, raw SQL — the
// namespace is retired whole (cache.RetireAll), which costs every instance
// a cold cache but never serves a stale row.
type Plugin struct {
	// Cache holds the rows of tables no repository registered. Required.
	Cache *cache.Cache
	// OnError, if set, is told of invalidations that failed after their
	// write committed (the write itself has succeeded; the error also
	// reaches the statement or the Commit that ran them). For logs and
	// metrics; it must be fast.
	OnError func(ctx context.Context, err error)

	// CachedModels lists models (pointers to zero values, as for
	// AutoMigrate) whose primary-key reads are served from the cache
	// without the Cached clause; Uncached opts a query out. A listed model
	// needs a repository on the database (repository.New).
	CachedModels []any

	// Bus and StrictModels make writes of the listed models strict: the
	// write returns only once every live instance has evicted its keys
	// (Bus.WaitApplied: acknowledged over Redis, or after the bus's
	// HealthWindow, by which time an instance that did not answer has
	// stopped serving L1). For credentials and permissions, where "within
	// B" is not enough. StrictModels needs Bus.
	Bus          *invalidation.Bus
	StrictModels []any

	st           stats
	reg          *bind.Registry
	cachedModels map[reflect.Type]bool // of CachedModels, set by Initialize
	strictModels map[reflect.Type]bool // of StrictModels, set by Initialize
}

var _ gorm.Plugin = (*Plugin)(nil)

// Name returns "gormcache".
func (p *Plugin) Name() string { return Name }

// Initialize wraps db's connection pool and registers the callbacks. GORM
// calls it from db.Use. The Postgres dialector sets the pool when the
// database is opened, so the plugin wraps what it finds then; with
// gorm.Config.PrepareStmt it wraps the pool under GORM's prepared-statement
// pool, so transactions stay tracked with prepared statements too.
func (p *Plugin) Initialize(db *gorm.DB) error {
	if p.Cache == nil {
		return ErrNoCache
	}
	if p.reg != nil {
		return fmt.Errorf("%w: this Plugin is installed on another database already; use one Plugin value per *gorm.DB", ErrInvalidOption)
	}
	p.reg = bind.For(db)
	var err error
	if p.cachedModels, err = modelSet("CachedModels", p.CachedModels); err != nil {
		return err
	}
	if p.strictModels, err = modelSet("StrictModels", p.StrictModels); err != nil {
		return err
	}
	if len(p.strictModels) > 0 && p.Bus == nil {
		return fmt.Errorf("%w: StrictModels needs Bus (the instances acknowledge over it)", ErrInvalidOption)
	}
	switch cp := db.ConnPool.(type) {
	case *trackedPool:
		return fmt.Errorf("%w: the plugin is already installed on this database", ErrInvalidOption)
	case *gorm.PreparedStmtDB:
		if _, ok := cp.ConnPool.(*trackedPool); !ok {
			cp.ConnPool = &trackedPool{inner: cp.ConnPool, p: p}
		}
	default:
		tp := &trackedPool{inner: db.ConnPool, p: p}
		db.ConnPool = tp
		if db.Statement != nil && db.Statement.ConnPool == cp {
			db.Statement.ConnPool = tp
		}
	}
	return p.register(db)
}

// modelSet returns the struct types of models.
func modelSet(field string, models []any) (map[reflect.Type]bool, error) {
	set := map[reflect.Type]bool{}
	for _, m := range models {
		t := reflect.TypeOf(m)
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t == nil || t.Kind() != reflect.Struct {
			return nil, fmt.Errorf("%w: %s: %T is not a model", ErrInvalidOption, field, m)
		}
		set[t] = true
	}
	return set, nil
}

// register adds the callbacks.
func (p *Plugin) register(db *gorm.DB) error {
	cb := db.Callback()
	return errors.Join(
		// A statement's pool may not be the one the plugin wrapped: a
		// connection of db.Connection, a dbresolver source. Its default
		// transaction is tracked all the same.
		cb.Create().Before("gorm:begin_transaction").Register("gormcache:track_create", p.track),
		cb.Update().Before("gorm:begin_transaction").Register("gormcache:track_update", p.track),
		cb.Delete().Before("gorm:begin_transaction").Register("gormcache:track_delete", p.track),
		// Before GORM's commit of its default transaction, so that the
		// keys are queued on that transaction and applied by its Commit.
		cb.Create().After("gorm:create").Before("gorm:commit_or_rollback_transaction").Register("gormcache:after_create", p.afterCreate),
		cb.Update().After("gorm:update").Before("gorm:commit_or_rollback_transaction").Register("gormcache:after_update", p.afterUpdate),
		cb.Delete().After("gorm:delete").Before("gorm:commit_or_rollback_transaction").Register("gormcache:after_delete", p.afterDelete),
		cb.Raw().After("gorm:raw").Register("gormcache:after_raw", p.afterRaw),
		cb.Row().After("gorm:row").Register("gormcache:after_row", p.afterRawQuery),
		cb.Query().Replace("gorm:query", p.query),
		cb.Query().After("gorm:query").Register("gormcache:after_query", p.afterRawQuery),
		p.registerVersioning(db),
	)
}

// track wraps the statement's pool when GORM is about to begin its default
// transaction on a pool the plugin does not see.
func (p *Plugin) track(db *gorm.DB) {
	switch cp := db.Statement.ConnPool.(type) {
	case *trackedPool, *trackedTx, *gorm.PreparedStmtDB, *gorm.PreparedStmtTX, gorm.TxCommitter:
	case gorm.TxBeginner, gorm.ConnPoolBeginner:
		db.Statement.ConnPool = &trackedPool{inner: cp, p: p}
	}
}

// apply runs invalidations of committed writes: for each cache, a
// retirement of the whole namespace if one was asked for, else one
// InvalidateMany (one Redis pipeline).
func (p *Plugin) apply(ctx context.Context, pending []pendingInv, retire map[*cache.Cache]bool, strict bool) error {
	if len(pending) == 0 && len(retire) == 0 {
		return nil
	}
	if strict {
		defer p.waitApplied(ctx)
	}
	byCache := map[*cache.Cache][]cache.Invalidation{}
	var order []*cache.Cache
	seen := make(map[pendingInv]bool, len(pending))
	for _, pi := range pending {
		if seen[pi] { // the table's generation key, once per statement of a transaction
			continue
		}
		seen[pi] = true
		if _, ok := byCache[pi.c]; !ok {
			order = append(order, pi.c)
		}
		byCache[pi.c] = append(byCache[pi.c], pi.inv)
	}
	for c := range retire {
		if _, ok := byCache[c]; !ok {
			order = append(order, c)
		}
	}
	var errs []error
	for _, c := range order {
		var err error
		if retire[c] {
			err = c.RetireAll(ctx)
		} else {
			err = c.InvalidateMany(ctx, byCache[c])
		}
		if err != nil {
			err = fmt.Errorf("gormcache: the write committed but its invalidation failed: %w", err)
			if p.OnError != nil {
				p.OnError(ctx, err)
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// waitApplied waits for every live instance to apply the invalidations
// just published (strict writes).
func (p *Plugin) waitApplied(ctx context.Context) {
	if failpoint.Disabled(failpoint.GuardStrict) {
		return
	}
	_ = p.Bus.WaitApplied(context.WithoutCancel(ctx))
}
