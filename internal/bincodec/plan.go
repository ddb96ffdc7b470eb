package bincodec

import (
	"math"
	"reflect"
	"sync"
	"unsafe"
)

// maxDepth bounds the nesting of pointers, slices and maps, on encode (a cycle fails with ErrUnsupported instead of recursing forever)
// and on decode (deeply nested garbage fails with ErrCorrupt).
const maxDepth = 1000

// encFn appends the encoding of the value at p to buf. depth counts the
// pointer/slice/map levels above the value.
type encFn func(buf []byte, p unsafe.Pointer, depth int) ([]byte, error)

// decFn decodes the value at b[i:] into the (typed, writable) memory at p and
// returns the offset after it. It overwrites every encoded part of the value
// and never reuses memory reachable from it: pointers, slices and maps are
// freshly allocated.
type decFn func(b []byte, i int, p unsafe.Pointer, depth int) (int, error)

// op names the shapes that struct fields inline in the encode/decode loops
// instead of calling through plan.enc/plan.dec.
type op uint8

const (
	opOther op = iota // call plan.enc / plan.dec
	opBool
	opInt8
	opInt16
	opInt32
	opInt64
	opInt
	opUint8
	opUint16
	opUint32
	opUint64
	opUint
	opUintptr
	opFloat32
	opFloat64
	opComplex64
	opComplex128
	opString
	opBytes   // []byte-shaped slice
	opStrings // []string-shaped slice
	opTime    // time.Time
	opPointer // pointer
)

// plan is the compiled codec of one Go type.
type plan struct {
	typ reflect.Type
	op  op
	// size is typ.Size().
	size uintptr
	// minSize is the smallest number of bytes an encoding of typ can take.
	// It is 0 only for types whose encoding is always empty (e.g. struct{},
	// or a struct with no encoded field).
	minSize int
	enc     encFn
	dec     decFn
	// err is set (and enc/dec are nil) when typ cannot be encoded.
	err error
	// ready is set once the plan is complete; an incomplete plan is only
	// reachable through the indirections of a recursive type.
	ready bool
}

// field is one encoded field of a struct.
type field struct {
	off  uintptr
	op   op
	plan *plan
}

// plans caches *plan by reflect.Type (the only global state of the package
// besides the top-level plan caches in encode.go and decode.go, which are
// caches of the same kind).
var plans sync.Map

// planFor returns the plan of t, compiling and caching it (and the plans of
// the types it contains) on first use. A type that cannot be encoded is
// cached too, with its error, so the refusal costs one map look-up after the
// first.
func planFor(t reflect.Type) (*plan, error) {
	if v, ok := plans.Load(t); ok {
		p := v.(*plan)
		return p, p.err
	}
	c := compiler{building: map[reflect.Type]*plan{}}
	if _, err := c.compile(t, t.String()); err != nil {
		v, _ := plans.LoadOrStore(t, &plan{typ: t, err: err})
		p := v.(*plan)
		return p, p.err
	}
	for bt, bp := range c.building {
		plans.LoadOrStore(bt, bp)
	}
	v, _ := plans.Load(t)
	p := v.(*plan)
	return p, p.err
}

// Check reports whether the codec supports values of type t: it compiles
// (and caches) the plan of t, encoding nothing, and returns the error that
// Marshal of a t and Unmarshal into a *t would return for the type, or nil.
// Pointers are followed as Marshal follows them, so Check(T) and Check(*T)
// agree. The error satisfies errors.Is(err, ErrUnsupported) and names the
// offending field path and the reason.
//
// A nil error means every value of t round-trips exactly (see the package
// documentation for the exceptions) except values that Marshal refuses on
// their own: cycles and nesting deeper than the depth limit, and values
// whose marshaler methods fail.
func Check(t reflect.Type) error {
	if t == nil {
		return unsupportedf("Check of a nil reflect.Type")
	}
	_, err := decTopFor(reflect.PointerTo(t))
	return err
}

// compiler builds the plans of a type graph. building holds the plans
// created by this compilation, complete or not; a recursive type finds its
// own (incomplete) plan there and refers to it, which is safe because the
// plan is only called once complete.
//
// path names the value being compiled from the root type down, for error
// messages: "pkg.Order.Lines[].Price.cents". The root is the type's name;
// fields append ".Name", slice and array elements "[]", map keys and values
// "[key]" and "[value]"; pointers add nothing.
type compiler struct {
	building map[reflect.Type]*plan
}

