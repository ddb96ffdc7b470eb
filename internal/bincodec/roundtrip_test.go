package bincodec

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// --- types under test -------------------------------------------------------

type (
	status   string
	level    int8
	flags    uint16
	ratio    float32
	blob     []byte
	myByte   uint8
	myBytes  []myByte
	names    []status
	counters map[string]int
)

type inner struct {
	A int
	B string
}

type nested struct {
	In    inner
	PIn   *inner
	Ins   []inner
	InMap map[string]inner
	Arr   [2]inner
}

type Base struct {
	ID      uint
	Created time.Time
}

type embedded struct {
	Base
	*inner2
	Name string
}

type inner2 struct{ X, Y int }

type Inner3 struct{ Z string }

type withEmbedded struct {
	Public  string
	inner   // unexported embedded struct: encoded
	*inner2 // unexported embedded pointer to struct: encoded
	*Inner3 // exported embedded pointer
}

// withUnexported has private state and no marshaler: refused.
type withUnexported struct {
	Public string
	//lint:ignore U1000 present only to be refused or skipped by the codec
	private string
}

// jsonSkipped has fields a JSON codec would skip: all are encoded here.
type jsonSkipped struct {
	Keep string
	Skip string `json:"-"`
	//lint:ignore SA5008 the documented encoding/json form naming a field "-"
	Dash  string         `json:"-,"`
	Later int            `json:"later,omitempty"`
	Hid   map[string]int `json:"-"`
	Ptr   *inner         `json:"-"`
}

// DeletedAt mirrors gorm.DeletedAt: sql.NullTime with a JSON method pair.
type DeletedAt sql.NullTime

func (n DeletedAt) MarshalJSON() ([]byte, error) {
	if n.Valid {
		return json.Marshal(n.Time)
	}
	return json.Marshal(nil)
}

func (n *DeletedAt) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		n.Valid = false
		return nil
	}
	err := json.Unmarshal(b, &n.Time)
	if err == nil {
		n.Valid = true
	}
	return err
}

type gormModel struct {
	ID        uint `gorm:"primarykey"`
	CreatedAt time.Time
	UpdatedAt time.Time
	DeletedAt DeletedAt `gorm:"index"`
	Nick      sql.NullString
	Age       sql.NullInt64
	Seen      sql.NullTime
	Ratio     sql.NullFloat64
	Ok        sql.NullBool
	Any       sql.Null[string]
}

// celsius has only a text marshaler pair.
type celsius struct{ tenths int }

func (c celsius) MarshalText() ([]byte, error) {
	return []byte(strconv.Itoa(c.tenths)), nil
}

func (c *celsius) UnmarshalText(b []byte) error {
	v, err := strconv.Atoi(string(b))
	c.tenths = v
	return err
}

// secret has only a JSON marshaler pair (and an unexported field).
type secret struct{ value string }

func (s secret) MarshalJSON() ([]byte, error) { return json.Marshal("s:" + s.value) }

func (s *secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	s.value = strings.TrimPrefix(v, "s:")
	return nil
}

// jsonExported has all fields exported and a JSON pair that would lose data:
// rule 2 says structural, so nothing is lost.
type jsonExported struct{ A, B int }

func (jsonExported) MarshalJSON() ([]byte, error) { return []byte(`{}`), nil }
func (*jsonExported) UnmarshalJSON([]byte) error  { return nil }

// event embeds time.Time: its promoted MarshalBinary must not swallow Name.
type event struct {
	time.Time
	Name string
}

// embCelsius gets celsius's text methods by promotion through an
// unexported embedded pointer; they must not replace Label.
type embCelsius struct {
	*celsius
	Label string
}

// embAddr gets netip.Addr's binary methods by promotion.
type embAddr struct {
	*netip.Addr
	Zone string
}

// myTime has time.Time's layout and none of its methods.
type myTime time.Time

// money has unexported state and encodes itself: 8 bytes of cents, then the
// currency. Its methods are exact, so it round-trips exactly.
type money struct {
	cents    int64
	currency string
}

func (m money) MarshalBinary() ([]byte, error) {
	return append(binary.LittleEndian.AppendUint64(nil, uint64(m.cents)), m.currency...), nil
}

func (m *money) UnmarshalBinary(b []byte) error {
	if len(b) < 8 {
		return errors.New("money: short input")
	}
	m.cents, m.currency = int64(binary.LittleEndian.Uint64(b)), string(b[8:])
	return nil
}

