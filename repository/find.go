package repository

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/qcache"
)

// Find returns the rows a query of the table selects, in its order: scope
// adds conditions, order and limit in GORM's idiom,
//
//	apps, err := repo.Find(ctx, func(q *gorm.DB) *gorm.DB {
//		return q.Where("user_id = ?", uid).Order("created_at DESC").Limit(20)
//	})
//
// The query's result is cached as the list of its rows' primary keys, keyed
// by its SQL with its bound arguments and by the table's generation, read
// before the query runs; every write to the table through a repository or
// the plugin moves the generation, so no list computed before a write is
// read after it. The rows come through the row cache (as GetMany).
//
// Queries whose result may depend on anything but the table's rows and the
// arguments — joins, subqueries, Select, volatile functions such as now() —
// and queries of a transaction-bound repository run on the database every
// time. So do lists when Redis cannot vouch for the generation.
func (r *Repository[T, ID]) Find(ctx context.Context, scope func(q *gorm.DB) *gorm.DB) ([]*T, error) {
	start := r.now()
	out, err := r.find(ctx, scope)
	r.observe(ctx, "find", len(out), start, err)
	return out, err
}

func (r *Repository[T, ID]) find(ctx context.Context, scope func(q *gorm.DB) *gorm.DB) ([]*T, error) {
	if scope == nil {
		return nil, fmt.Errorf("%w: nil scope", ErrInvalidArgument)
	}
	if r.tx != nil {
		return r.findDirect(ctx, scope, r.conn(ctx))
	}
	gen, ok := qcache.Generation(ctx, r.c, r.ns)
	if !ok {
		return r.findDirect(ctx, scope, r.conn(ctx))
	}
	// The statement as the scope leaves it decides whether it may be
	// cached; built without running (DryRun), it gives the key.
	q := scope(r.db.WithContext(ctx).Session(&gorm.Session{DryRun: true}))
	if q.Error != nil {
		return nil, q.Error
	}
	if err := q.Statement.Parse(new(T)); err != nil || !qcache.Listable(q.Statement) || q.Statement.Table != r.table {
		return r.findDirect(ctx, scope, r.conn(ctx))
	}
	dry := q.Find(&[]T{})
	if dry.Error != nil {
		return nil, dry.Error
	}
	key, ok := qcache.Key(dry.Statement, r.ns, gen)
	if !ok {
		return r.findDirect(ctx, scope, r.conn(ctx))
	}
	query, vars := dry.Statement.SQL.String(), dry.Statement.Vars
	list, err := cache.Get(ctx, r.c, key, func(ctx context.Context, _ string) (qcache.IDs, uint64, error) {
		return qcache.ScanIDs(ctx, r.db.Statement.ConnPool, dry.Statement, query, vars)
	}, r.readOpt...)
	if err != nil {
		return nil, err
	}
	return r.rowsOf(ctx, list.Values())
}

// rowsOf reads the rows of ids through the row cache, in order, leaving out
// those that no longer exist.
func (r *Repository[T, ID]) rowsOf(ctx context.Context, vals []any) ([]*T, error) {
	rows, ok, err := r.readAny(ctx, vals)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("gormcache: a cached list of %s holds keys of another type", r.table)
	}
	out := make([]*T, len(rows))
	for i, v := range rows {
		out[i] = v.Interface().(*T)
	}
	return out, nil
}

// findDirect runs the query on db, as GORM would.
func (r *Repository[T, ID]) findDirect(ctx context.Context, scope func(q *gorm.DB) *gorm.DB, db *gorm.DB) ([]*T, error) {
	var rows []T
	if err := scope(db).Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]*T, len(rows))
	for i := range rows {
		out[i] = &rows[i]
	}
	return out, nil
}
