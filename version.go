package gormcache

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/internal/bind"
	"github.com/gormcache/gormcache/repository"
)

// Optimistic locking for plain GORM writes of versioned models (a field of
// type repository.Version), so that versions keep moving, in order,
// whoever writes:
//
//   - Create: a row whose version is 0 is inserted at version 1.
//   - An update of one row by model (db.Save(&d), db.Model(&d).Updates(...),
//     db.Model(&d).Update(col, x), UpdateColumn(s)) whose model carries a
//     nonzero version v runs "SET ..., version = v+1 ... WHERE pk = ? AND
//     version = v". Zero rows matched is an error wrapping
//     repository.ErrConflict: nothing was written, nothing is invalidated,
//     the model keeps version v, AfterUpdate hooks do not run, associations
//     are not saved after it (those saved before the UPDATE roll back with
//     GORM's default transaction) and db.Save does not fall through to an
//     INSERT (it would upsert the stale row). On success the model holds
//     v+1 and the row's cache entry is invalidated at exactly v+1, so it is
//     cacheable again at once.
//   - An update of any other shape (several rows, a model without a primary
//     key or whose version is 0) gets "version = version + 1"; its rows are
//     retired, since their new versions are unknown.
//   - A delete of one row by model with a nonzero version v adds "AND
//     version = v" (ErrConflict when nothing matched) and leaves a tombstone
//     at v+1. A soft delete (gorm.DeletedAt) also sets version = v+1, and the
//     model holds it afterwards; a soft delete of other shapes sets version =
//     version + 1.
//
// A statement is left alone when the caller put the version column in the
// SET itself (a map key, a nonzero version in a struct other than the
// model, a clause.Set), when it omits the version column (Omit, or a field
// that is not updatable), when it names another table than the model's
// (db.Table), and for a Repository's own writes, which lock themselves.
// Upserts (ON CONFLICT DO UPDATE, db.Save of a slice) write the version
// they are given: InstallVersionTrigger keeps those ordered too.

// versionSetting is the statement setting through which optimistic locking
// tells the write path the version a write committed.
const versionSetting = "gormcache:version"

// Statement settings private to the locking callbacks: the version the
// WHERE clause requires (the after callbacks check that a row matched), and
// that the SET clause is the callbacks' own (GORM drops the one it builds
// after the UPDATE; so must they).
const (
	lockSetting   = "gormcache:version_lock"
	ownSetSetting = "gormcache:version_own_set"
)

var versionFields sync.Map // *schema.Schema → *schema.Field (nil: unversioned)

// versionField returns the model's repository.Version column, or nil.
func versionField(sch *schema.Schema) *schema.Field {
	if sch == nil {
		return nil
	}
	if f, ok := versionFields.Load(sch); ok {
		return f.(*schema.Field)
	}
	var found *schema.Field
	for _, f := range sch.Fields {
		if f.FieldType == reflect.TypeFor[repository.Version]() && f.DBName != "" {
			found = f
			break
		}
	}
	versionFields.Store(sch, found)
	return found
}

// lockedVersion returns the version a write under optimistic locking
// committed, if the locking callbacks recorded one.
func lockedVersion(stmt *gorm.Statement) (uint64, bool) {
	v, ok := stmt.Settings.Load(versionSetting)
	if !ok {
		return 0, false
	}
	n, ok := v.(uint64)
	return n, ok
}

// registerVersioning adds the optimistic-locking callbacks for models with a
// repository.Version column.
// db is the database being initialized (register on db.Callback()).
//
// The checks run right after GORM's UPDATE or DELETE, before it saves
// associations or calls AfterUpdate/AfterDelete hooks, and before the
// plugin's own write callbacks (which must not invalidate a conflict) and
// GORM's commit of its default transaction (which must roll a conflict
// back).
func (p *Plugin) registerVersioning(db *gorm.DB) error {
	cb := db.Callback()
	return errors.Join(
		cb.Create().After("gorm:before_create").Before("gorm:create").Register("gormcache:version_create", versionCreate),
		cb.Update().After("gorm:before_update").Before("gorm:update").Register("gormcache:version_update", versionUpdate),
		cb.Update().After("gorm:update").Before("gorm:save_after_associations").Register("gormcache:version_check_update", versionCheckUpdate),
		cb.Delete().After("gorm:before_delete").Before("gorm:delete").Register("gormcache:version_delete", versionDelete),
		cb.Delete().After("gorm:delete").Before("gorm:after_delete").Register("gormcache:version_check_delete", versionCheckDelete),
	)
}

