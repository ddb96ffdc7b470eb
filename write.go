package gormcache

import (
	"reflect"
	"sync"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/bind"
	"github.com/gormcache/gormcache/internal/failpoint"
)

// The write path: after GORM ran a create, update, delete or raw statement,
// collect what it changed and queue it on the transaction (or apply it at
// once outside one).

func (p *Plugin) afterCreate(db *gorm.DB) { p.collect(db, p.createKeys) }
func (p *Plugin) afterUpdate(db *gorm.DB) { p.collect(db, p.updateKeys) }
func (p *Plugin) afterDelete(db *gorm.DB) { p.collect(db, p.deleteKeys) }

// changes is what one statement changed, per cache: the keys to invalidate,
// or whole caches to retire when the rows cannot be known.
type changes struct {
	invs   map[*cache.Cache][]cache.Invalidation
	retire map[*cache.Cache]bool
	strict bool // a strict model's rows: wait for every instance
}

func (ch *changes) add(c *cache.Cache, inv cache.Invalidation) {
	if ch.invs == nil {
		ch.invs = map[*cache.Cache][]cache.Invalidation{}
	}
	ch.invs[c] = append(ch.invs[c], inv)
}

func (ch *changes) retireAll(cs []*cache.Cache) {
	if ch.retire == nil {
		ch.retire = map[*cache.Cache]bool{}
	}
	for _, c := range cs {
		ch.retire[c] = true
	}
}

func (ch *changes) empty() bool { return len(ch.invs) == 0 && len(ch.retire) == 0 }

// collect runs keys on a statement that executed and routes the result.
func (p *Plugin) collect(db *gorm.DB, keys func(stmt *gorm.Statement, ch *changes)) {
	stmt := db.Statement
	if db.DryRun || stmt.SQL.Len() == 0 {
		return // nothing was sent to the database
	}
	if h, ok := db.Get(bind.Handled); ok && h == true {
		return // a repository's write: it invalidates it itself
	}
	if db.RowsAffected == 0 {
		if db.Error == nil {
			return // nothing changed
		}
		if _, inTx := trackedOf(stmt.ConnPool); inTx {
			// The statement failed in a transaction: PostgreSQL undoes it
			// (the transaction can only roll back, or back to a
			// savepoint). Outside one, its outcome may be unknown (a
			// connection lost after it ran), so it is invalidated.
			return
		}
	}
	var ch changes
	keys(stmt, &ch)
	p.touched(stmt, &ch)
	ch.strict = stmt.Schema != nil && p.strictModels[stmt.Schema.ModelType]
	p.route(db, &ch)
}

// touched adds the generation invalidation of each binding of the
// statement's table: any write may change what a cached query of it returns.
func (p *Plugin) touched(stmt *gorm.Statement, ch *changes) {
	if ch.invs == nil || stmt.Schema == nil {
		return
	}
	for _, t := range p.tables(stmt) {
		if len(ch.invs[t.Cache]) > 0 && !ch.retire[t.Cache] {
			ch.add(t.Cache, cache.Invalidation{Key: bind.GenKey(t.Namespace)})
		}
	}
}

// route queues ch on the statement's tracked transaction, or applies it now
// when the statement ran outside a transaction (it has committed).
func (p *Plugin) route(db *gorm.DB, ch *changes) {
	if ch.empty() {
		return
	}
	tx, inTx := trackedOf(db.Statement.ConnPool)
	if inTx && tx == nil {
		_ = db.AddError(ErrUntrackedTx)
		return
	}
	var pending []pendingInv
	for c, invs := range ch.invs {
		for _, inv := range invs {
			pending = append(pending, pendingInv{c, inv})
		}
	}
	if tx != nil {
		tx.mu.Lock()
		tx.written = true
		tx.strict = tx.strict || ch.strict
		tx.pending = append(tx.pending, pending...)
		for c := range ch.retire {
			if tx.retire == nil {
				tx.retire = map[*cache.Cache]bool{}
			}
			tx.retire[c] = true
		}
		tx.mu.Unlock()
		return
	}
	failpoint.Hit(db.Statement.Context, failpoint.AfterCommitBeforeInvalidate, "")
	if err := p.apply(db.Statement.Context, pending, ch.retire, ch.strict); err != nil {
		_ = db.AddError(err)
	}
}

// trackedOf returns the tracked transaction a statement runs in. inTx
// reports a transaction of any kind; a nil tx with inTx set is one the
// plugin did not begin.
func trackedOf(cp gorm.ConnPool) (tx *trackedTx, inTx bool) {
	for {
		p, ok := cp.(*gorm.PreparedStmtTX) // a PrepareStmt session in a transaction, or one on a PrepareStmt database
		if !ok {
			break
		}
		cp = p.Tx
	}
	switch x := cp.(type) {
	case *trackedTx:
		return x, true
	case gorm.TxCommitter:
		return nil, true
	}
	return nil, false
}

// tables returns the bindings of the statement's table: those repositories
// registered, else the plugin's cache under the table's name.
func (p *Plugin) tables(stmt *gorm.Statement) []bind.Table {
	if ts := p.reg.Tables(stmt.Table); len(ts) > 0 {
		return ts
	}
	return []bind.Table{{Cache: p.Cache, Namespace: stmt.Table, Uniques: uniquesOf(stmt.Schema)}}
}

var uniqueCache sync.Map // *schema.Schema → map[string]*schema.Field

