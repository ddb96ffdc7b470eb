package rowcodec

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"io"
	"reflect"
	"sort"
	"strings"
	"unsafe"

	"gorm.io/gorm/schema"
)

// Plan is the compiled codec of one GORM model: its readable columns in a
// fixed order, and for each the way to set it on a model value.
type Plan struct {
	sch  *schema.Schema
	cols []column
	slot map[*schema.Field]int // column index of each readable field
	fp   uint64
}

// column is one readable field of the model.
type column struct {
	field *schema.Field
	op    op      // opGeneric: through GORM's scan value and Set
	off   uintptr // offset of the field in the model (fast ops only)
}

// Compile builds the plan of a parsed model schema. Every readable field with
// a column becomes a column of the plan.
func Compile(sch *schema.Schema) (*Plan, error) {
	if sch == nil || sch.ModelType == nil || sch.ModelType.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w: not a parsed struct schema", ErrUnsupportedValue)
	}
	p := &Plan{sch: sch, slot: map[*schema.Field]int{}}
	var fields []*schema.Field
	for _, f := range sch.Fields {
		if f.DBName != "" && f.Readable {
			fields = append(fields, f)
		}
	}
	sort.SliceStable(fields, func(i, j int) bool { return fieldID(fields[i]) < fieldID(fields[j]) })
	for i, f := range fields {
		c := column{field: f}
		c.op, c.off = fastOp(sch.ModelType, f)
		p.cols = append(p.cols, c)
		p.slot[f] = i
	}
	p.fp = fingerprint(sch, fields)
	return p, nil
}

// fieldID orders the columns: by column name, then by the field's path
// (fields sharing a column name through embedding).
func fieldID(f *schema.Field) string {
	return f.DBName + "\x00" + strings.Join(f.BindNames, ".")
}

// fingerprint hashes what decides an entry's layout and meaning: the table,
// the readable columns in plan order, and the query clauses (soft delete)
// that decide which rows a load may return at all.
func fingerprint(sch *schema.Schema, fields []*schema.Field) uint64 {
	h := fnv.New64a()
	io.WriteString(h, "rowcodec/1\x00"+sch.Table+"\x00")
	for _, f := range fields {
		io.WriteString(h, fieldID(f)+"\x01")
	}
	qc := reflect.TypeFor[schema.QueryClausesInterface]()
	for _, f := range sch.Fields {
		if f.DBName != "" && (f.FieldType.Implements(qc) || reflect.PointerTo(f.FieldType).Implements(qc)) {
			io.WriteString(h, "qc:"+f.DBName+":"+f.FieldType.String()+"\x01")
		}
	}
	fp := h.Sum64()
	if fp == 0 {
		fp = 1
	}
	return fp
}

// Fingerprint identifies the layout of the plan's entries.
func (p *Plan) Fingerprint() uint64 { return p.fp }

// Schema returns the model schema the plan was compiled from.
func (p *Plan) Schema() *schema.Schema { return p.sch }

// Mapping tells, for each column of a result set, which plan column it
// fills (-1: none, as GORM skips columns no readable field maps).
type Mapping []int

// Map resolves the columns of a result set the way GORM's Scan does
// (Schema.LookUpField, readable fields only).
func (p *Plan) Map(columns []string) Mapping {
	m := make(Mapping, len(columns))
	for i, name := range columns {
		m[i] = -1
		if f := p.sch.LookUpField(name); f != nil && f.Readable {
			if s, ok := p.slot[f]; ok {
				m[i] = s
			}
		}
	}
	return m
}

// ScanRow scans the current row of rows (rows.Next has returned true) into
// driver values, one per result column.
func (p *Plan) ScanRow(rows *sql.Rows, m Mapping) ([]any, error) {
	vals := make([]any, len(m))
	ptrs := make([]any, len(m))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	return vals, nil
}

// AppendRow is ScanRow then AppendValues.
func (p *Plan) AppendRow(dst []byte, m Mapping, rows *sql.Rows) ([]byte, error) {
	vals, err := p.ScanRow(rows, m)
	if err != nil {
		return dst, err
	}
	return p.AppendValues(dst, m, vals)
}

// Value returns the driver value of field f in a scanned row, if the result
// had its column.
func (p *Plan) Value(m Mapping, vals []any, f *schema.Field) (any, bool) {
	s, ok := p.slot[f]
	if !ok {
		return nil, false
	}
	for i := len(m) - 1; i >= 0; i-- { // the last column mapping to f wins, as in GORM
		if m[i] == s && i < len(vals) {
			return vals[i], true
		}
	}
	return nil, false
}

// AppendValues appends the encoding of one row given as driver values, one
// per result column (as sql.Rows.Scan into *any yields them).
func (p *Plan) AppendValues(dst []byte, m Mapping, vals []any) ([]byte, error) {
	if len(vals) != len(m) {
		return dst, fmt.Errorf("%w: %d values for %d columns", ErrUnsupportedValue, len(vals), len(m))
	}
	var small [32]int
	from := small[:0]
	if len(p.cols) > len(small) {
		from = make([]int, 0, len(p.cols))
	}
	for range p.cols {
		from = append(from, -1)
	}
	for i, s := range m {
		if s >= 0 {
			from[s] = i
		}
	}
	for s, i := range from {
		if i < 0 {
			dst = append(dst, tagAbsent)
			continue
		}
		var err error
		if dst, err = appendValue(dst, vals[i]); err != nil {
			return dst, fmt.Errorf("column %q: %w", p.cols[s].field.DBName, err)
		}
	}
	return dst, nil
}

// Decode sets the fields of the model that v points to (a *T of the plan's
// model type, holding T's zero value) from the encoded row data, as GORM's
// Scan would from the same driver values. data must not be modified
// afterwards: decoded strings alias it.
func (p *Plan) Decode(ctx context.Context, data []byte, v reflect.Value) error {
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Type().Elem() != p.sch.ModelType {
		return fmt.Errorf("%w: Decode into %v, want *%v", ErrUnsupportedValue, v.Type(), p.sch.ModelType)
	}
	base := v.UnsafePointer()
	r := reader{b: data}
	for i := range p.cols {
		c := &p.cols[i]
		tag := r.byte()
		if r.err != nil {
			return r.err
		}
		if tag == tagAbsent {
			continue
		}
		if c.op != opGeneric && setFast(c.op, unsafe.Add(base, c.off), tag, &r) {
			continue
		}
		src := r.value(tag)
		if r.err != nil {
			return r.err
		}
		if err := setGeneric(ctx, c.field, v, src); err != nil {
			return fmt.Errorf("gormcache: column %q: %w", c.field.DBName, err)
		}
	}
	if r.err != nil {
		return r.err
	}
	if r.i != len(r.b) {
		return ErrCorrupt
	}
	return nil
}

// setGeneric sets field f of the model at v from driver value src exactly as
// GORM's Scan does: the field's scan value, database/sql's conversion into
// it, the field's setter.
func setGeneric(ctx context.Context, f *schema.Field, v reflect.Value, src any) error {
	pv := f.NewValuePool.Get()
	defer f.NewValuePool.Put(pv)
	if err := convertAssign(pv, src); err != nil {
		return err
	}
	return f.Set(ctx, v, pv)
}
