package gormcache

import (
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"

	"github.com/gormcache/gormcache/internal/failpoint"
)

// The read path: primary-key reads through plain GORM (db.First(&u, id),
// db.Take, db.Find(&us, ids)), opted in per query with the Cached clause or
// per model with Plugin.CachedModels, are served by the repository
// registered for the model, with its guarantees. Every other query runs as
// GORM runs it.

// Cached makes a query eligible for the cache: db.Clauses(gormcache.Cached).
// First(&u, id). It is served from the cache when the model has a
// repository on this database (repository.New registers it) and the query
// reads rows by primary key only: no other condition, join, preload,
// locking clause, Select, Unscoped, offset or grouping, and not inside a
// transaction. Any other query runs on the database as usual.
var Cached clause.Expression = readClause{cached: true}

// Uncached makes a query of a model listed in Plugin.CachedModels go to the
// database: db.Clauses(gormcache.Uncached).First(&u, id).
var Uncached clause.Expression = readClause{}

const readSetting = "gormcache:read"

// readClause marks the statement; it adds nothing to the SQL.
type readClause struct{ cached bool }

func (readClause) Build(clause.Builder) {}

// ModifyStatement records the choice in the statement's settings.
func (c readClause) ModifyStatement(stmt *gorm.Statement) { stmt.Settings.Store(readSetting, c.cached) }

// query replaces gorm:query.
func (p *Plugin) query(db *gorm.DB) {
	if db.Error == nil && !db.DryRun && p.wantsCache(db.Statement) {
		if p.serve(db) {
			return
		}
		p.st.passed.Add(1)
	}
	callbacks.Query(db)
}

// wantsCache reports whether the statement asked for the cache, by clause or
// through its model.
func (p *Plugin) wantsCache(stmt *gorm.Statement) bool {
	if v, ok := stmt.Settings.Load(readSetting); ok {
		return v.(bool)
	}
	return stmt.Schema != nil && p.cachedModels[stmt.Schema.ModelType]
}

// serve answers the statement from the cache and reports whether it did.
func (p *Plugin) serve(db *gorm.DB) bool {
	stmt := db.Statement
	if _, inTx := trackedOf(stmt.ConnPool); inTx && !failpoint.Disabled(failpoint.GuardNoTxFill) {
		return false // a transaction reads its own writes and snapshot, not the shared tiers
	}
	dest, many, ok := destOf(stmt)
	if !ok {
		return false
	}
	pks, ok := wherePKsOnly(stmt)
	if !plainRead(stmt, many) || !ok || (!many && len(pks) != 1) {
		return p.serveQuery(db, dest, many)
	}
	t, ok := p.reg.Reader(stmt.Table, stmt.Schema.ModelType)
	if !ok {
		return false
	}
	rows, ok, err := t.Read(stmt.Context, pks)
	if !ok {
		return false
	}
	p.st.rows.Add(1)
	fill(db, dest, many, rows, err)
	return true
}

// fill sets the query's destination to rows (pointers to model values), as
// GORM's scan would, with the repository's AfterFind already run.
func fill(db *gorm.DB, dest reflect.Value, many bool, rows []reflect.Value, err error) {
	stmt := db.Statement
	stmt.SkipHooks = true // the repository ran AfterFind
	if err != nil {
		_ = db.AddError(err)
		return
	}
	db.RowsAffected = int64(len(rows))
	if !many {
		if len(rows) == 0 {
			if stmt.RaiseErrorOnNotFound {
				_ = db.AddError(gorm.ErrRecordNotFound)
			}
			return
		}
		dest.Set(rows[0].Elem())
		return
	}
	out := reflect.MakeSlice(dest.Type(), 0, len(rows))
	ptrs := dest.Type().Elem().Kind() == reflect.Pointer
	for _, r := range rows {
		if ptrs {
			out = reflect.Append(out, r)
		} else {
			out = reflect.Append(out, r.Elem())
		}
	}
	dest.Set(out)
}

// destOf returns the value a query scans into, if it is the model struct or
// a slice of it (or of pointers to it).
func destOf(stmt *gorm.Statement) (reflect.Value, bool, bool) {
	mt := stmt.Schema.ModelType
	rv := reflect.ValueOf(stmt.Dest)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return reflect.Value{}, false, false
	}
	if stmt.Model != nil && stmt.Model != stmt.Dest && reflect.TypeOf(stmt.Model) != reflect.PointerTo(mt) {
		return reflect.Value{}, false, false
	}
	v := rv.Elem()
	switch {
	case v.Type() == mt:
		return v, false, true
	case v.Kind() == reflect.Slice && (v.Type().Elem() == mt || v.Type().Elem() == reflect.PointerTo(mt)):
		return v, true, true
	}
	return reflect.Value{}, false, false
}

// plainRead reports that the statement reads whole rows of its table by
// its WHERE clause alone: what Repository.Get returns.
func plainRead(stmt *gorm.Statement, many bool) bool {
	if stmt.SQL.Len() > 0 || stmt.Unscoped || stmt.Distinct || len(stmt.Selects) > 0 || len(stmt.Omits) > 0 ||
		len(stmt.Joins) > 0 || len(stmt.Preloads) > 0 || stmt.TableExpr != nil || stmt.Table != stmt.Schema.Table ||
		len(stmt.Schema.PrimaryFields) != 1 {
		return false
	}
	for name, c := range stmt.Clauses {
		switch name {
		case "WHERE":
		case "ORDER BY": // First and Last order by the key: one row either way
			ob, ok := c.Expression.(clause.OrderBy)
			if !ok || many || ob.Expression != nil {
				return false
			}
			for _, col := range ob.Columns {
				if !isColumn(stmt, col.Column, stmt.Schema.PrimaryFields[0]) {
					return false
				}
			}
		case "LIMIT":
			l, ok := c.Expression.(clause.Limit)
			if !ok || many || l.Offset != 0 || l.Limit == nil || *l.Limit != 1 {
				return false
			}
		default: // FOR (locking), GROUP BY, SELECT, FROM, anything added by hand
			return false
		}
	}
	return true
}

// wherePKsOnly returns the key values when the WHERE clause is exactly one
// primary-key condition.
func wherePKsOnly(stmt *gorm.Statement) ([]any, bool) {
	exprs, ok := whereExprs(stmt)
	if !ok || len(exprs) != 1 {
		return nil, false
	}
	return pkValues(stmt, exprs[0], stmt.Schema.PrimaryFields[0])
}
