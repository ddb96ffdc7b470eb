package fidelity

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

// diffValues returns nil when got and want are reflect.DeepEqual, or equal
// but for NaNs that have the same bits (DeepEqual never equates NaNs).
// Otherwise it lists the differences, one line per field path: "path: got
// %#v, want %#v". The recursive comparison runs only when DeepEqual fails.
func diffValues(got, want any) []string {
	if reflect.DeepEqual(got, want) {
		return nil
	}
	d := differ{seen: map[visitKey]bool{}}
	d.walk("v", reflect.ValueOf(got), reflect.ValueOf(want), 0)
	return d.out
}

// signedZeroDiffs lists the floats reachable from got and want that differ
// only in the sign of a zero, which reflect.DeepEqual does not tell apart.
func signedZeroDiffs(got, want any) []string {
	d := differ{seen: map[visitKey]bool{}, signedZeros: true}
	d.walk("v", reflect.ValueOf(got), reflect.ValueOf(want), 0)
	return d.out
}

// maxDiffs bounds the lines one comparison reports.
const maxDiffs = 20

type differ struct {
	// signedZeros makes 0 and -0 differ (reflect.DeepEqual equates them).
	signedZeros bool
	out         []string
	seen        map[visitKey]bool // reference pairs already compared (cycles)
}

func (d *differ) report(path string, got, want reflect.Value, note string) {
	if len(d.out) == maxDiffs {
		d.out = append(d.out, "… (more differences)")
	}
	if len(d.out) > maxDiffs {
		return
	}
	d.out = append(d.out, fmt.Sprintf("%s: got %s, want %s%s", path, show(got), show(want), note))
}

// show formats v with %#v, also when v was reached through unexported
// fields (fmt prints such values by reflection).
func show(v reflect.Value) string {
	if !v.IsValid() {
		return "<invalid>"
	}
	s := fmt.Sprintf("%#v", v)
	if k := v.Kind(); k == reflect.Float32 || k == reflect.Float64 {
		s += fmt.Sprintf(" (bits %#x)", floatBits(v))
	}
	if len(s) > 400 {
		s = s[:400] + fmt.Sprintf("… (%d bytes)", len(s))
	}
	return s
}

func floatBits(v reflect.Value) uint64 {
	if v.Kind() == reflect.Float32 {
		return uint64(math.Float32bits(float32(v.Float())))
	}
	return math.Float64bits(v.Float())
}