// order holds money and other unexported-state fields, with exported names.
type order struct {
	ID    int
	Total money
	Lines []money
	ByKey map[string]money
}

// ownBinary defines its own binary pair over unexported state.
type ownBinary struct {
	time.Time
	note string
}

func (o ownBinary) MarshalBinary() ([]byte, error) {
	b, err := o.Time.MarshalBinary()
	return append(b, o.note...), err
}

func (o *ownBinary) UnmarshalBinary(b []byte) error {
	if len(b) < 15 {
		return errors.New("short")
	}
	o.note = string(b[15:])
	return o.Time.UnmarshalBinary(b[:15])
}

type node struct {
	Val  int
	Next *node
}

type tree struct {
	Name     string
	Children []tree
	Parent   *tree `json:"-"` // encoded: a tree with parent links is a cycle
	Index    map[string]*tree
}

type selfSlice []selfSlice

type empty struct{}

// zeroSized has only unexported fields of size zero: nothing to lose, so it
// is accepted, and encodes as nothing.
type zeroSized struct {
	_ [0]func() // not comparable
	//lint:ignore U1000 present only to be refused or skipped by the codec
	marker struct{}
}

type allKinds struct {
	B    bool
	I    int
	I8   int8
	I16  int16
	I32  int32
	I64  int64
	U    uint
	U8   uint8
	U16  uint16
	U32  uint32
	U64  uint64
	Up   uintptr
	F32  float32
	F64  float64
	C64  complex64
	C128 complex128
	S    string
	Bs   []byte
	St   status
	L    level
	Fl   flags
	R    ratio
	Bl   blob
	MBs  myBytes
	Ns   names
	Cn   counters
	A4   [4]byte
	A3   [3]int
	A0   [0]string
	PP   **int
	Ptrs []*int
}

type withMaps struct {
	ByID   map[int64]*inner
	ByName map[string][]string
	ByArr  map[[2]int]string
	Sets   map[string]struct{}
	Nested map[string]map[string]int
}

func ptr[T any](v T) *T { return &v }

// --- round trips ------------------------------------------------------------

// roundTrip encodes v, decodes into a fresh value of v's type and checks the
// result with equalBits against want (v itself unless given).
func roundTrip(t *testing.T, v any, want ...any) {
	t.Helper()
	b, err := Marshal(v)
	if err != nil {
		t.Fatalf("Marshal(%T): %v", v, err)
	}
	typ := reflect.TypeOf(v)
	dst := reflect.New(typ)
	if err := Unmarshal(b, dst.Interface()); err != nil {
		t.Fatalf("Unmarshal(%T) of % x: %v", v, b, err)
	}
	exp := v
	if len(want) > 0 {
		exp = want[0]
	}
	if got := dst.Elem().Interface(); !equalBits(got, exp) {
		t.Fatalf("round trip of %T:\n got %#v\nwant %#v", v, got, exp)
	}
	// Marshal(&v) is the same encoding as Marshal(v) (maps may reorder).
	pv := reflect.New(typ)
	pv.Elem().Set(reflect.ValueOf(v))
	b2, err := Marshal(pv.Interface())
	if err != nil {
		t.Fatalf("Marshal(*%T): %v", v, err)
	}
	if len(b2) != len(b) {
		t.Fatalf("Marshal(&v) length %d != Marshal(v) length %d", len(b2), len(b))
	}
	// Append after a prefix gives the same bytes after the prefix.
	b3, err := Append([]byte("prefix"), v)
	if err != nil || !bytes.HasPrefix(b3, []byte("prefix")) || len(b3) != len(b)+6 {
		t.Fatalf("Append: %v % x", err, b3)
	}
}

