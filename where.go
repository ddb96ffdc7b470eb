package gormcache

import (
	"reflect"
	"regexp"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// wherePKs returns the primary keys of every row the statement's WHERE
// clause can match, when the clause names them: its top-level conditions
// are ANDed, so one that restricts the primary key to a set of values
// bounds the rows to that set, whatever the others say. GORM puts the model's
// primary key there (db.Model(&u), db.Save(&u), db.Delete(&u)), and so do
// db.Delete(&User{}, 5), Where(&User{ID: 5}) and Where("id = ?", 5) or
// Where("id IN ?", ids). Anything else (no such condition, an OR at the top
// level, a value of another type than the key's) is false: the rows cannot
// be known without a read.
func wherePKs(stmt *gorm.Statement) ([][]any, bool) {
	if !known(stmt) {
		return nil, false
	}
	exprs, ok := whereExprs(stmt)
	if !ok {
		return nil, false
	}
	for _, e := range exprs {
		if _, ok := e.(clause.OrConditions); ok {
			return nil, false
		}
	}
	pks := stmt.Schema.PrimaryFields
	if len(pks) == 1 {
		for _, e := range exprs {
			if vals, ok := pkValues(stmt, e, pks[0]); ok {
				out := make([][]any, len(vals))
				for i, v := range vals {
					out[i] = []any{v}
				}
				return out, true
			}
		}
		return nil, false
	}
	// A composite key: one equality per key column.
	key := make([]any, len(pks))
	for i, f := range pks {
		found := false
		for _, e := range exprs {
			if vals, ok := pkValues(stmt, e, f); ok && len(vals) == 1 {
				key[i], found = vals[0], true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return [][]any{key}, true
}

// whereExprs returns the top-level conditions of the statement's WHERE
// clause (a single AND group is unwrapped, as GORM builds it).
func whereExprs(stmt *gorm.Statement) ([]clause.Expression, bool) {
	w, ok := stmt.Clauses["WHERE"].Expression.(clause.Where)
	if !ok {
		return nil, false
	}
	exprs := w.Exprs
	if len(exprs) == 1 {
		if and, ok := exprs[0].(clause.AndConditions); ok {
			exprs = and.Exprs
		}
	}
	return exprs, true
}

// pkValues returns the values e restricts the column of f to.
func pkValues(stmt *gorm.Statement, e clause.Expression, f *schema.Field) ([]any, bool) {
	switch x := e.(type) {
	case clause.Eq:
		if !isColumn(stmt, x.Column, f) {
			return nil, false
		}
		return keyValues(f, []any{x.Value})
	case clause.IN:
		if !isColumn(stmt, x.Column, f) {
			return nil, false
		}
		return keyValues(f, x.Values)
	case clause.Expr:
		if len(x.Vars) != 1 {
			return nil, false
		}
		m := simpleCond.FindStringSubmatch(x.SQL)
		if m == nil || (m[1] != "" && m[1] != stmt.Table) || m[2] != f.DBName {
			return nil, false
		}
		return keyValues(f, []any{x.Vars[0]})
	}
	return nil, false
}

// simpleCond is "col = ?", "table.col = ?", "col IN ?", "col IN (?)", with
// optional double quotes.
var simpleCond = regexp.MustCompile(`(?i)^\s*(?:"?(\w+)"?\.)?"?(\w+)"?\s*(?:=|in)\s*(?:\?|\(\s*\?\s*\))\s*$`)

// isColumn reports whether col names the column of f in the statement's
// table.
func isColumn(stmt *gorm.Statement, col any, f *schema.Field) bool {
	switch c := col.(type) {
	case string:
		if i := strings.LastIndexByte(c, '.'); i >= 0 {
			if strings.Trim(c[:i], `"`) != stmt.Table {
				return false
			}
			c = c[i+1:]
		}
		return strings.Trim(c, `"`) == f.DBName
	case clause.Column:
		if c.Raw || c.Alias != "" {
			return false
		}
		if c.Table != "" && c.Table != clause.CurrentTable && c.Table != stmt.Table {
			return false
		}
		if c.Name == clause.PrimaryKey {
			return len(stmt.Schema.PrimaryFields) == 1 && stmt.Schema.PrimaryFields[0] == f
		}
		return c.Name == f.DBName
	}
	return false
}

// keyValues flattens vals (a slice argument of IN is its elements) and
// checks that each is a value of the key's type, or an integer or string
// for a key of that kind: the key formats them alike. Other types (a
// string for a UUID key, a driver.Valuer) could name the same row under
// another spelling, so they are refused.
func keyValues(f *schema.Field, vals []any) ([]any, bool) {
	var out []any
	for _, v := range vals {
		rv := reflect.ValueOf(v)
		for rv.Kind() == reflect.Pointer && !rv.IsNil() {
			rv = rv.Elem()
		}
		if (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array) && rv.Type() != f.FieldType && rv.Type().Elem().Kind() != reflect.Uint8 {
			for i := 0; i < rv.Len(); i++ {
				e, ok := keyValues(f, []any{rv.Index(i).Interface()})
				if !ok {
					return nil, false
				}
				out = append(out, e...)
			}
			continue
		}
		if !rv.IsValid() || !sameKind(rv.Type(), f.FieldType) {
			return nil, false
		}
		out = append(out, rv.Interface())
	}
	return out, len(out) > 0
}

func sameKind(a, b reflect.Type) bool {
	if a == b {
		return true
	}
	ints := func(t reflect.Type) bool {
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return true
		}
		return false
	}
	if ints(a) && ints(b) {
		return true
	}
	return a.Kind() == reflect.String && b.Kind() == reflect.String &&
		a.Implements(stringerType) == b.Implements(stringerType)
}

var stringerType = reflect.TypeFor[interface{ String() string }]()

// plainValue reports whether v is a value stored as given (not an
// expression the database evaluates).
func plainValue(v any) bool {
	switch v.(type) {
	case clause.Expression, gorm.Valuer, *gorm.DB:
		return false
	}
	return true
}
