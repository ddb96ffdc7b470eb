// Package qcache is the query cache shared by the plain-GORM plugin and
// repositories: which statements may be cached, the key of a statement
// (its SQL with its bound arguments), the table's generation it is cached
// under, and the query that lists a statement's primary keys on a miss.
package qcache

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
	"gorm.io/gorm/clause"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/bind"
)

// IDs is a cached query's result: its rows' primary keys, in order.
type IDs struct {
	Ints []int64  // integer keys
	Strs []string // string keys
}

func (q IDs) Values() []any {
	out := make([]any, 0, len(q.Ints)+len(q.Strs))
	for _, v := range q.Ints {
		out = append(out, v)
	}
	for _, v := range q.Strs {
		out = append(out, v)
	}
	return out
}

// Generation reads the generation of the table cached under ns in c,
// starting it if the table was never written since Redis last held it.
// false: Redis cannot say, and the query must go to the database.
func Generation(ctx context.Context, c *cache.Cache, ns string) (uint64, bool) {
	key := bind.GenKey(ns)
	g, err := c.Generation(ctx, key)
	if err == nil && g == 0 {
		if err = c.Invalidate(ctx, key, 0); err == nil {
			g, err = c.Generation(ctx, key)
		}
	}
	return g, err == nil && g != 0
}

// Key returns the cache key of a built statement under generation gen, and
// false if the statement may not be cached (Listable must hold, and its SQL
// must be Deterministic and its arguments renderable).
func Key(stmt *gorm.Statement, ns string, gen uint64) (string, bool) {
	query := stmt.SQL.String()
	if !Deterministic(query) {
		return "", false
	}
	h, ok := Hash(query, stmt.Vars)
	if !ok {
		return "", false
	}
	return bind.QueryKey(ns, gen, h), true
}

// Listable reports that the statement reads whole rows of its own table,
// filtered, ordered and limited in any way, but reading no other table.
func Listable(stmt *gorm.Statement) bool {
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

// Deterministic refuses SQL whose result depends on more than the table
// and the arguments: a subquery or join (another table, whose writes do not
// move this table's generation), or a volatile function.
func Deterministic(query string) bool {
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

// Hash identifies a query by its SQL and its arguments, each with its
// type, so that 1 and "1" never share a key. false for an argument it
// cannot render faithfully.
func Hash(query string, vars []any) (string, bool) {
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

// ScanIDs runs the query and keeps its rows' primary keys.
func ScanIDs(ctx context.Context, conn gorm.ConnPool, stmt *gorm.Statement, query string, vars []any) (IDs, uint64, error) {
	var out IDs
	rows, err := conn.QueryContext(ctx, query, vars...)
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