func (c *compiler) compile(t reflect.Type, path string) (*plan, error) {
	if v, ok := plans.Load(t); ok {
		if p := v.(*plan); p.err == nil {
			return p, nil
		}
		// A cached refusal names the path from another root: compile again
		// to name this one (refusals are compiled once per root type).
	}
	if p, ok := c.building[t]; ok {
		return p, nil
	}
	p := &plan{typ: t, size: t.Size()}
	c.building[t] = p
	if err := c.build(p, path); err != nil {
		return nil, err
	}
	p.ready = true
	return p, nil
}

var scalarFns = map[reflect.Kind]struct {
	op      op
	minSize int
	enc     encFn
	dec     decFn
}{
	reflect.Bool:       {opBool, 1, encBool, decBool},
	reflect.Int8:       {opInt8, 1, encUint8, decUint8},
	reflect.Int16:      {opInt16, 1, encSigned[int16], decSigned[int16]},
	reflect.Int32:      {opInt32, 1, encSigned[int32], decSigned[int32]},
	reflect.Int64:      {opInt64, 1, encSigned[int64], decSigned[int64]},
	reflect.Int:        {opInt, 1, encSigned[int], decSigned[int]},
	reflect.Uint8:      {opUint8, 1, encUint8, decUint8},
	reflect.Uint16:     {opUint16, 1, encUnsigned[uint16], decUnsigned[uint16]},
	reflect.Uint32:     {opUint32, 1, encUnsigned[uint32], decUnsigned[uint32]},
	reflect.Uint64:     {opUint64, 1, encUnsigned[uint64], decUnsigned[uint64]},
	reflect.Uint:       {opUint, 1, encUnsigned[uint], decUnsigned[uint]},
	reflect.Uintptr:    {opUintptr, 1, encUnsigned[uintptr], decUnsigned[uintptr]},
	reflect.Float32:    {opFloat32, 4, encFloat32, decFloat32},
	reflect.Float64:    {opFloat64, 8, encFloat64, decFloat64},
	reflect.Complex64:  {opComplex64, 8, encComplex64, decComplex64},
	reflect.Complex128: {opComplex128, 16, encComplex128, decComplex128},
	reflect.String:     {opString, 1, encString, decString},
}

// build fills p. Plans that may be part of a cycle (pointer, slice, map) set
// their minSize before compiling their element, so a struct that refers back
// to them sees the final value.
func (c *compiler) build(p *plan, path string) error {
	t := p.typ
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Invalid:
		return unsupportedf("%s: values of kind %s cannot be encoded", describe(t, path), t.Kind())
	case reflect.Interface:
		// An interface value's dynamic type is not in the encoding (it is
		// positional and carries no type), so it could not be decoded; a
		// JSON fallback would change it (an int held in an any comes back
		// as a float64). Refuse the type, not just non-nil values.
		return unsupportedf("%s: values of interface type cannot be restored, the encoding carries no dynamic type; "+
			"use a concrete type, or the cache's GoJSON codec for JSON-shaped data", describe(t, path))
	case reflect.Pointer:
		return c.buildPointer(p, path)
	}
	if t == timeType {
		buildTime(p)
		return nil
	}
	if m := marshalerOf(t); m != nil {
		buildMarshaler(p, m)
		return nil
	}
	if t.Kind() == reflect.Struct && t.ConvertibleTo(timeType) {
		// A type defined as time.Time (type MyTime time.Time) has none of
		// its methods and only unexported fields: structurally it would
		// encode nothing. It has time.Time's layout, so use time's format.
		buildTime(p)
		return nil
	}
	if s, ok := scalarFns[t.Kind()]; ok {
		p.op, p.minSize, p.enc, p.dec = s.op, s.minSize, s.enc, s.dec
		return nil
	}
	switch t.Kind() {
	case reflect.Slice:
		return c.buildSlice(p, path)
	case reflect.Array:
		return c.buildArray(p, path)
	case reflect.Map:
		return c.buildMap(p, path)
	case reflect.Struct:
		return c.buildStruct(p, path)
	}
	return unsupportedf("type %s (kind %s)", t, t.Kind())
}

func (c *compiler) buildPointer(p *plan, path string) error {
	p.op = opPointer
	p.minSize = 1
	elem, err := c.compile(p.typ.Elem(), path)
	if err != nil {
		return err
	}
	p.enc = encPointer(elem)
	p.dec = decPointer(elem)
	return nil
}

