package bincodec

import (
	"math"
	"reflect"
	"strings"
	"time"
	"unsafe"
)

// row is the benchmark struct: a typical GORM model row.
type row struct {
	ID        int64     `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Bio       string    `json:"bio"`
	Tags      []string  `json:"tags"`
	Score     float64   `json:"score"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Version   uint64    `json:"version"`
}

func benchRow() row {
	created := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	return row{
		ID:        42,
		Email:     "user42@example.com",
		Name:      "Ada Lovelace",
		Bio:       strings.Repeat("Analyst, metaphysician and founder of scientific computing. ", 2)[:110],
		Tags:      []string{"math", "engines"},
		Score:     97.5,
		Active:    true,
		CreatedAt: created,
		UpdatedAt: created.Add(7 * time.Minute),
		Version:   7,
	}
}

// equalBits is reflect.DeepEqual except that floats (and complex numbers)
// compare by their bits, so NaN equals the same NaN and -0 differs from +0.
func equalBits(x, y any) bool {
	return equalWith(x, y, false)
}

// equalZonesByName is equalBits except that times compare by instant, zone
// name and offset, not by *time.Location. The format identifies a location
// by name and offset at that instant; two different locations agreeing on
// both (a FixedZone("America/New_York", -17762) and the real zone in 1850)
// decode as the one the process encoded last under that name, so decoding
// the same bytes twice may give either if the process encoded the other in
// between, as the fuzzer does.
func equalZonesByName(x, y any) bool {
	return equalWith(x, y, true)
}

func equalWith(x, y any, zonesByName bool) bool {
	vx, vy := reflect.ValueOf(x), reflect.ValueOf(y)
	if !vx.IsValid() || !vy.IsValid() {
		return vx.IsValid() == vy.IsValid()
	}
	if vx.Type() != vy.Type() {
		return false
	}
	e := equality{seen: map[[2]unsafe.Pointer]bool{}, zonesByName: zonesByName}
	return e.values(vx, vy)
}

type equality struct {
	seen        map[[2]unsafe.Pointer]bool
	zonesByName bool
}

var timeKinds = map[reflect.Type]bool{timeType: true, reflect.TypeFor[myTime](): true}

// readTime reads a time.Time-shaped value, also one reached through an
// unexported field (whose Interface method panics).
func readTime(v reflect.Value) time.Time {
	type layout struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	l := layout{v.Field(0).Uint(), v.Field(1).Int(), (*time.Location)(v.Field(2).UnsafePointer())}
	return *(*time.Time)(unsafe.Pointer(&l))
}

func (e *equality) values(x, y reflect.Value) bool {
	if e.zonesByName && timeKinds[x.Type()] {
		tx, ty := readTime(x), readTime(y)
		_, ox := tx.Zone()
		_, oy := ty.Zone()
		return tx.Equal(ty) && tx.Unix() == ty.Unix() && ox == oy && tx.Location().String() == ty.Location().String()
	}
	seen := e.seen
	switch x.Kind() {
	case reflect.Float32, reflect.Float64:
		return math.Float64bits(x.Float()) == math.Float64bits(y.Float())
	case reflect.Complex64, reflect.Complex128:
		cx, cy := x.Complex(), y.Complex()
		return math.Float64bits(real(cx)) == math.Float64bits(real(cy)) && math.Float64bits(imag(cx)) == math.Float64bits(imag(cy))
	case reflect.Pointer:
		if x.IsNil() || y.IsNil() {
			return x.IsNil() == y.IsNil()
		}
		k := [2]unsafe.Pointer{x.UnsafePointer(), y.UnsafePointer()}
		if x.UnsafePointer() == y.UnsafePointer() || seen[k] {
			return true
		}
		seen[k] = true
		return e.values(x.Elem(), y.Elem())
	case reflect.Interface:
		if x.IsNil() || y.IsNil() {
			return x.IsNil() == y.IsNil()
		}
		if x.Elem().Type() != y.Elem().Type() {
			return false
		}
		return e.values(x.Elem(), y.Elem())
	case reflect.Slice:
		if x.IsNil() != y.IsNil() || x.Len() != y.Len() {
			return false
		}
		if x.Len() == 0 || x.UnsafePointer() == y.UnsafePointer() {
			return true
		}
		for i := range x.Len() {
			if !e.values(x.Index(i), y.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Array:
		for i := range x.Len() {
			if !e.values(x.Index(i), y.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if x.IsNil() != y.IsNil() || x.Len() != y.Len() {
			return false
		}
		it := x.MapRange()
		for it.Next() {
			yv := y.MapIndex(it.Key())
			if !yv.IsValid() || !e.values(it.Value(), yv) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := range x.NumField() {
			if !e.values(x.Field(i), y.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Bool:
		return x.Bool() == y.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return x.Int() == y.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return x.Uint() == y.Uint()
	case reflect.String:
		return x.String() == y.String()
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return x.Pointer() == y.Pointer()
	}
	return false
}
