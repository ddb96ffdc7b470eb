package repository

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/internal/bind"
)

// keyPlan maps values of the repository's ID type to the model's primary
// key: one field of type ID, or, for a composite primary key, one field of
// the struct ID per key column.
type keyPlan struct {
	pks   []*schema.Field
	parts [][]int // composite: parts[i] is the index in ID of the field for pks[i]
}

func (k *keyPlan) composite() bool { return k.parts != nil }

// newKeyPlan checks that ID can name a row of sch and says how.
func newKeyPlan(sch *schema.Schema, idt reflect.Type) (*keyPlan, error) {
	pks := sch.PrimaryFields
	switch {
	case len(pks) == 0:
		return nil, fmt.Errorf("%w: %s has no primary key", ErrUnsupportedModel, sch.Name)
	case len(pks) == 1:
		if pks[0].FieldType != idt {
			return nil, fmt.Errorf("%w: primary key %s.%s is %v, not %v", ErrUnsupportedModel, sch.Name, pks[0].Name, pks[0].FieldType, idt)
		}
		return &keyPlan{pks: pks}, nil
	}
	names := make([]string, len(pks))
	for i, f := range pks {
		names[i] = f.Name + " " + f.FieldType.String()
	}
	want := fmt.Sprintf("a struct with the fields {%s}", strings.Join(names, "; "))
	if idt.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w: %s has a composite primary key; its ID type must be %s, not %v", ErrUnsupportedModel, sch.Name, want, idt)
	}
	k := &keyPlan{pks: pks, parts: make([][]int, len(pks))}
	used := 0
	for i, f := range pks {
		sf, ok := idt.FieldByName(f.Name)
		if !ok || !sf.IsExported() || sf.Type != f.FieldType {
			return nil, fmt.Errorf("%w: %s has a composite primary key; %v must be %s (field %s missing or of another type)", ErrUnsupportedModel, sch.Name, idt, want, f.Name)
		}
		k.parts[i] = sf.Index
		used++
	}
	if idt.NumField() != used {
		return nil, fmt.Errorf("%w: %s has a composite primary key; %v must be %s and nothing else", ErrUnsupportedModel, sch.Name, idt, want)
	}
	return k, nil
}

// key is the cache key of the row with primary key id. Integer ids, the
// common case, are formatted without boxing: one allocation, the key.
// Composite keys join their parts with ':', each escaped so that no part
// can contain one.
func (r *Repository[T, ID]) key(id ID) string {
	var buf [20]byte
	switch x := any(id).(type) {
	case int64:
		return r.ns + ":" + string(strconv.AppendInt(buf[:0], x, 10))
	case uint64:
		return r.ns + ":" + string(strconv.AppendUint(buf[:0], x, 10))
	case uint:
		return r.ns + ":" + string(strconv.AppendUint(buf[:0], uint64(x), 10))
	case int:
		return r.ns + ":" + string(strconv.AppendInt(buf[:0], int64(x), 10))
	case uint32:
		return r.ns + ":" + string(strconv.AppendUint(buf[:0], uint64(x), 10))
	case int32:
		return r.ns + ":" + string(strconv.AppendInt(buf[:0], int64(x), 10))
	}
	if !r.keys.composite() {
		return r.ns + ":" + formatKey(id)
	}
	rv := reflect.ValueOf(id)
	parts := make([]any, len(r.keys.parts))
	for i, idx := range r.keys.parts {
		parts[i] = rv.FieldByIndex(idx).Interface()
	}
	return bind.RowKey(r.ns, parts...)
}

// uniqueKey is the cache key mapping a unique column's value to an id.
func (r *Repository[T, ID]) uniqueKey(col string, v any) string {
	return bind.UniqueKey(r.ns, col, v)
}

// formatKey renders an id or column value for use in a key (see
// bind.Format: the plugin formats the keys of plain-GORM writes the same way).
func formatKey(v any) string { return bind.Format(v) }

// checkID refuses the zero ID, and for a composite key any zero part: GORM
// leaves zero primary-key values out of a write's WHERE clause, so a write
// through such a key could reach other rows.
func (r *Repository[T, ID]) checkID(id ID) error {
	var zero ID
	if id == zero {
		return fmt.Errorf("%w: zero %T", ErrInvalidID, id)
	}
	if r.keys.composite() {
		rv := reflect.ValueOf(id)
		for i, idx := range r.keys.parts {
			if rv.FieldByIndex(idx).IsZero() {
				return fmt.Errorf("%w: %T has a zero %s", ErrInvalidID, id, r.keys.pks[i].Name)
			}
		}
	}
	return nil
}

// pkWhere is "<table>.<pk> = id" (for each key column).
func (r *Repository[T, ID]) pkWhere(id ID) clause.Expression {
	if !r.keys.composite() {
		return clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: r.keys.pks[0].DBName}, Value: id}
	}
	rv := reflect.ValueOf(id)
	eqs := make([]clause.Expression, len(r.keys.parts))
	for i, idx := range r.keys.parts {
		eqs[i] = clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: r.keys.pks[i].DBName}, Value: rv.FieldByIndex(idx).Interface()}
	}
	return clause.And(eqs...)
}

// pkIn is "<table>.<pk> IN (ids)", or "(<pk1>, <pk2>) IN ((…), …)".
func (r *Repository[T, ID]) pkIn(ids []ID) clause.Expression {
	if !r.keys.composite() {
		vals := make([]any, len(ids))
		for i, id := range ids {
			vals[i] = id
		}
		return clause.IN{Column: clause.Column{Table: clause.CurrentTable, Name: r.keys.pks[0].DBName}, Values: vals}
	}
	n := len(r.keys.parts)
	vars := make([]any, 0, n+1)
	marks := make([]string, n)
	for i := range r.keys.parts {
		vars = append(vars, clause.Column{Table: clause.CurrentTable, Name: r.keys.pks[i].DBName})
		marks[i] = "?"
	}
	tuples := make([]any, len(ids))
	for j, id := range ids {
		rv := reflect.ValueOf(id)
		t := make([]any, n)
		for i, idx := range r.keys.parts {
			t[i] = rv.FieldByIndex(idx).Interface()
		}
		tuples[j] = t
	}
	vars = append(vars, tuples)
	return clause.Expr{SQL: "(" + strings.Join(marks, ", ") + ") IN ?", Vars: vars}
}

// idOf returns the primary key of v.
func (r *Repository[T, ID]) idOf(ctx context.Context, v *T) ID {
	rv := reflect.ValueOf(v).Elem()
	if !r.keys.composite() {
		x, _ := r.keys.pks[0].ValueOf(ctx, rv)
		id, _ := x.(ID)
		return id
	}
	var id ID
	kv := reflect.ValueOf(&id).Elem()
	for i, idx := range r.keys.parts {
		kv.FieldByIndex(idx).Set(r.keys.pks[i].ReflectValueOf(ctx, rv))
	}
	return id
}