// versioned returns the version column of a statement the callbacks handle:
// not failed, not built yet, on a versioned model's own table (another
// table may not have the column) and not a repository's write.
func versioned(db *gorm.DB) *schema.Field {
	stmt := db.Statement
	if db.Error != nil || stmt.Schema == nil || stmt.SQL.Len() > 0 || stmt.Table != stmt.Schema.Table {
		return nil
	}
	if h, ok := db.Get(bind.Handled); ok && h == true {
		return nil
	}
	return versionField(stmt.Schema)
}

// omitted reports whether the statement leaves the version column out
// (Omit, or a field GORM does not write on this operation).
func omitted(stmt *gorm.Statement, f *schema.Field, create bool) bool {
	cols, _ := stmt.SelectAndOmitColumns(create, !create)
	sel, ok := cols[f.DBName]
	return ok && !sel
}

// versionCreate creates rows whose version is 0 at version 1, as
// repository.Create does.
func versionCreate(db *gorm.DB) {
	f := versioned(db)
	if f == nil || omitted(db.Statement, f, true) {
		return
	}
	stmt := db.Statement
	switch d := stmt.Dest.(type) {
	case map[string]any:
		initMap(d, f)
		return
	case []map[string]any:
		for _, m := range d {
			initMap(m, f)
		}
		return
	}
	eachRow(stmt.ReflectValue, func(rv reflect.Value) bool {
		if rv.Type() != stmt.Schema.ModelType || !rv.CanAddr() {
			return true
		}
		if _, zero := f.ValueOf(stmt.Context, rv); zero {
			_ = db.AddError(f.Set(stmt.Context, rv, uint64(1)))
		}
		return true
	})
}

func initMap(m map[string]any, f *schema.Field) {
	_, byCol := m[f.DBName]
	_, byName := m[f.Name]
	if !byCol && !byName {
		m[f.DBName] = uint64(1)
	}
}

// versionUpdate adds the version to the SET clause and, for one row whose
// version the model carries, to the WHERE clause. It builds the SET as
// GORM's update callback would (callbacks.ConvertToAssignments) and adds
// it to the statement, which GORM then uses as is: the version must be in
// the SET whatever Select, the Dest's type or its zero fields say.
func versionUpdate(db *gorm.DB) {
	stmt := db.Statement
	stmt.Settings.Delete(versionSetting) // a reused statement's
	f := versioned(db)
	if f == nil || omitted(stmt, f, false) {
		return
	}
	// Read first: building the SET copies the Dest's fields into the model.
	old, one := oneRow(stmt, f)
	set, own := assignments(db)
	if len(set) == 0 {
		return // nothing to update: GORM runs no statement
	}
	if own {
		stmt.Settings.Store(ownSetSetting, true)
	}
	i := assignmentOf(set, f.DBName)
	if i >= 0 && callerVersion(stmt, set[i], own) {
		stmt.AddClause(set)
		return
	}
	a := clause.Assignment{Column: clause.Column{Name: f.DBName}, Value: bumpExpr(f)}
	if one {
		a.Value = old + 1
		stmt.AddClause(clause.Where{Exprs: []clause.Expression{versionIs(f, old)}})
		stmt.Settings.Store(versionSetting, old+1)
		stmt.Settings.Store(lockSetting, old)
	}
	if i >= 0 {
		set[i] = a
	} else {
		set = append(set, a)
	}
	stmt.AddClause(set)
}

// assignments returns the SET clause the caller gave (own false), or the one
// GORM would build (own true).
func assignments(db *gorm.DB) (clause.Set, bool) {
	if c, ok := db.Statement.Clauses["SET"]; ok {
		set, _ := c.Expression.(clause.Set)
		return append(clause.Set(nil), set...), false
	}
	set := callbacks.ConvertToAssignments(db.Statement)
	if db.Error != nil {
		return nil, true
	}
	return set, true
}

func assignmentOf(set clause.Set, col string) int {
	for i, a := range set {
		if a.Column.Name == col && (a.Column.Table == "" || a.Column.Table == clause.CurrentTable) {
			return i
		}
	}
	return -1
}

// callerVersion reports whether a version assignment GORM built is the
// caller's: from a clause.Set, a map key, or a nonzero version in a struct
// other than the model. The model's own version (db.Save writes every
// column) is the version it was read at, and a zero one is no version.
func callerVersion(stmt *gorm.Statement, a clause.Assignment, own bool) bool {
	if !own || reflect.Indirect(reflect.ValueOf(stmt.Dest)).Kind() == reflect.Map {
		return true
	}
	if sameRef(stmt.Dest, stmt.Model) {
		return false
	}
	v := reflect.ValueOf(a.Value)
	return v.IsValid() && !v.IsZero()
}

// sameRef is stmt.Dest == stmt.Model without panicking on values that are
// not comparable.
func sameRef(a, b any) bool {
	ta := reflect.TypeOf(a)
	return ta != nil && ta == reflect.TypeOf(b) && ta.Comparable() && a == b
}