func TestRoundTripScalars(t *testing.T) {
	nan32 := math.Float32frombits(0x7fc00123)
	nan64 := math.Float64frombits(0x7ff8000000000abc)
	cases := []any{
		true, false,
		int8(math.MinInt8), int8(math.MaxInt8), int8(0),
		int16(math.MinInt16), int16(math.MaxInt16),
		int32(math.MinInt32), int32(math.MaxInt32),
		int64(math.MinInt64), int64(math.MaxInt64), int64(-1), int64(0),
		int(math.MinInt), int(math.MaxInt),
		uint8(math.MaxUint8), uint16(math.MaxUint16), uint32(math.MaxUint32),
		uint64(math.MaxUint64), uint(math.MaxUint), uintptr(math.MaxUint64), uint64(0),
		float32(0), float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), nan32,
		float32(math.MaxFloat32), float32(math.SmallestNonzeroFloat32),
		0.0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), nan64, math.MaxFloat64, math.SmallestNonzeroFloat64,
		complex64(complex(1.5, -2)), complex(math.Inf(1), nan64),
		"", "héllo, 世界", strings.Repeat("x", 300), "\x00\xff",
		status("active"), level(-3), flags(65535), ratio(0.25),
	}
	for _, v := range cases {
		t.Run(fmt.Sprintf("%T/%v", v, v), func(t *testing.T) { roundTrip(t, v) })
	}
}

func TestRoundTripComposites(t *testing.T) {
	x := 5
	px := &x
	cases := []struct {
		name string
		v    any
	}{
		{"row", benchRow()},
		{"row/zero", row{}},
		{"row/empty-tags", row{Tags: []string{}}},
		{"bytes/nil", []byte(nil)},
		{"bytes/empty", []byte{}},
		{"bytes", []byte{0, 1, 2, 255}},
		{"blob", blob("abc")},
		{"mybytes", myBytes{1, 2, 3}},
		{"ints/nil", []int(nil)},
		{"ints/empty", []int{}},
		{"ints", []int{math.MinInt, -1, 0, 1, math.MaxInt}},
		{"strings/nil", []string(nil)},
		{"strings/empty", []string{}},
		{"strings", []string{"", "a", strings.Repeat("b", 200)}},
		{"names", names{"x", "y"}},
		{"map/nil", map[string]int(nil)},
		{"map/empty", map[string]int{}},
		{"map", map[string]int{"a": 1, "b": -2, "": 0}},
		{"map/int-keys", map[int]string{1: "one", -7: "minus seven"}},
		{"map/struct-values", map[string]inner{"k": {1, "v"}, "z": {}}},
		{"counters", counters{"n": 3}},
		{"array/bytes", [4]byte{1, 2, 3, 4}},
		{"array/ints", [3]int{-1, 0, 1}},
		{"array/empty", [0]int{}},
		{"array/strings", [2]string{"a", ""}},
		{"struct/empty", empty{}},
		{"empties", []empty{{}, {}, {}}},
		{"empties/many", make([]empty, 100000)},
		{"zeroSized", []zeroSized{{}, {}}},
		{"set", map[empty]empty{{}: {}}},
		{"nested", nested{
			In:    inner{1, "a"},
			PIn:   &inner{2, "b"},
			Ins:   []inner{{3, "c"}, {}},
			InMap: map[string]inner{"x": {4, "d"}},
			Arr:   [2]inner{{5, "e"}, {6, "f"}},
		}},
		{"nested/zero", nested{}},
		{"embedded", embedded{Base: Base{ID: 9, Created: time.Unix(1e9, 5).UTC()}, inner2: &inner2{1, 2}, Name: "n"}},
		{"embedded/nil-ptr", embedded{Name: "n"}},
		{"withEmbedded", withEmbedded{Public: "p", inner: inner{1, "a"}, inner2: &inner2{2, 3}, Inner3: &Inner3{"z"}}},
		{"withEmbedded/nil", withEmbedded{Public: "p"}},
		{"pointer/nil", (*int)(nil)},
		{"pointer", &x},
		{"pointer/pointer", &px},
		{"pointer/in-struct-nil", struct{ P **int }{ptr((*int)(nil))}},
		{"pointer/struct", &inner{7, "p"}},
		{"allKinds/zero", allKinds{}},
		{"allKinds", allKinds{
			B: true, I: -1, I8: -8, I16: -16, I32: -32, I64: -64, U: 1, U8: 8, U16: 16, U32: 32, U64: 64, Up: 99,
			F32: 1.5, F64: -2.25, C64: 1 + 2i, C128: -3 - 4i, S: "s", Bs: []byte("bs"), St: "st", L: 3, Fl: 7,
			R: 0.5, Bl: blob{}, MBs: myBytes{9}, Ns: names{"n"}, Cn: counters{"c": 1},
			A4: [4]byte{1, 2, 3, 4}, A3: [3]int{1, 2, 3}, PP: &px, Ptrs: []*int{nil, &x},
		}},
		{"withMaps", withMaps{
			ByID:   map[int64]*inner{1: {1, "x"}, 2: nil},
			ByName: map[string][]string{"a": nil, "b": {}, "c": {"z"}},
			ByArr:  map[[2]int]string{{1, 2}: "12"},
			Sets:   map[string]struct{}{"x": {}, "y": {}},
			Nested: map[string]map[string]int{"a": {"b": 1}, "nil": nil},
		}},
		{"jsonSkipped", jsonSkipped{Keep: "k", Skip: "s", Dash: "d", Later: 3, Hid: map[string]int{"h": 1}, Ptr: &inner{1, "p"}}},
		{"jsonSkipped/zero", jsonSkipped{}},
		{"list", &node{1, &node{2, &node{3, nil}}}},
		{"tree", tree{Name: "root", Children: []tree{{Name: "a"}, {Name: "b", Children: []tree{}}},
			Index: map[string]*tree{"leaf": {Name: "leaf"}, "nil": nil}}},
		{"tree/parent", tree{Name: "child", Parent: &tree{Name: "parent"}}},
		{"selfSlice", selfSlice{nil, {}, {{}, nil}}},
		{"direct/struct", struct{ P *int }{&x}},
		{"direct/array", [1]*int{&x}},
		{"direct/map", map[string]bool{"t": true}},
		{"myTime", myTime(time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC))},
		{"event", event{Time: time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC), Name: "launch"}},
		{"ownBinary", ownBinary{Time: time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC), note: "kept by own method"}},
		{"celsius", celsius{-215}},
		{"embCelsius", embCelsius{&celsius{5}, "label"}},
		{"embCelsius/nil", embCelsius{nil, "label"}},
		{"embAddr", embAddr{ptr(netip.MustParseAddr("fe80::1")), "eth0"}},
		{"celsius/ptr-slice", []*celsius{{1}, nil}},
		{"secret", secret{"pw"}},
		{"money", money{-12345, "EUR"}},
		{"money/zero", money{}},
		{"order", order{ID: 1, Total: money{300, "USD"}, Lines: []money{{100, "USD"}, {200, ""}}, ByKey: map[string]money{"a": {1, "JPY"}}}},
		{"jsonExported", jsonExported{1, 2}},
		{"netip", netip.MustParseAddr("2001:db8::1")},
		{"netip/v4", netip.MustParseAddr("192.0.2.1")},
		{"netip/zero", netip.Addr{}},
		{"netip/prefix", netip.MustParsePrefix("10.0.0.0/8")},
		{"rawjson", json.RawMessage(`{"a": [1, 2]}`)},
		{"gorm/zero", gormModel{}},
		{"gorm", gormModel{
			ID: 1, CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			DeletedAt: DeletedAt{Time: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), Valid: true},
			Nick:      sql.NullString{String: "n", Valid: true}, Age: sql.NullInt64{Int64: 3, Valid: true},
			Seen: sql.NullTime{Valid: false}, Ratio: sql.NullFloat64{Float64: 0.5, Valid: true},
			Ok: sql.NullBool{Bool: true, Valid: true}, Any: sql.Null[string]{V: "v", Valid: true},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { roundTrip(t, c.v) })
	}
	// Top-level pointer chains are flattened: a nil anywhere in the chain
	// decodes as a nil outermost pointer (like JSON's null).
	roundTrip(t, ptr((*int)(nil)), (**int)(nil))
}

