package bincodec

import (
	"encoding/binary"
	"reflect"
	"sync"
	"unsafe"
)

// Unmarshal decodes data into v, which must be a non-nil pointer. Strings in the
// result may alias data (zero-copy): the caller guarantees data is never modified
// afterwards. []byte values are always copied. Unmarshal does not retain data otherwise.
//
// data must come from Marshal or Append of a value of type T or *T (or **T,
// ...) where v is a *T (or **T, ...); the type is not checked (callers pair
// entries with a fingerprint of the type). Every encoded part of the target
// is overwritten and pointers, slices and maps are freshly allocated, never
// reused. Malformed input yields an error wrapping ErrCorrupt, never a panic;
// trailing bytes after the value are an error too. A type the codec refuses
// (see Check) is ErrUnsupported, and so is a target of interface type (*any,
// *error, ...): Marshal only sees the dynamic type of its argument, so the
// bytes cannot be decoded without it.
func Unmarshal(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return unsupportedf("Unmarshal needs a non-nil pointer, got %T", v)
	}
	top, err := decTopFor(rv.Type())
	if err != nil {
		return err
	}
	return top.decode(data, rv.UnsafePointer())
}

// decTop is the compiled top level of Unmarshal for one target type *X:
// when X is itself a pointer type, a pointer chain is allocated down to the
// non-pointer base type, mirroring how Marshal follows pointers.
type decTop struct {
	base  *plan
	elems []reflect.Type // the types to allocate below the target, outermost first
}

// decTops caches *decTop by the type of the Unmarshal target.
var decTops sync.Map

func decTopFor(t reflect.Type) (*decTop, error) {
	if v, ok := decTops.Load(t); ok {
		return v.(*decTop), nil
	}
	top := &decTop{}
	bt := t.Elem()
	for bt.Kind() == reflect.Pointer {
		bt = bt.Elem()
		top.elems = append(top.elems, bt)
	}
	// An interface type bt (Unmarshal into *any) is refused by planFor:
	// Marshal only ever sees the dynamic type of its argument, so the target
	// must have that concrete type.
	base, err := planFor(bt)
	if err != nil {
		return nil, err
	}
	top.base = base
	v, _ := decTops.LoadOrStore(t, top)
	return v.(*decTop), nil
}

func (top *decTop) decode(data []byte, p unsafe.Pointer) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = corruptf("panic while decoding %s: %v", top.base.typ, r)
		}
	}()
	if len(data) == 0 {
		return corruptf("empty input")
	}
	switch data[0] {
	case topNil:
		if len(data) != 1 {
			return corruptf("%d trailing bytes after nil", len(data)-1)
		}
		if len(top.elems) > 0 {
			*(*unsafe.Pointer)(p) = nil
		} else {
			reflect.NewAt(top.base.typ, p).Elem().SetZero()
		}
		return nil
	case topValue:
	default:
		return corruptf("invalid header byte %#x", data[0])
	}
	for _, et := range top.elems {
		q := reflect.New(et).UnsafePointer()
		*(*unsafe.Pointer)(p) = q
		p = q
	}
	i, err := top.base.dec(data, 1, p, 0)
	if err != nil {
		return err
	}
	if i != len(data) {
		return corruptf("%d trailing bytes after the value", len(data)-i)
	}
	return nil
}

// --- composite decoders ----------------------------------------------------

func decStruct(fields []field) decFn {
	return func(b []byte, i int, p unsafe.Pointer, depth int) (int, error) {
		var err error
		for k := range fields {
			f := &fields[k]
			fp := unsafe.Add(p, f.off)
			switch f.op {
			case opString:
				var s string
				s, i, err = readString(b, i)
				*(*string)(fp) = s
			case opInt64:
				var v int64
				v, i, err = readVarint(b, i)
				*(*int64)(fp) = v
			case opInt:
				i, err = decSigned[int](b, i, fp, depth)
			case opInt32:
				i, err = decSigned[int32](b, i, fp, depth)
			case opUint64:
				var v uint64
				v, i, err = readUvarint(b, i)
				*(*uint64)(fp) = v
			case opUint:
				i, err = decUnsigned[uint](b, i, fp, depth)
			case opUint32:
				i, err = decUnsigned[uint32](b, i, fp, depth)
			case opBool:
				if i < len(b) && b[i] <= 1 {
					*(*bool)(fp) = b[i] == 1
					i++
				} else {
					i, err = decBool(b, i, fp, depth) // reports the error
				}
			case opFloat64:
				if len(b)-i >= 8 {
					*(*uint64)(fp) = binary.LittleEndian.Uint64(b[i:])
					i += 8
				} else {
					err = errTruncated(i, "float64")
				}
			case opTime:
				i, err = decTime(b, i, fp, depth)
			case opStrings:
				i, err = decStrings(b, i, fp, depth)
			case opBytes:
				i, err = decBytes(b, i, fp, depth)
			default:
				i, err = f.plan.dec(b, i, fp, depth)
			}
			if err != nil {
				return i, err
			}
		}
		return i, nil
	}
}

