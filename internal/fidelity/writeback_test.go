package fidelity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/repository"
)

// TestWriteBack reads every row through the repository, changes exactly one
// column, writes the row back with Update and checks, with plain GORM and
// with PostgreSQL's own row_to_json, that no other column changed (but the
// version and updated_at, which Update maintains) and that no associated
// row was written.
//
// A control runs beside it on a second copy of the tables: the same change
// to the row plain GORM reads, written back by GORM's own whole-row update
// (Select("*"), the key and creation time omitted, no associations), which
// is what Update documents. A column that this control changes too, to the
// same stored value, is GORM's doing (a nil embedded pointer GORM allocates
// while writing), not the cache's: it is logged, not failed.
func TestWriteBack(t *testing.T) {
	for _, s := range shapes() {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			s.writeBack(t)
		})
	}
}

func (s *shape[T, ID]) writeBack(t *testing.T) {
	if s.change == nil {
		t.Skip("no column to change")
	}
	f := s.seed(t)
	ctl := s.seed(t)
	if !reflect.DeepEqual(f.ids, ctl.ids) {
		t.Fatalf("the control tables got other ids: %v, %v", ctl.ids, f.ids)
	}
	c := newCache(t, f.rdb, cache.Binary{})
	r := f.repo(t, c)
	var ver, updated *schema.Field
	for _, fld := range f.sch.Fields {
		if fld.DBName != "" && fld.FieldType == reflect.TypeFor[repository.Version]() {
			ver = fld
		}
		if fld.DBName != "" && fld.AutoUpdateTime != 0 {
			updated = fld
		}
	}
	for i, id := range f.ids {
		if !f.live[i] {
			continue
		}
		what := fmt.Sprintf("row %d (id %v)", i, id)
		before, err := f.first(id)
		if err != nil {
			t.Fatalf("%s: db.First: %v", what, err)
		}
		beforeJSON := f.rowJSON(t, id)
		beforeCount := f.count(t)
		ctlBefore, ctlAfter, ctlRowBefore, ctlRowAfter := ctl.plainWriteBack(t, id)

		v, err := r.Get(ctx, id)
		if err != nil {
			t.Fatalf("%s: Get: %v", what, err)
		}
		col := s.change(v)
		if err := r.Update(ctx, v); err != nil {
			t.Errorf("%s: Update after changing %s: %v", what, col, err)
			continue
		}
		what += ", " + col + " changed"

		after, err := f.first(id)
		if err != nil {
			t.Fatalf("%s: db.First after Update: %v", what, err)
		}
		afterJSON := f.rowJSON(t, id)
		skip := map[string]bool{col: true}
		if ver != nil {
			skip[ver.DBName] = true
			bv := ver.ReflectValueOf(ctx, reflect.ValueOf(before).Elem()).Uint()
			av := ver.ReflectValueOf(ctx, reflect.ValueOf(after).Elem()).Uint()
			if av != bv+1 {
				t.Errorf("%s: version %d after Update, want %d", what, av, bv+1)
			}
		}
		if updated != nil {
			skip[updated.DBName] = true
		}

		// The stored row as PostgreSQL renders it.
		for _, k := range unionKeys(beforeJSON, afterJSON) {
			if skip[k] || reflect.DeepEqual(beforeJSON[k], afterJSON[k]) {
				continue
			}
			if !reflect.DeepEqual(ctlBefore[k], ctlAfter[k]) && reflect.DeepEqual(ctlBefore[k], beforeJSON[k]) && reflect.DeepEqual(ctlAfter[k], afterJSON[k]) {
				t.Logf("%s: column %s changed from %s to %s, as it does when plain GORM writes back the row it reads (GORM's doing, not the cache's)",
					what, k, jsonText(beforeJSON[k]), jsonText(afterJSON[k]))
				skip[k] = true
				continue
			}
			t.Errorf("%s: column %s changed (row_to_json): got %s, want %s (plain GORM's write-back leaves %s)", what, k,
				jsonText(afterJSON[k]), jsonText(beforeJSON[k]), jsonText(ctlAfter[k]))
		}
		// The struct GORM reads, column by column.
		for _, fld := range f.sch.Fields {
			if fld.DBName == "" || !fld.Readable || skip[fld.DBName] {
				continue
			}
			av, bv := fieldOf(after, fld), fieldOf(before, fld)
			d := diffValues(av, bv)
			if d == nil {
				continue
			}
			if cav, cbv := fieldOf(ctlRowAfter, fld), fieldOf(ctlRowBefore, fld); diffValues(cav, cbv) != nil && diffValues(cav, av) == nil && diffValues(cbv, bv) == nil {
				t.Logf("%s: field %s reads %s after Update, %s before, as it does when plain GORM writes back the row it reads (GORM's doing, not the cache's)",
					what, fld.Name, show(reflect.ValueOf(av)), show(reflect.ValueOf(bv)))
			} else {
				t.Errorf("%s: column %s changed (db.First, after vs before):\n\t%s", what, fld.DBName, strings.Join(d, "\n\t"))
			}
		}
		if reflect.DeepEqual(beforeJSON[col], afterJSON[col]) {
			t.Errorf("%s: the change was not written: row_to_json still has %s", what, jsonText(afterJSON[col]))
		}
		if n := f.count(t); n != beforeCount {
			t.Errorf("%s: Update changed the row count of %T from %d to %d", what, s.count, beforeCount, n)
		}
		// The cache serves the new row.
		got, err := r.Get(ctx, id)
		f.compare(t, what+": Get after Update", got, err, after, nil)
	}
}