func TestTopLevelPointers(t *testing.T) {
	r := benchRow()
	b1, _ := Marshal(r)
	b2, _ := Marshal(&r)
	pr := &r
	b3, _ := Marshal(&pr)
	if !bytes.Equal(b1, b2) || !bytes.Equal(b1, b3) {
		t.Fatalf("Marshal(v), Marshal(&v), Marshal(&&v) differ")
	}
	// A cache of *row: Unmarshal into **row allocates.
	var got *row
	if err := Unmarshal(b1, &got); err != nil || got == nil || !equalBits(*got, r) {
		t.Fatalf("Unmarshal into **row: %v %+v", err, got)
	}
	// nil pointers: decode as nil, or as the zero value for a non-pointer target.
	nb, err := Marshal((*row)(nil))
	if err != nil {
		t.Fatal(err)
	}
	got = &row{ID: 1}
	if err := Unmarshal(nb, &got); err != nil || got != nil {
		t.Fatalf("nil into **row: %v %+v", err, got)
	}
	z := row{ID: 5, Name: "x"}
	if err := Unmarshal(nb, &z); err != nil || !equalBits(z, row{}) {
		t.Fatalf("nil into *row: %v %+v", err, z)
	}
	if b, err := Marshal(nil); err != nil || Unmarshal(b, &got) != nil || got != nil {
		t.Fatalf("Marshal(nil): %v", err)
	}
	// Decoding into an existing value replaces it (no merge, no reuse).
	old := row{ID: 9, Tags: []string{"old", "tags", "here"}}
	keep := old.Tags
	if err := Unmarshal(b1, &old); err != nil || !equalBits(old, r) || keep[0] != "old" {
		t.Fatalf("decode into existing: %v %+v", err, old)
	}
}