// oneRow returns the version of the statement's model when the statement
// is about that one row: a struct of the model's type with its primary key
// and a nonzero version.
func oneRow(stmt *gorm.Statement, f *schema.Field) (uint64, bool) {
	rv := stmt.ReflectValue
	if rv.Kind() != reflect.Struct || rv.Type() != stmt.Schema.ModelType {
		return 0, false
	}
	if _, ok := pkOf(stmt, rv); !ok {
		return 0, false
	}
	x, zero := f.ValueOf(stmt.Context, rv)
	if zero {
		return 0, false
	}
	return reflect.ValueOf(x).Convert(reflect.TypeFor[uint64]()).Uint(), true
}

func versionIs(f *schema.Field, v uint64) clause.Expression {
	return clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: f.DBName}, Value: v}
}

// bumpExpr is "<table>.version + 1".
func bumpExpr(f *schema.Field) clause.Expression {
	return clause.Expr{SQL: "? + 1", Vars: []any{clause.Column{Table: clause.CurrentTable, Name: f.DBName}}}
}

// versionCheckUpdate runs after GORM's UPDATE: it drops the SET clause
// versionUpdate added (as GORM drops its own) and checks a locked update.
func versionCheckUpdate(db *gorm.DB) {
	if _, ok := db.Statement.Settings.LoadAndDelete(ownSetSetting); ok {
		delete(db.Statement.Clauses, "SET")
	}
	checkLocked(db, true)
}

// versionDelete adds the version to a delete of one row by model, and has
// a soft delete (an UPDATE GORM builds from the model's DeleteClauses) raise
// the version: GORM replaces the SET clause's expression with its own
// assignment but keeps the clause's AfterExpression, so the version
// assignment goes there (a hard delete does not build a SET).
func versionDelete(db *gorm.DB) {
	stmt := db.Statement
	stmt.Settings.Delete(versionSetting)
	f := versioned(db)
	if f == nil {
		return
	}
	col := clause.Column{Name: f.DBName}
	bump := clause.Expr{SQL: ",? = ?", Vars: []any{col, bumpExpr(f)}}
	if old, ok := oneRow(stmt, f); ok {
		bump.Vars[1] = old + 1
		stmt.AddClause(clause.Where{Exprs: []clause.Expression{versionIs(f, old)}})
		stmt.Settings.Store(versionSetting, old+1) // the tombstone's version
		stmt.Settings.Store(lockSetting, old)
	}
	if _, ok := stmt.Clauses["SET"]; !ok && !stmt.Unscoped {
		stmt.Clauses["SET"] = clause.Clause{Name: "SET", AfterExpression: bump}
		stmt.Settings.Store(ownSetSetting, true)
	}
}

// versionCheckDelete runs after GORM's DELETE: it drops the SET clause
// versionDelete added, noting whether a soft delete used it, and checks a
// locked delete.
func versionCheckDelete(db *gorm.DB) {
	soft := false
	if _, ok := db.Statement.Settings.LoadAndDelete(ownSetSetting); ok {
		soft = db.Statement.Clauses["SET"].Expression != nil
		delete(db.Statement.Clauses, "SET")
	}
	checkLocked(db, soft)
}

// checkLocked finishes a locked write: zero rows matched is a conflict. The
// model ends at the new version if the write succeeded and kept the row (an
// update, a soft delete), else at the version it was read at (building the
// SET may have copied a Dest's version into it). After an error the write
// may still have committed, so the setting stays: the row is invalidated at
// the new version, as a Repository does.
func checkLocked(db *gorm.DB, kept bool) {
	stmt := db.Statement
	x, ok := stmt.Settings.LoadAndDelete(lockSetting)
	if !ok || db.DryRun {
		return
	}
	old := x.(uint64)
	now := old
	switch {
	case db.Error != nil:
	case db.RowsAffected == 0:
		conflict(db, old)
	case kept:
		now = old + 1
	}
	if rv := stmt.ReflectValue; rv.CanAddr() {
		_ = db.AddError(versionField(stmt.Schema).Set(stmt.Context, rv, now))
	}
}

// conflict fails a locked write that matched no row. Nothing was written,
// so the plugin's write callbacks must not invalidate anything: the
// statement is marked as handled, as a Repository marks its writes.
func conflict(db *gorm.DB, old uint64) {
	stmt := db.Statement
	stmt.Settings.Delete(versionSetting)
	stmt.Settings.Store(bind.Handled, true)
	pk, _ := pkOf(stmt, stmt.ReflectValue)
	_ = db.AddError(fmt.Errorf("%w: %s %v is no longer at version %d (changed or deleted since it was read)",
		repository.ErrConflict, stmt.Table, pk, old))
}