func decPointer(elem *plan) decFn {
	return func(b []byte, i int, p unsafe.Pointer, depth int) (int, error) {
		if i >= len(b) {
			return i, errTruncated(i, "pointer")
		}
		switch b[i] {
		case 0:
			*(*unsafe.Pointer)(p) = nil
			return i + 1, nil
		case 1:
		default:
			return i, corruptf("invalid pointer presence byte %#x at offset %d", b[i], i)
		}
		i++
		if elem.minSize > len(b)-i {
			return i, errTruncated(i, elem.typ.String())
		}
		if depth >= maxDepth {
			return i, corruptf("nesting deeper than %d at offset %d", maxDepth, i)
		}
		q := reflect.New(elem.typ).UnsafePointer()
		j, err := elem.dec(b, i, q, depth+1)
		if err != nil {
			return j, err
		}
		*(*unsafe.Pointer)(p) = q
		return j, nil
	}
}

// zeroBase is the data pointer of decoded empty, non-nil slices.
var zeroBase [0]uint64

func decSlice(t reflect.Type, elem *plan) decFn {
	return func(b []byte, i int, p unsafe.Pointer, depth int) (int, error) {
		v, j, err := readUvarint(b, i)
		if err != nil {
			return j, err
		}
		h := (*sliceHeader)(p)
		if v == 0 {
			*h = sliceHeader{}
			return j, nil
		}
		n := v - 1
		// Every element takes at least max(minSize, 1) bytes (padding).
		if n > uint64(len(b)-j)/uint64(max(elem.minSize, 1)) {
			return j, errLength(i, n, t.String())
		}
		if depth >= maxDepth {
			return j, corruptf("nesting deeper than %d at offset %d", maxDepth, i)
		}
		if n == 0 {
			*h = sliceHeader{data: unsafe.Pointer(&zeroBase)}
			return j, nil
		}
		*h = sliceHeader{}
		sv := reflect.NewAt(t, p).Elem()
		sv.Grow(int(n)) // allocates the zeroed backing array in place
		sv.SetLen(int(n))
		if elem.minSize == 0 {
			for _, c := range b[j : j+int(n)] {
				if c != 0 {
					return j, corruptf("invalid padding in %s at offset %d", t, i)
				}
			}
			return j + int(n), nil
		}
		data := h.data
		for k := range int(n) {
			if j, err = elem.dec(b, j, unsafe.Add(data, uintptr(k)*elem.size), depth+1); err != nil {
				return j, err
			}
		}
		return j, nil
	}
}

func decByteArray(n int) decFn {
	return func(b []byte, i int, p unsafe.Pointer, _ int) (int, error) {
		if len(b)-i < n {
			return i, errTruncated(i, "byte array")
		}
		copy(unsafe.Slice((*byte)(p), n), b[i:])
		return i + n, nil
	}
}

func decArray(n int, elem *plan) decFn {
	minLen := satMul(n, elem.minSize)
	return func(b []byte, i int, p unsafe.Pointer, depth int) (int, error) {
		if len(b)-i < minLen {
			return i, errTruncated(i, "array")
		}
		var err error
		for k := range n {
			if i, err = elem.dec(b, i, unsafe.Add(p, uintptr(k)*elem.size), depth); err != nil {
				return i, err
			}
		}
		return i, nil
	}
}

func decMap(t reflect.Type, key, val *plan) decFn {
	kt, vt := t.Key(), t.Elem()
	return func(b []byte, i int, p unsafe.Pointer, depth int) (int, error) {
		v, j, err := readUvarint(b, i)
		if err != nil {
			return j, err
		}
		if v == 0 {
			*(*unsafe.Pointer)(p) = nil // a map value is one pointer
			return j, nil
		}
		n := v - 1
		pad := key.minSize == 0 && val.minSize == 0
		pairMin := uint64(satAdd(key.minSize, val.minSize))
		if pad {
			pairMin = 1
		}
		if n > uint64(len(b)-j)/pairMin {
			return j, errLength(i, n, t.String())
		}
		if depth >= maxDepth {
			return j, corruptf("nesting deeper than %d at offset %d", maxDepth, i)
		}
		m := reflect.MakeMapWithSize(t, int(n))
		if n > 0 {
			kv := reflect.New(kt).Elem()
			vv := reflect.New(vt).Elem()
			kp, vp := kv.Addr().UnsafePointer(), vv.Addr().UnsafePointer()
			for range int(n) {
				if pad {
					if b[j] != 0 {
						return j, corruptf("invalid padding in %s at offset %d", t, j)
					}
					j++
				} else {
					if j, err = key.dec(b, j, kp, depth+1); err != nil {
						return j, err
					}
					if j, err = val.dec(b, j, vp, depth+1); err != nil {
						return j, err
					}
				}
				m.SetMapIndex(kv, vv)
			}
		}
		reflect.NewAt(t, p).Elem().Set(m)
		return j, nil
	}
}