func TestBigIntText(t *testing.T) {
	v, _ := new(big.Int).SetString("-123456789012345678901234567890", 10)
	type withBig struct {
		N *big.Int
		M big.Int
	}
	in := withBig{N: v, M: *big.NewInt(42)}
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out withBig
	if err := Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.N.Cmp(in.N) != 0 || out.M.Cmp(&in.M) != 0 {
		t.Fatalf("got %v %v", out.N, &out.M)
	}
}

// failing cannot be encoded: its MarshalText fails.
type failing struct{ x int }

var errFailing = errors.New("failing on purpose")

func (failing) MarshalText() ([]byte, error)  { return nil, errFailing }
func (f *failing) UnmarshalText([]byte) error { f.x = 1; return nil }

func TestLongMarshalerPayloads(t *testing.T) {
	// AppendText output of 1, 2 and 3 uvarint length bytes: the length
	// prefix is fixed up after the payload is appended.
	for _, digits := range []int{100, 127, 128, 300, 16383, 16384, 40000} {
		n, _ := new(big.Int).SetString("9"+strings.Repeat("0", digits-1), 10)
		type w struct {
			Before string
			N      *big.Int
			After  string
		}
		in := w{"before", n, "after"}
		b, err := Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var out w
		if err := Unmarshal(b, &out); err != nil {
			t.Fatalf("%d digits: %v", digits, err)
		}
		if out.Before != in.Before || out.After != in.After || out.N.Cmp(n) != 0 {
			t.Fatalf("%d digits: mismatch", digits)
		}
	}
}

func TestMarshalerErrors(t *testing.T) {
	_, err := Marshal(struct{ F failing }{})
	if !errors.Is(err, ErrUnsupported) || !errors.Is(err, errFailing) {
		t.Fatalf("err = %v", err)
	}
	if b, err := Append([]byte("keep"), []failing{{}}); err == nil || string(b) != "keep" {
		t.Fatalf("Append on error: %q %v", b, err)
	}
}

func TestMarshalerPrecedence(t *testing.T) {
	checks := []struct {
		typ  reflect.Type
		want string // "", "binary", "text", "JSON"
	}{
		{reflect.TypeFor[DeletedAt](), ""},
		{reflect.TypeFor[sql.NullTime](), ""},
		{reflect.TypeFor[jsonExported](), ""},
		{reflect.TypeFor[event](), ""},
		{reflect.TypeFor[ownBinary](), "binary"},
		{reflect.TypeFor[netip.Addr](), "binary"},
		{reflect.TypeFor[celsius](), "text"},
		{reflect.TypeFor[big.Int](), "text"},
		{reflect.TypeFor[secret](), "JSON"},
		{reflect.TypeFor[json.RawMessage](), "JSON"},
		{reflect.TypeFor[inner](), ""},
		{reflect.TypeFor[embCelsius](), ""},
		{reflect.TypeFor[embAddr](), ""},
	}
	for _, c := range checks {
		got := ""
		if m := marshalerOf(c.typ); m != nil {
			got = m.kind.String()
		}
		if got != c.want {
			t.Errorf("%s: marshaler %q, want %q", c.typ, got, c.want)
		}
	}
	// Structural means positional: the JSON methods of jsonExported are not called.
	b, _ := Marshal(jsonExported{1, 2})
	if bytes.Contains(b, []byte("{}")) {
		t.Fatalf("jsonExported used MarshalJSON: % x", b)
	}
}

