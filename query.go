package gormcache

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/bind"
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

// queryIDs is a cached query's result: its rows' primary keys, in order.
type queryIDs struct {
	Ints []int64  // integer keys
	Strs []string // string keys
}

func (q queryIDs) values() []any {
	out := make([]any, 0, len(q.Ints)+len(q.Strs))
	for _, v := range q.Ints {
		out = append(out, v)
	}
	for _, v := range q.Strs {
		out = append(out, v)
	}
	return out
}

// serveQuery answers a Cached query from the query cache, and reports
// whether it did.
func (p *Plugin) serveQuery(db *gorm.DB, dest reflect.Value, many bool) bool {
	stmt := db.Statement
	if !listable(stmt) {
		return false
	}
	t, ok := p.reg.Reader(stmt.Table, stmt.Schema.ModelType)
	if !ok {
		return false
	}
	ctx := stmt.Context
	gen, ok := p.generation(ctx, t)
	if !ok {
		return false
	}
	callbacks.BuildQuerySQL(db)
	if db.Error != nil {
		return false
	}
	query := stmt.SQL.String()
	hash, ok := queryHash(query, stmt.Vars)
	if !ok || !deterministic(query) {
		return false
	}
	vars := stmt.Vars
	ids, err := cache.Get(ctx, t.Cache, bind.QueryKey(t.Namespace, gen, hash), func(ctx context.Context, _ string) (queryIDs, uint64, error) {
		p.st.queryLoads.Add(1)
		return scanIDs(ctx, stmt, query, vars)
	})
	if err != nil {
		_ = db.AddError(err)
		return true
	}
	rows, ok, err := t.Read(ctx, ids.values())
	if !ok {
		return false
	}
	p.st.queries.Add(1)
	fill(db, dest, many, rows, err)
	return true
}

// generation reads the table's generation, starting it if the table was
// never written since Redis last held it. false: Redis cannot say; the
// query goes to the database.
func (p *Plugin) generation(ctx context.Context, t bind.Table) (uint64, bool) {
	key := bind.GenKey(t.Namespace)
	g, err := t.Cache.Generation(ctx, key)
	if err == nil && g == 0 {
		if err = t.Cache.Invalidate(ctx, key, 0); err == nil {
			g, err = t.Cache.Generation(ctx, key)
		}
	}
	return g, err == nil && g != 0
}

// listable reports that the statement reads whole rows of its own table,
// filtered, ordered and limited in any way, but reading no other table.
func listable(stmt *gorm.Statement) bool {
	if stmt.SQL.Len() > 0 || stmt.Unscoped || stmt.Distinct || len(stmt.Selects) > 0 || len(stmt.Omits) > 0 ||
		len(stmt.Joins) > 0 || len(stmt.Preloads) > 0 || stmt.TableExpr != nil || stmt.Table != stmt.Schema.Table ||
		len(stmt.Schema.PrimaryFields) != 1 {
		return false
	}
	switch stmt.Schema.PrimaryFields[0].FieldType.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.String:
	default:
		return false
	}
	for name, c := range stmt.Clauses {
		switch name {
		case "WHERE", "LIMIT":
		case "ORDER BY":
			if ob, ok := c.Expression.(clause.OrderBy); !ok || ob.Expression != nil {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// deterministic refuses SQL whose result depends on more than the table
// and the arguments: a subquery or join (another table, whose writes do not
// move this table's generation), or a volatile function.
func deterministic(query string) bool {
	q := strings.ToLower(query)
	if strings.Count(q, "select") != 1 || strings.Contains(q, "join") {
		return false
	}
	for _, f := range volatile {
		if strings.Contains(q, f) {
			return false
		}
	}
	return true
}

var volatile = []string{"now(", "current_", "localtime", "clock_timestamp", "statement_timestamp", "transaction_timestamp",
	"timeofday", "random(", "nextval", "currval", "lastval", "gen_random", "uuid_generate", "txid", "pg_", "setseed"}

// queryHash identifies a query by its SQL and its arguments, each with its
// type, so that 1 and "1" never share a key. false for an argument it
// cannot render faithfully.
func queryHash(query string, vars []any) (string, bool) {
	h := sha256.New()
	h.Write([]byte(query))
	for _, v := range vars {
		if dv, ok := v.(driver.Valuer); ok {
			x, err := dv.Value()
			if err != nil {
				return "", false
			}
			v = x
		}
		switch x := v.(type) {
		case time.Time:
			fmt.Fprintf(h, "\x00time:%s", x.UTC().Format(time.RFC3339Nano))
		case []byte:
			fmt.Fprintf(h, "\x00bytes:%x", x)
		case nil, bool, string, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
			fmt.Fprintf(h, "\x00%T:%v", x, x)
		default:
			rv := reflect.ValueOf(v)
			if rv.Kind() != reflect.Slice {
				return "", false
			}
			fmt.Fprintf(h, "\x00slice%d", rv.Len())
			for i := 0; i < rv.Len(); i++ {
				e := rv.Index(i).Interface()
				switch e.(type) {
				case bool, string, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
					fmt.Fprintf(h, "\x00%T:%v", e, e)
				default:
					return "", false
				}
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), true
}

// scanIDs runs the query and keeps its rows' primary keys.
func scanIDs(ctx context.Context, stmt *gorm.Statement, query string, vars []any) (queryIDs, uint64, error) {
	var out queryIDs
	rows, err := stmt.ConnPool.QueryContext(ctx, query, vars...)
	if err != nil {
		return out, 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return out, 0, err
	}
	pk := stmt.Schema.PrimaryFields[0]
	dst := make([]any, len(cols))
	at := -1
	for i, c := range cols {
		dst[i] = new(sql.RawBytes)
		if c == pk.DBName {
			at = i
		}
	}
	if at < 0 {
		return out, 0, fmt.Errorf("gormcache: cached query of %s returned no %s column", stmt.Table, pk.DBName)
	}
	isStr := pk.FieldType.Kind() == reflect.String
	var n int64
	var s string
	if isStr {
		dst[at] = &s
	} else {
		dst[at] = &n
	}
	for rows.Next() {
		if err := rows.Scan(dst...); err != nil {
			return out, 0, err
		}
		if isStr {
			out.Strs = append(out.Strs, s)
		} else {
			out.Ints = append(out.Ints, n)
		}
	}
	return out, 0, rows.Err()
}
