// Package bind is where repositories and the plain-GORM plugin meet: the
// cache keys of a table's rows (one formatting for both, so a write seen by
// the plugin retires what a repository cached), and a registry, per GORM
// configuration, of the tables repositories cache under another namespace
// or cache than the plugin's defaults.
package bind

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/cache"
)

// Handled is the GORM setting a repository puts on its own writes: it
// invalidates them itself, so the plugin leaves them alone.
const Handled = "gormcache:handled"

// Table says how one table's rows are cached.
type Table struct {
	Cache     *cache.Cache
	Namespace string                   // row keys are "<Namespace>:<pk>"
	Uniques   map[string]*schema.Field // columns with "<Namespace>:<col>=<value>" mappings
	// Read, if set, reads rows by primary key through the cache, for the
	// plugin's transparent reads: pointers to model values, in the order of
	// ids, for the ids that exist (duplicates once). ok is false when an id
	// is not a value of the key's type (the read is not served from the cache).
	Read func(ctx context.Context, ids []any) (rows []reflect.Value, ok bool, err error)
	// Model is the model type rows are read as.
	Model reflect.Type
}

// registries maps a *gorm.Config (shared by every session of one opened
// database) to the tables repositories registered on it.
var registries sync.Map // *gorm.Config → *Registry

// Registry holds the tables of one database's repositories.
type Registry struct {
	mu     sync.RWMutex // guards tables
	tables map[string][]Table
}

// For returns the registry of db's configuration, creating it.
func For(db *gorm.DB) *Registry {
	if r, ok := registries.Load(db.Config); ok {
		return r.(*Registry)
	}
	r, _ := registries.LoadOrStore(db.Config, &Registry{tables: map[string][]Table{}})
	return r.(*Registry)
}

// Add records that t caches the rows of table. The same namespace in the
// same cache is recorded once.
func (r *Registry) Add(table string, t Table) {
	uniq := make(map[string]*schema.Field, len(t.Uniques))
	for col, f := range t.Uniques {
		uniq[col] = f
	}
	t.Uniques = uniq
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, old := range r.tables[table] {
		if old.Cache == t.Cache && old.Namespace == t.Namespace {
			if old.Read == nil {
				old.Read, old.Model = t.Read, t.Model
			}
			for col, f := range t.Uniques { // extra unique columns of a second repository
				old.Uniques[col] = f
			}
			r.tables[table][i] = old
			return
		}
	}
	r.tables[table] = append(r.tables[table], t)
}

// Reader returns the first binding of table that reads rows of model.
func (r *Registry) Reader(table string, model reflect.Type) (Table, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, t := range r.tables[table] {
		if t.Read != nil && t.Model == model {
			return t, true
		}
	}
	return Table{}, false
}

// Tables returns the registered bindings of table (nil if none).
func (r *Registry) Tables(table string) []Table {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.tables[table]
}

// UniqueFields returns the columns a lookup by value may be cached for: those
// with a single-column unique constraint (tag unique, or a uniqueIndex no
// other field shares, without a WHERE or an expression).
func UniqueFields(sch *schema.Schema) map[string]*schema.Field {
	out := map[string]*schema.Field{}
	for _, f := range sch.Fields {
		if f.DBName != "" && f.Unique && !f.PrimaryKey {
			out[f.DBName] = f
		}
	}
	for _, idx := range sch.ParseIndexes() {
		if idx.Class != "UNIQUE" || len(idx.Fields) != 1 || idx.Where != "" {
			continue
		}
		if f := idx.Fields[0]; f.Field != nil && f.Expression == "" && f.DBName != "" && !f.PrimaryKey {
			out[f.DBName] = f.Field
		}
	}
	return out
}

// RowKey is the key of the row whose primary key columns hold parts (one
// value per column, in the schema's order).
func RowKey(ns string, parts ...any) string {
	if len(parts) == 1 {
		return ns + ":" + Format(parts[0])
	}
	var b strings.Builder
	b.WriteString(ns)
	for _, p := range parts {
		b.WriteByte(':')
		b.WriteString(partEscaper.Replace(Format(p)))
	}
	return b.String()
}

// GenKey is the key of the table's generation (cache.Generation): every
// write to the table invalidates it, and cached queries are keyed by it. A
// row key never starts with '=' (Format escapes it), and a unique-column
// mapping needs a column name before it.
func GenKey(ns string) string { return ns + ":=gen" }

// QueryKey is the key of a cached query's result under generation gen;
// hash identifies the query's SQL and arguments.
func QueryKey(ns string, gen uint64, hash string) string {
	return ns + ":=q" + strconv.FormatUint(gen, 36) + ":" + hash
}

// UniqueKey is the key mapping a unique column's value to a primary key.
func UniqueKey(ns, col string, v any) string {
	return ns + ":" + col + "=" + Format(v)
}

var partEscaper = strings.NewReplacer(":", "%3A")

// Format renders an id or column value for use in a key: integers in
// decimal, strings escaped so they cannot form a Redis hash tag.
func Format(v any) string {
	switch x := v.(type) {
	case string:
		return escape(x)
	case int:
		return strconv.FormatInt(int64(x), 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case uint:
		return strconv.FormatUint(uint64(x), 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case uint32:
		return strconv.FormatUint(uint64(x), 10)
	case fmt.Stringer:
		return escape(x.String())
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10)
	case reflect.String:
		return escape(rv.String())
	}
	return escape(fmt.Sprint(v))
}

// keyEscaper keeps values from forming a Redis hash tag ('{', '}') and
// from containing '=', which separates a unique column from its value in the
// mapping keys ("<ns>:<col>=<value>"): a row key never collides with one.
var keyEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D", "=", "%3D")

func escape(s string) string {
	if !strings.ContainsAny(s, "%{}=") {
		return s
	}
	return keyEscaper.Replace(s)
}

// Caches returns first and every other cache a registered table uses.
func (r *Registry) Caches(first *cache.Cache) []*cache.Cache {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := []*cache.Cache{first}
	seen := map[*cache.Cache]bool{first: true}
	for _, ts := range r.tables {
		for _, t := range ts {
			if !seen[t.Cache] {
				seen[t.Cache] = true
				out = append(out, t.Cache)
			}
		}
	}
	return out
}