func TestJSONDashFieldsEncoded(t *testing.T) {
	in := jsonSkipped{Keep: "k", Skip: "kept too", Dash: "d", Later: 3, Hid: map[string]int{"x": 1}, Ptr: &inner{2, "y"}}
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("kept too")) {
		t.Fatal(`json:"-" field was not encoded`)
	}
	var out jsonSkipped
	if err := Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("got %+v want %+v", out, in)
	}
	// A json:"-" field of an unsupported type refuses the struct.
	type dashFunc struct {
		F func() `json:"-"`
		N int
	}
	if err := Check(reflect.TypeFor[dashFunc]()); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("json:\"-\" func field: %v", err)
	}
	// A json:"-" back-pointer that makes a cycle is refused by Marshal,
	// never dropped.
	parent := &tree{Name: "p"}
	parent.Children = []tree{{Name: "c", Parent: parent}}
	if _, err := Marshal(parent); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("cycle through a json:\"-\" field: %v", err)
	}
}

func TestEmbeddedUnexportedStructs(t *testing.T) {
	in := withEmbedded{Public: "p", inner: inner{1, "promoted"}, inner2: &inner2{3, 4}, Inner3: &Inner3{"z"}}
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out withEmbedded
	if err := Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("got %+v want %+v", out, in)
	}
}

// refused asserts that t is refused with ErrUnsupported by Check, Marshal
// (of a zero value and of a pointer to it) and Unmarshal, and logs the
// message (which names the field path: it is for people, tests do not
// compare it).
func refused(t *testing.T, typ reflect.Type) {
	t.Helper()
	err := Check(typ)
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Check(%s) = %v, want ErrUnsupported", typ, err)
	}
	if err2 := Check(reflect.PointerTo(typ)); !errors.Is(err2, ErrUnsupported) {
		t.Fatalf("Check(*%s) = %v, want ErrUnsupported", typ, err2)
	}
	t.Logf("%s: %v", typ, err)
	v := reflect.New(typ)
	if _, err := Marshal(v.Elem().Interface()); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Marshal(%s) = %v, want ErrUnsupported", typ, err)
	}
	if _, err := Marshal(v.Interface()); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Marshal(*%s) = %v, want ErrUnsupported", typ, err)
	}
	if b, err := Append([]byte("keep"), v.Interface()); !errors.Is(err, ErrUnsupported) || string(b) != "keep" {
		t.Fatalf("Append(*%s) = %q, %v, want ErrUnsupported", typ, b, err)
	}
	if err := Unmarshal([]byte{topNil}, v.Interface()); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Unmarshal into *%s = %v, want ErrUnsupported", typ, err)
	}
}

//lint:ignore U1000 present only to be refused or skipped by the codec
type myInt int

func TestUnexportedFieldsRefused(t *testing.T) {
	type money2 struct {
		Currency string
		//lint:ignore U1000 present only to be refused or skipped by the codec
		cents int64
	}
	type line struct {
		SKU   string
		Price money2
	}
	type invoice struct {
		ID    int
		Lines []line
	}
	type withMutex struct {
		//lint:ignore U1000 present only to be refused or skipped by the codec
		mu sync.Mutex
		N  int
	}
	type exportedMutex struct {
		Mu sync.Mutex // sync.Mutex itself has unexported state
	}
	type embeddedNonStruct struct {
		//lint:ignore U1000 present only to be refused or skipped by the codec
		myInt // unexported embedded, not a struct
		N     int
	}
	type embeddedPrivate struct {
		withUnexported // unexported embedded struct with private state
	}
	type viaPointer struct{ P *withUnexported }
	type viaMap struct{ M map[string][]*withUnexported }
	type viaArray struct{ A [2]withUnexported }
	for _, typ := range []reflect.Type{
		reflect.TypeFor[withUnexported](),
		reflect.TypeFor[money2](),
		reflect.TypeFor[line](),
		reflect.TypeFor[invoice](),
		reflect.TypeFor[[]invoice](),
		reflect.TypeFor[map[int]line](),
		reflect.TypeFor[withMutex](),
		reflect.TypeFor[exportedMutex](),
		reflect.TypeFor[sync.Mutex](),
		reflect.TypeFor[embeddedNonStruct](),
		reflect.TypeFor[embeddedPrivate](),
		reflect.TypeFor[viaPointer](),
		reflect.TypeFor[viaMap](),
		reflect.TypeFor[viaArray](),
		reflect.TypeFor[time.Location](),
		reflect.TypeFor[struct{ L *time.Location }](),
	} {
		t.Run(typ.String(), func(t *testing.T) { refused(t, typ) })
	}
	// The refusal is cached with the plan and stays a refusal, also when
	// the type is reached from another root first.
	if err := Check(reflect.TypeFor[money2]()); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("second Check: %v", err)
	}
}