// walk compares as reflect.DeepEqual does, except for NaNs.
func (d *differ) walk(path string, got, want reflect.Value, depth int) {
	if !got.IsValid() || !want.IsValid() {
		if got.IsValid() != want.IsValid() {
			d.report(path, got, want, "")
		}
		return
	}
	if got.Type() != want.Type() {
		d.report(path, got, want, fmt.Sprintf(" (types %v and %v)", got.Type(), want.Type()))
		return
	}
	if depth > 100 {
		d.report(path, got, want, " (too deep to compare)")
		return
	}
	switch got.Kind() {
	case reflect.Float32, reflect.Float64:
		g, w := got.Float(), want.Float()
		if math.IsNaN(g) && math.IsNaN(w) {
			if floatBits(got) != floatBits(want) {
				d.report(path, got, want, " (NaNs with other bits)")
			}
		} else if g != w {
			d.report(path, got, want, "")
		} else if d.signedZeros && math.Signbit(g) != math.Signbit(w) {
			d.report(path, got, want, " (signed zeros)")
		}
	case reflect.Complex64, reflect.Complex128:
		g, w := got.Complex(), want.Complex()
		if g != w && !(isNaNComplex(g) && isNaNComplex(w)) {
			d.report(path, got, want, "")
		}
	case reflect.Bool:
		if got.Bool() != want.Bool() {
			d.report(path, got, want, "")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if got.Int() != want.Int() {
			d.report(path, got, want, "")
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if got.Uint() != want.Uint() {
			d.report(path, got, want, "")
		}
	case reflect.String:
		if got.String() != want.String() {
			d.report(path, got, want, "")
		}
	case reflect.Chan, reflect.UnsafePointer:
		if got.Pointer() != want.Pointer() {
			d.report(path, got, want, "")
		}
	case reflect.Func:
		if !got.IsNil() || !want.IsNil() {
			d.report(path, got, want, " (funcs are equal only when both are nil)")
		}
	case reflect.Pointer:
		if got.IsNil() || want.IsNil() {
			if got.IsNil() != want.IsNil() {
				d.report(path, got, want, "")
			}
			return
		}
		if d.visit(got, want) {
			d.walk("(*"+path+")", got.Elem(), want.Elem(), depth+1)
		}
	case reflect.Interface:
		if got.IsNil() || want.IsNil() {
			if got.IsNil() != want.IsNil() {
				d.report(path, got, want, "")
			}
			return
		}
		d.walk(path, got.Elem(), want.Elem(), depth+1)
	case reflect.Struct:
		d.walkStruct(path, got, want, depth)
	case reflect.Array:
		for i := 0; i < got.Len(); i++ {
			d.walk(fmt.Sprintf("%s[%d]", path, i), got.Index(i), want.Index(i), depth+1)
		}
	case reflect.Slice:
		if got.IsNil() != want.IsNil() {
			d.report(path, got, want, " (nil and non-nil slices)")
			return
		}
		if got.Len() != want.Len() {
			d.report(path, got, want, fmt.Sprintf(" (lengths %d and %d)", got.Len(), want.Len()))
			return
		}
		if !d.visit(got, want) {
			return
		}
		for i := 0; i < got.Len(); i++ {
			d.walk(fmt.Sprintf("%s[%d]", path, i), got.Index(i), want.Index(i), depth+1)
		}
	case reflect.Map:
		if got.IsNil() != want.IsNil() {
			d.report(path, got, want, " (nil and non-nil maps)")
			return
		}
		if !d.visit(got, want) {
			return
		}
		for _, k := range want.MapKeys() {
			gv := got.MapIndex(k)
			if !gv.IsValid() {
				d.report(fmt.Sprintf("%s[%#v]", path, k), gv, want.MapIndex(k), " (key missing)")
				continue
			}
			d.walk(fmt.Sprintf("%s[%#v]", path, k), gv, want.MapIndex(k), depth+1)
		}
		for _, k := range got.MapKeys() {
			if !want.MapIndex(k).IsValid() {
				d.report(fmt.Sprintf("%s[%#v]", path, k), got.MapIndex(k), reflect.Value{}, " (unexpected key)")
			}
		}
	default:
		d.report(path, got, want, fmt.Sprintf(" (kind %v not compared)", got.Kind()))
	}
}

// walkStruct compares field by field. A struct without exported fields
// (time.Time, decimal.Decimal, Money) is reported as a whole, with its inner
// difference as a note, since its fields mean nothing to a reader.
func (d *differ) walkStruct(path string, got, want reflect.Value, depth int) {
	t := got.Type()
	opaque := true
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).IsExported() {
			opaque = false
		}
	}
	if opaque && t.NumField() > 0 {
		inner := differ{seen: d.seen, signedZeros: d.signedZeros}
		for i := 0; i < t.NumField(); i++ {
			inner.walk(path+"."+t.Field(i).Name, got.Field(i), want.Field(i), depth+1)
		}
		if len(inner.out) > 0 {
			d.report(path, got, want, " (first inner difference: "+inner.out[0]+")")
		}
		return
	}
	for i := 0; i < t.NumField(); i++ {
		d.walk(path+"."+t.Field(i).Name, got.Field(i), want.Field(i), depth+1)
	}
}

// visit reports whether the pair (got, want) of references is compared for
// the first time. Identical references are equal, as for DeepEqual (a
// slice only with the same length, which the caller checked).
func (d *differ) visit(got, want reflect.Value) bool {
	gp, wp := got.Pointer(), want.Pointer()
	if gp == wp {
		return false
	}
	k := visitKey{gp, wp, got.Type()}
	if d.seen[k] {
		return false
	}
	d.seen[k] = true
	return true
}

type visitKey struct {
	got, want uintptr
	typ       reflect.Type
}

func isNaNComplex(c complex128) bool { return math.IsNaN(real(c)) || math.IsNaN(imag(c)) }

// checkEqual fails t when got and want differ (see diffValues), listing
// every difference.
func checkEqual(t *testing.T, what string, got, want any) bool {
	t.Helper()
	diffs := diffValues(got, want)
	if len(diffs) == 0 {
		return true
	}
	t.Errorf("%s differs from GORM's result:\n\t%s", what, strings.Join(diffs, "\n\t"))
	return false
}
