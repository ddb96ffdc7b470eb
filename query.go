package gormcache

import (
	"context"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/qcache"
)

// The query cache: a Cached query of a model's table by any condition
// (db.Clauses(gormcache.Cached).Where("user_id = ?", u).Find(&apps)) is
// cached as the list of primary keys it returned, under a key made of the
// statement's SQL with its bound arguments and of the table's generation
// read before the query ran. Every write to the table moves the generation
// (the plugin and repositories invalidate its key in the write's own
// pipeline), so a list computed before a write is never read after it by
// an instance that has applied the write; the rows are then served through
// the per-row cache, in the list's order.

// serveQuery answers a Cached query from the query cache, and reports
// whether it did.
func (p *Plugin) serveQuery(db *gorm.DB, dest reflect.Value, many bool) bool {
	stmt := db.Statement
	if !qcache.Listable(stmt) {
		return false
	}
	t, ok := p.reg.Reader(stmt.Table, stmt.Schema.ModelType)
	if !ok {
		return false
	}
	ctx := stmt.Context
	gen, ok := qcache.Generation(ctx, t.Cache, t.Namespace)
	if !ok {
		return false
	}
	callbacks.BuildQuerySQL(db)
	if db.Error != nil {
		return false
	}
	key, ok := qcache.Key(stmt, t.Namespace, gen)
	if !ok {
		return false
	}
	query, vars := stmt.SQL.String(), stmt.Vars
	ids, err := cache.Get(ctx, t.Cache, key, func(ctx context.Context, _ string) (qcache.IDs, uint64, error) {
		p.st.queryLoads.Add(1)
		return qcache.ScanIDs(ctx, stmt.ConnPool, stmt, query, vars)
	})
	if err != nil {
		_ = db.AddError(err)
		return true
	}
	rows, ok, err := t.Read(ctx, ids.Values())
	if !ok {
		return false
	}
	p.st.queries.Add(1)
	// Answered without running the SQL built for the key: GORM's logger
	// (and callbacks after this one) must not see it as a query sent.
	stmt.SQL.Reset()
	stmt.Vars = nil
	fill(db, dest, many, rows, err)
	return true
}