func TestSelfEncodingPrivateState(t *testing.T) {
	// Unexported state behind marshaler methods is accepted: the type
	// round-trips as well as its methods do (here: exactly).
	for _, typ := range []reflect.Type{
		reflect.TypeFor[money](), reflect.TypeFor[order](), reflect.TypeFor[*order](),
		reflect.TypeFor[celsius](), reflect.TypeFor[secret](), reflect.TypeFor[ownBinary](),
		reflect.TypeFor[big.Int](), reflect.TypeFor[netip.Prefix](), reflect.TypeFor[zeroSized](),
	} {
		if err := Check(typ); err != nil {
			t.Errorf("Check(%s): %v", typ, err)
		}
	}
	in := order{ID: 7, Total: money{-5, "EUR"}, Lines: []money{{1, "EUR"}, {}}, ByKey: map[string]money{"k": {2, "CHF"}}}
	b, err := Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	var out order
	if err := Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("got %+v want %+v", out, in)
	}
}

func TestInterfacesRefused(t *testing.T) {
	type withAny struct{ V any }
	type withError struct{ Err error }
	type withStringer struct{ S fmt.Stringer }
	type withAnySlice struct{ L []any }
	type withAnyMap struct{ M map[string]any }
	type withAnyKey struct{ M map[any]int }
	type withAnyPtr struct{ P *any }
	type nestedAny struct{ W []withAny }
	for _, typ := range []reflect.Type{
		reflect.TypeFor[withAny](), reflect.TypeFor[withError](), reflect.TypeFor[withStringer](),
		reflect.TypeFor[withAnySlice](), reflect.TypeFor[withAnyMap](), reflect.TypeFor[withAnyKey](),
		reflect.TypeFor[withAnyPtr](), reflect.TypeFor[nestedAny](),
		reflect.TypeFor[[]any](), reflect.TypeFor[map[string]any](), reflect.TypeFor[[1]error](),
	} {
		t.Run(typ.String(), func(t *testing.T) { refused(t, typ) })
	}
	// Refused whatever the value holds, nil included.
	for _, v := range []any{withAny{}, withAny{V: 42}, withError{}, []any{}, map[string]any(nil)} {
		if _, err := Marshal(v); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Marshal(%#v) = %v, want ErrUnsupported", v, err)
		}
	}
	// The top level: Check of an interface type, Unmarshal into one.
	for _, typ := range []reflect.Type{reflect.TypeFor[any](), reflect.TypeFor[error](), reflect.TypeFor[*any]()} {
		if err := Check(typ); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Check(%s) = %v", typ, err)
		}
	}
	var a any
	if err := Unmarshal([]byte{topNil}, &a); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Unmarshal into *any: %v", err)
	}
	// Marshal of a value passed as an any encodes its dynamic type.
	a = inner{1, "x"}
	b, err := Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var back inner
	if err := Unmarshal(b, &back); err != nil || back != a {
		t.Fatalf("%v %v", back, err)
	}
}

func TestCheck(t *testing.T) {
	for _, typ := range []reflect.Type{
		reflect.TypeFor[row](), reflect.TypeFor[*row](), reflect.TypeFor[**row](), reflect.TypeFor[[]row](),
		reflect.TypeFor[gormModel](), reflect.TypeFor[tree](), reflect.TypeFor[node](), reflect.TypeFor[allKinds](),
		reflect.TypeFor[time.Time](), reflect.TypeFor[myTime](), reflect.TypeFor[int](), reflect.TypeFor[empty](),
	} {
		if err := Check(typ); err != nil {
			t.Errorf("Check(%s): %v", typ, err)
		}
	}
	// Check agrees with Marshal and Unmarshal, and does not encode: a type
	// whose MarshalText always fails is accepted (the failure is a value's).
	if err := Check(reflect.TypeFor[failing]()); err != nil {
		t.Errorf("Check(failing): %v", err)
	}
	type withChan struct{ C chan int }
	refused(t, reflect.TypeFor[withChan]())
	if err := Check(nil); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Check(nil) = %v", err)
	}
	// Compiled once: Check after Check (and Marshal after Check) does not
	// allocate.
	typ := reflect.TypeFor[gormModel]()
	if allocs := testing.AllocsPerRun(100, func() { _ = Check(typ) }); allocs != 0 {
		t.Errorf("Check of a compiled type allocated %v times", allocs)
	}
}