func uniquesOf(sch *schema.Schema) map[string]*schema.Field {
	if u, ok := uniqueCache.Load(sch); ok {
		return u.(map[string]*schema.Field)
	}
	u := bind.UniqueFields(sch)
	uniqueCache.Store(sch, u)
	return u
}

// allCaches is every cache a write could concern: the plugin's and those of
// registered repositories.
func (p *Plugin) allCaches() []*cache.Cache {
	return p.reg.Caches(p.Cache)
}

// known reports whether the statement is about a parsed model's table.
func known(stmt *gorm.Statement) bool {
	return stmt.Schema != nil && stmt.Table != "" && len(stmt.Schema.PrimaryFields) > 0 &&
		(stmt.Table == stmt.Schema.Table || stmt.TableExpr == nil)
}

// createKeys: the rows GORM inserted are in the statement's value, with the
// primary keys the database returned.
func (p *Plugin) createKeys(stmt *gorm.Statement, ch *changes) {
	if !known(stmt) {
		ch.retireAll(p.allCaches())
		return
	}
	_, upsert := stmt.Clauses["ON CONFLICT"]
	ok := eachRow(stmt.ReflectValue, func(rv reflect.Value) bool {
		pk, ok := pkOf(stmt, rv)
		if !ok {
			return false
		}
		for _, t := range p.tables(stmt) {
			ch.add(t.Cache, rowInvalidation(stmt, t, pk, versionOf(stmt, rv, upsert)))
			for col, f := range t.Uniques {
				v, _ := f.ValueOf(stmt.Context, rv)
				ch.add(t.Cache, cache.Invalidation{Key: bind.UniqueKey(t.Namespace, col, v)})
			}
		}
		return true
	})
	if !ok {
		ch.retireAll(p.allCaches())
	}
}

// updateKeys: the rows are those the WHERE clause names by primary key; the
// unique values they may now hold are in the SET clause.
func (p *Plugin) updateKeys(stmt *gorm.Statement, ch *changes) {
	pks, ok := wherePKs(stmt)
	if !ok {
		ch.retireAll(p.allCaches())
		return
	}
	set, _ := stmt.Clauses["SET"].Expression.(clause.Set)
	newVer, lockedVer := lockedVersion(stmt)
	for _, t := range p.tables(stmt) {
		for _, pk := range pks {
			ch.add(t.Cache, rowInvalidation(stmt, t, pk, verIf(newVer, lockedVer)))
		}
		for _, a := range set {
			f := t.Uniques[a.Column.Name]
			if f == nil {
				continue
			}
			if !plainValue(a.Value) {
				ch.retireAll([]*cache.Cache{t.Cache}) // a cached "not found" of the new value would stay
				continue
			}
			ch.add(t.Cache, cache.Invalidation{Key: bind.UniqueKey(t.Namespace, f.DBName, a.Value)})
		}
	}
}

// deleteKeys: the rows are those the WHERE clause names by primary key.
// Mappings of their unique values are checked against the row on every
// read, so they need no invalidation.
func (p *Plugin) deleteKeys(stmt *gorm.Statement, ch *changes) {
	pks, ok := wherePKs(stmt)
	if !ok {
		ch.retireAll(p.allCaches())
		return
	}
	old, locked := lockedVersion(stmt)
	for _, t := range p.tables(stmt) {
		for _, pk := range pks {
			ch.add(t.Cache, rowInvalidation(stmt, t, pk, verIf(old, locked)))
		}
	}
}

// version says how a row's invalidation is versioned.
type version struct {
	n     uint64 // the version the write committed (0 with retire or unversioned)
	known bool
}

func verIf(n uint64, ok bool) version { return version{n: n, known: ok && n > 0} }

// rowInvalidation is the invalidation of one row's key. A versioned model's
// entry is invalidated at the version the write committed when the plugin
// knows it; otherwise it is retired (stamped above every cached version),
// since a plain write may have changed the row without raising its version.
func rowInvalidation(stmt *gorm.Statement, t bind.Table, pk []any, v version) cache.Invalidation {
	inv := cache.Invalidation{Key: bind.RowKey(t.Namespace, pk...)}
	switch {
	case versionField(stmt.Schema) == nil:
	case v.known:
		inv.Version = v.n
	default:
		inv.Retire = true
	}
	return inv
}

// versionOf is the version a created row carries, when the statement could
// not have kept an older row (an upsert may have).
func versionOf(stmt *gorm.Statement, rv reflect.Value, upsert bool) version {
	f := versionField(stmt.Schema)
	if f == nil || upsert {
		return version{}
	}
	x, zero := f.ValueOf(stmt.Context, rv)
	if zero {
		return version{}
	}
	return verIf(reflect.ValueOf(x).Convert(reflect.TypeFor[uint64]()).Uint(), true)
}

// eachRow calls f on each struct of v (a struct, or a slice or array of
// structs or pointers to them). It returns false if v holds something else
// or f returned false.
func eachRow(v reflect.Value, f func(reflect.Value) bool) bool {
	v = reflect.Indirect(v)
	switch v.Kind() {
	case reflect.Struct:
		return f(v)
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			e := reflect.Indirect(v.Index(i))
			if e.Kind() != reflect.Struct || !f(e) {
				return false
			}
		}
		return true
	}
	return false
}

// pkOf returns the primary-key values of the row rv; false if one is zero.
func pkOf(stmt *gorm.Statement, rv reflect.Value) ([]any, bool) {
	pks := stmt.Schema.PrimaryFields
	out := make([]any, len(pks))
	for i, f := range pks {
		v, zero := f.ValueOf(stmt.Context, rv)
		if zero {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}
