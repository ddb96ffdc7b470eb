package fidelity

import (
	"math/big"
	"reflect"
	"time"
	"unsafe"
)

var (
	timeType     = reflect.TypeFor[time.Time]()
	locationType = reflect.TypeFor[time.Location]()
	bigIntType   = reflect.TypeFor[big.Int]()
)

// mutateAll changes everything reachable from the value v points to, in
// place where the memory could be shared with something else: strings and
// scalars reassigned, byte slices overwritten, slice elements and pointees
// changed, map entries changed, added and deleted, interfaces' contents
// changed. Unexported fields are changed too (their scalars and strings),
// but pointers, slices and maps behind them are not followed: they may lead
// to state shared by design (a *time.Location, a *big.Int's words), which no
// caller can reach either.
func mutateAll(v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		panic("mutateAll needs a non-nil pointer")
	}
	m := mutator{seen: map[uintptr]bool{}}
	m.mutate(rv.Elem(), false, 0)
}

type mutator struct {
	seen map[uintptr]bool // pointees, slices and maps already mutated
}

func (m *mutator) once(p uintptr) bool {
	if p == 0 || m.seen[p] {
		return false
	}
	m.seen[p] = true
	return true
}

// mutate changes v, which is settable; hidden says v was reached through an
// unexported field.
func (m *mutator) mutate(v reflect.Value, hidden bool, depth int) {
	if depth > 50 {
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "·mutated")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() ^ 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		v.SetUint(v.Uint() ^ 1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float()*2 + 1)
	case reflect.Complex64, reflect.Complex128:
		v.SetComplex(v.Complex() + 1)
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			m.mutate(v.Index(i), hidden, depth+1)
		}
	case reflect.Slice:
		if hidden || v.Len() == 0 || !m.once(v.Pointer()) {
			return
		}
		for i := 0; i < v.Len(); i++ { // elements of a slice are settable
			m.mutate(v.Index(i), false, depth+1)
		}
	case reflect.Map:
		if hidden || v.IsNil() || !m.once(v.Pointer()) {
			return
		}
		keys := v.MapKeys()
		for _, k := range keys {
			cp := reflect.New(v.Type().Elem()).Elem()
			cp.Set(v.MapIndex(k))
			m.mutate(cp, false, depth+1)
			v.SetMapIndex(k, cp)
		}
		if len(keys) > 0 {
			v.SetMapIndex(keys[0], reflect.Value{}) // delete one
		}
		if kt := v.Type().Key(); kt.Kind() == reflect.String {
			v.SetMapIndex(reflect.ValueOf("added-by-mutation").Convert(kt), reflect.New(v.Type().Elem()).Elem())
		}
	case reflect.Pointer:
		if hidden || v.IsNil() || v.Type().Elem() == locationType || v.Type().Elem() == bigIntType || !m.once(v.Pointer()) {
			return
		}
		m.mutate(v.Elem(), false, depth+1)
	case reflect.Interface:
		if hidden {
			return
		}
		if v.IsNil() {
			v.Set(reflect.ValueOf("set-by-mutation"))
			return
		}
		e := v.Elem()
		switch e.Kind() {
		case reflect.Map, reflect.Pointer:
			m.mutate(e, false, depth+1) // in place: the interface holds a reference
		case reflect.Slice:
			m.mutate(e, false, depth+1) // elements in place
			v.Set(reflect.Append(e, reflect.Zero(e.Type().Elem())))
		default:
			cp := reflect.New(e.Type()).Elem()
			cp.Set(e)
			m.mutate(cp, false, depth+1)
			v.Set(cp)
		}
	case reflect.Struct:
		if v.Type() == timeType {
			if v.CanSet() {
				v.Set(reflect.ValueOf(v.Interface().(time.Time).Add(time.Hour + time.Nanosecond)))
			}
			return
		}
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			unexported := !v.Type().Field(i).IsExported()
			if !f.CanSet() {
				if !f.CanAddr() {
					continue
				}
				f = reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
			}
			m.mutate(f, hidden || unexported, depth+1)
		}
	}
}