func TestUnsupported(t *testing.T) {
	type withChan struct{ C chan int }
	type withFunc struct{ F func() }
	type withUnsafe struct{ P unsafe.Pointer }
	type deep struct {
		A struct{ B []map[string]func() }
	}
	for _, v := range []any{withChan{}, withFunc{}, &withFunc{}, make(chan int), func() {}, deep{}, withUnsafe{}, []unsafe.Pointer{nil}} {
		_, err := Marshal(v)
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("%T: err = %v", v, err)
		} else if !strings.HasPrefix(err.Error(), "gormcache: ") {
			t.Errorf("message %q", err)
		}
	}
	// Unexported and json:"-" unsupported fields are refused too: they are
	// not silently left out.
	type hidden struct {
		//lint:ignore U1000 present only to be refused or skipped by the codec
		c chan int
		N int
	}
	type dashed struct {
		F func() `json:"-"`
		N int
	}
	refused(t, reflect.TypeFor[hidden]())
	refused(t, reflect.TypeFor[dashed]())

	// Cycles hit the depth limit.
	cyc := &node{Val: 1}
	cyc.Next = cyc
	if _, err := Marshal(cyc); !errors.Is(err, ErrUnsupported) {
		t.Errorf("cycle: %v", err)
	}
	sc := selfSlice{nil}
	sc[0] = sc
	if _, err := Marshal(sc); !errors.Is(err, ErrUnsupported) {
		t.Errorf("slice cycle: %v", err)
	}
	// A list just under the limit works, just over it does not.
	long := func(n int) *node {
		var head *node
		for i := range n {
			head = &node{i, head}
		}
		return head
	}
	roundTrip(t, long(maxDepth))
	if _, err := Marshal(long(maxDepth + 2)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("long list: %v", err)
	}
	// Bad Unmarshal targets.
	var r row
	var anyTarget any
	var errTarget error
	for _, target := range []any{r, nil, (*row)(nil), &anyTarget, &errTarget} {
		if err := Unmarshal([]byte{1}, target); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Unmarshal into %T: %v", target, err)
		}
	}
	// The error is cached with the plan and stays an error.
	if _, err := Marshal(withChan{}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "chan int") {
		t.Errorf("cached error: %v", err)
	}
}

func TestAliasing(t *testing.T) {
	type aliased struct {
		S, Empty string
		B        []byte
		Bs       [][]byte
		A        [3]byte
	}
	in := aliased{S: "zero-copy", B: []byte("copied"), Bs: [][]byte{[]byte("also")}, A: [3]byte{1, 2, 3}}
	data, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out aliased
	if err := Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	within := func(p *byte) bool {
		start := &data[0]
		return uintptr(unsafe.Pointer(p)) >= uintptr(unsafe.Pointer(start)) &&
			uintptr(unsafe.Pointer(p)) < uintptr(unsafe.Pointer(start))+uintptr(len(data))
	}
	if !within(unsafe.StringData(out.S)) {
		t.Error("string does not alias the input (zero-copy expected)")
	}
	if out.Empty != "" || unsafe.StringData(out.Empty) != nil {
		t.Error("empty string aliases the input")
	}
	for i := range data {
		data[i] = 0xEE
	}
	if string(out.B) != "copied" || string(out.Bs[0]) != "also" || out.A != [3]byte{1, 2, 3} {
		t.Fatalf("[]byte aliased the input: %q %q", out.B, out.Bs[0])
	}
}

func TestConcurrentPlans(t *testing.T) {
	// Many goroutines compiling the same fresh types at once (run with -race).
	type fresh1 struct {
		A []map[string]*fresh1
		B tree
	}
	type fresh2 struct {
		X fresh1
		Y []fresh2
	}
	v := fresh2{X: fresh1{A: []map[string]*fresh1{{"a": {B: tree{Name: "t"}}}}}, Y: []fresh2{{}}}
	done := make(chan error)
	for range 8 {
		go func() {
			var err error
			for range 50 {
				var b []byte
				if b, err = Marshal(v); err != nil {
					break
				}
				var out fresh2
				if err = Unmarshal(b, &out); err != nil {
					break
				}
				if !reflect.DeepEqual(out, v) {
					err = fmt.Errorf("mismatch")
					break
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
