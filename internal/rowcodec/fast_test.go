package rowcodec

import (
	"context"
	"database/sql"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

type (
	level  int32
	status string
	flag   bool
	ratio  float64
	count  uint16
)

// wide has one field of every shape a fast op serves, plus named types.
type wide struct {
	ID    int64 `gorm:"primaryKey"`
	B     bool
	I8    int8
	I16   int16
	I32   int32
	I64   int64
	I     int
	U8    uint8
	U16   uint16
	U32   uint32
	U64   uint64
	U     uint
	F64   float64
	S     string
	Bs    []byte
	T     time.Time
	PS    *string
	PB    *bool
	PI64  *int64
	PI    *int
	PF64  *float64
	PT    *time.Time
	NS    sql.NullString
	NI64  sql.NullInt64
	NI32  sql.NullInt32
	NI16  sql.NullInt16
	NB    sql.NullByte
	NF    sql.NullFloat64
	NBool sql.NullBool
	NT    sql.NullTime
	Del   gorm.DeletedAt
	Lvl   level
	St    status
	Fl    flag
	Ra    ratio
	Cn    count
}

func parse(t testing.TB, v any) *schema.Schema {
	t.Helper()
	sch, err := schema.Parse(v, &sync.Map{}, schema.NamingStrategy{})
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// driverValues covers every driver value kind, with NULL, boundaries and
// values of the wrong kind for each field.
func driverValues() []any {
	ny, _ := time.LoadLocation("America/New_York")
	return []any{
		nil, true, false,
		int64(0), int64(1), int64(-1), int64(127), int64(128), int64(-129), int64(255), int64(256),
		int64(32767), int64(32768), int64(65535), int64(65536), int64(math.MaxInt32), int64(math.MaxInt32) + 1,
		int64(math.MinInt32) - 1, int64(math.MaxUint32), int64(math.MaxUint32) + 1, int64(math.MaxInt64), int64(math.MinInt64),
		0.0, math.Copysign(0, -1), 1.5, 3.0, math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat64, 1e-300,
		"", "42", "-7", "3.5", "abc", "true", "2024-01-02T03:04:05Z", "ünïcødé",
		[]byte{}, []byte("42"), []byte("xyz"),
		time.Time{}, time.Unix(1700000000, 123456789).UTC(), time.Unix(1700000000, 5),
		time.Date(1850, 3, 4, 5, 6, 7, 8, ny), time.Date(2024, 6, 1, 0, 0, 0, 0, time.FixedZone("X", 3600)),
	}
}

// TestFastPathsMatchGORM checks, for every fast op and every driver value,
// that setting a field directly gives what GORM's own path (scan value,
// database/sql conversion, field setter) gives: the same field value, and an
// error exactly when GORM's path fails.
func TestFastPathsMatchGORM(t *testing.T) {
	sch := parse(t, &wide{})
	fast, err := Compile(sch)
	if err != nil {
		t.Fatal(err)
	}
	nfast := 0
	for _, c := range fast.cols {
		if c.op != opGeneric {
			nfast++
		}
	}
	if nfast < len(fast.cols)-1 {
		t.Fatalf("only %d of %d columns have a fast op", nfast, len(fast.cols))
	}
	slow, _ := Compile(sch)
	for i := range slow.cols {
		slow.cols[i].op = opGeneric
	}
	ctx := context.Background()
	for _, col := range fast.cols {
		m := fast.Map([]string{col.field.DBName})
		for _, v := range driverValues() {
			b, err := fast.AppendValues(nil, m, []any{v})
			if err != nil {
				t.Fatalf("%s %#v: %v", col.field.Name, v, err)
			}
			got, want := new(wide), new(wide)
			gerr := fast.Decode(ctx, b, reflect.ValueOf(got))
			werr := slow.Decode(ctx, b, reflect.ValueOf(want))
			if (gerr == nil) != (werr == nil) {
				t.Errorf("%s <- %T %#v: fast error %v, GORM's path error %v", col.field.Name, v, v, gerr, werr)
				continue
			}
			if werr == nil && !deepEqualNaN(got, want) {
				t.Errorf("%s <- %T %#v: fast %#v, GORM's path %#v", col.field.Name, v, v,
					reflect.ValueOf(got).Elem().FieldByName(col.field.Name).Interface(),
					reflect.ValueOf(want).Elem().FieldByName(col.field.Name).Interface())
			}
		}
	}
}

// deepEqualNaN is reflect.DeepEqual, except that NaN equals NaN with the
// same bits (DeepEqual never equates NaNs).
func deepEqualNaN(a, b *wide) bool {
	if reflect.DeepEqual(a, b) {
		return true
	}
	fa, fb := *a, *b
	for _, p := range [][2]*float64{{&fa.F64, &fb.F64}, {(*float64)(&fa.Ra), (*float64)(&fb.Ra)}, {&fa.NF.Float64, &fb.NF.Float64}} {
		if math.Float64bits(*p[0]) == math.Float64bits(*p[1]) {
			*p[0], *p[1] = 0, 0
		}
	}
	if fa.PF64 != nil && fb.PF64 != nil && math.Float64bits(*fa.PF64) == math.Float64bits(*fb.PF64) {
		fa.PF64, fb.PF64 = nil, nil
	}
	return reflect.DeepEqual(&fa, &fb)
}

func TestCorruptInput(t *testing.T) {
	p, _ := Compile(parse(t, &wide{}))
	m := p.Map([]string{"s", "t", "i64"})
	good, err := p.AppendValues(nil, m, []any{"hello", time.Unix(5, 6), int64(7)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Decode(context.Background(), good, reflect.ValueOf(new(wide))); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(good); n++ {
		if err := p.Decode(context.Background(), good[:n], reflect.ValueOf(new(wide))); err == nil {
			t.Errorf("truncated to %d bytes: no error", n)
		}
	}
	if err := p.Decode(context.Background(), append(good, 0), reflect.ValueOf(new(wide))); err == nil {
		t.Error("trailing byte: no error")
	}
	bad := append([]byte(nil), good...)
	bad[0] = 0x7f
	if err := p.Decode(context.Background(), bad, reflect.ValueOf(new(wide))); err == nil {
		t.Error("unknown tag: no error")
	}
	if _, err := p.AppendValues(nil, m, []any{struct{}{}, nil, nil}); err == nil {
		t.Error("non-driver value accepted")
	}
}

func TestFingerprintFollowsColumns(t *testing.T) {
	type v1 struct {
		ID   int64
		Name string
	}
	type v2 struct { // another Go type, same columns: same layout
		ID    int64
		Name  string `json:"-"`
		Extra string `gorm:"-"`
		hook  int
	}
	type v3 struct { // a new column
		ID   int64
		Name string
		Age  int
	}
	fp := func(v any) uint64 {
		s := parse(t, v)
		s.Table = "people"
		p, _ := Compile(s)
		return p.Fingerprint()
	}
	if fp(&v1{}) != fp(&v2{}) {
		t.Error("a struct change that keeps the columns changed the fingerprint")
	}
	if fp(&v1{}) == fp(&v3{}) {
		t.Error("a new column kept the fingerprint")
	}
	_ = v2{}.hook
}