func (c *compiler) buildSlice(p *plan, path string) error {
	p.minSize = 1
	elem, err := c.compile(p.typ.Elem(), path+"[]")
	if err != nil {
		return err
	}
	switch {
	case elem.ready && elem.op == opUint8:
		p.op, p.enc, p.dec = opBytes, encBytes, decBytes
	case elem.ready && elem.op == opString:
		p.op, p.enc, p.dec = opStrings, encStrings, decStrings
	default:
		p.enc = encSlice(elem)
		p.dec = decSlice(p.typ, elem)
	}
	return nil
}

func (c *compiler) buildArray(p *plan, path string) error {
	n := p.typ.Len()
	elem, err := c.compile(p.typ.Elem(), path+"[]")
	if err != nil {
		return err
	}
	// An array contains its element by value, so elem is complete here.
	p.minSize = satMul(n, elem.minSize)
	switch {
	case n == 0 || elem.minSize == 0:
		// Nothing is encoded.
		p.enc = func(buf []byte, _ unsafe.Pointer, _ int) ([]byte, error) { return buf, nil }
		p.dec = func(_ []byte, i int, _ unsafe.Pointer, _ int) (int, error) { return i, nil }
	case elem.op == opUint8:
		p.enc = encByteArray(n)
		p.dec = decByteArray(n)
	default:
		p.enc = encArray(n, elem)
		p.dec = decArray(n, elem)
	}
	return nil
}

func (c *compiler) buildMap(p *plan, path string) error {
	p.minSize = 1
	key, err := c.compile(p.typ.Key(), path+"[key]")
	if err != nil {
		return err
	}
	val, err := c.compile(p.typ.Elem(), path+"[value]")
	if err != nil {
		return err
	}
	p.enc = encMap(p.typ, key, val)
	p.dec = decMap(p.typ, key, val)
	return nil
}

// buildStruct encodes, in declaration order:
//   - every exported field, embedded or not, whatever its tags (`json:"-"`
//     included: this is a cache codec, the value must come back whole);
//   - unexported embedded fields of struct or pointer-to-struct type (their
//     exported fields are promoted, and writing through unsafe pointers the
//     codec can restore them, nil embedded pointers included).
//
// Any other unexported field refuses the type (ErrUnsupported, naming the
// field): the codec could not restore it, and a value that comes back with a
// field silently zeroed is exactly what the codec must never return. A type
// with such fields can still be cached by giving it marshaler methods (see
// marshaler.go), which take precedence over this function. The one exception
// is an unexported field of size zero (a `_ [0]func()` that makes a struct
// non-comparable, a struct{} marker): it holds no state, so nothing is lost
// by not encoding it.
func (c *compiler) buildStruct(p *plan, path string) error {
	t := p.typ
	var fields []field
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() && !(sf.Anonymous && isStructOrPtrToStruct(sf.Type)) {
			if sf.Type.Size() == 0 {
				continue
			}
			return unsupportedf("field %s.%s%s is unexported: the codec cannot restore it; "+
				"export it, or give %s MarshalBinary/UnmarshalBinary methods",
				path, sf.Name, inType(t, path), t)
		}
		fp, err := c.compile(sf.Type, path+"."+sf.Name)
		if err != nil {
			return err
		}
		f := field{off: sf.Offset, plan: fp}
		if fp.ready {
			f.op = fp.op
		}
		fields = append(fields, f)
		p.minSize = satAdd(p.minSize, fp.minSize)
	}
	p.enc = encStruct(fields)
	p.dec = decStruct(fields)
	return nil
}

func isStructOrPtrToStruct(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct
}

// describe names type t at path for an error message: "type T" at the
// root, "P (type T)" below it.
func describe(t reflect.Type, path string) string {
	if path == t.String() {
		return "type " + path
	}
	return path + " (type " + t.String() + ")"
}

// inType is " (in T)" when path does not start at struct type t itself.
func inType(t reflect.Type, path string) string {
	if path == t.String() {
		return ""
	}
	return " (in " + t.String() + ")"
}

func satAdd(a, b int) int {
	if a > math.MaxInt32 || b > math.MaxInt32 {
		return math.MaxInt32
	}
	return min(a+b, math.MaxInt32)
}

func satMul(n, m int) int {
	if m != 0 && n > math.MaxInt32/m {
		return math.MaxInt32
	}
	return n * m
}