// plainWriteBack is the control: the shape's change to the row db.First
// returns, written back by GORM alone the way Update documents (every
// column but the primary key and creation time, no associations). It
// returns the stored row and db.First's result, before and after.
func (f *fixture[T, ID]) plainWriteBack(t *testing.T, id ID) (before, after map[string]any, rowBefore, rowAfter *T) {
	t.Helper()
	before = f.rowJSON(t, id)
	rowBefore, err := f.first(id)
	if err != nil {
		t.Fatalf("control: db.First(%v): %v", id, err)
	}
	v, _ := f.first(id)
	f.s.change(v)
	var omit []string
	for _, fld := range f.sch.Fields {
		if fld.DBName != "" && (fld.PrimaryKey || fld.AutoCreateTime != 0) {
			omit = append(omit, fld.DBName)
		}
	}
	if err := f.db.Model(v).Select("*").Omit(omit...).Omit(clause.Associations).Updates(v).Error; err != nil {
		t.Fatalf("control: plain GORM Updates(%v): %v", id, err)
	}
	if rowAfter, err = f.first(id); err != nil {
		t.Fatalf("control: db.First(%v) after Updates: %v", id, err)
	}
	return before, f.rowJSON(t, id), rowBefore, rowAfter
}

// fieldOf returns the value of field fld in the model v points to, or nil
// when a nil embedded pointer is on the way (GORM's ValueOf would return a
// serializer's wrapper instead of the field for serialized fields).
func fieldOf(v any, fld *schema.Field) any {
	rv := reflect.ValueOf(v)
	for _, name := range fld.BindNames {
		for rv.Kind() == reflect.Pointer {
			if rv.IsNil() {
				return nil
			}
			rv = rv.Elem()
		}
		rv = rv.FieldByName(name)
	}
	return rv.Interface()
}

// rowJSON is the stored row with primary key id, as row_to_json renders it.
func (f *fixture[T, ID]) rowJSON(t *testing.T, id ID) map[string]any {
	t.Helper()
	cols, vals := f.pkParts(id)
	conds := make([]string, len(cols))
	for i, c := range cols {
		conds[i] = `t."` + c + `" = ?`
	}
	var text string
	q := `SELECT row_to_json(t)::text FROM "` + f.sch.Table + `" t WHERE ` + strings.Join(conds, " AND ")
	if err := f.db.Raw(q, vals...).Row().Scan(&text); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decoding row_to_json %q: %v", text, err)
	}
	return m
}

// count is the row count of the shape's count model (0 without one).
func (f *fixture[T, ID]) count(t *testing.T) int64 {
	t.Helper()
	if f.s.count == nil {
		return 0
	}
	var n int64
	if err := f.db.Session(&gorm.Session{NewDB: true}).Unscoped().Model(f.s.count).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func unionKeys(a, b map[string]any) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func jsonText(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	s := strings.TrimSpace(b.String())
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
