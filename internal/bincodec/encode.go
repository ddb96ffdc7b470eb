package bincodec

import (
	"encoding/binary"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Marshal encodes v (any value, usually a struct or pointer to one).
//
// Marshal(x) and Marshal(&x) produce the same bytes, which Unmarshal decodes
// into a *T (or **T, ...) whose T is the type of x. A nil pointer (or a nil
// v) encodes as "nil", which decodes as a nil pointer or a zero value. Map
// entries are written in Go's map iteration order, so the encoding of a
// value containing a map with several entries is not deterministic.
func Marshal(v any) ([]byte, error) {
	t := reflect.TypeOf(v)
	if t == nil {
		return []byte{topNil}, nil
	}
	top, err := encTopFor(t)
	if err != nil {
		return nil, err
	}
	buf, err := top.append(make([]byte, 0, top.hint.Load()), v)
	if err != nil {
		return nil, err
	}
	if n := int64(len(buf)); n != top.hint.Load() && n <= maxHint {
		top.hint.Store(n)
	}
	if cap(buf) > 2*len(buf)+64 {
		// The previous value was much larger: do not hand out (and let a
		// cache retain) a mostly unused buffer.
		buf = append([]byte(nil), buf...)
	}
	return buf, nil
}

// Append appends the encoding of v to dst and returns the extended buffer.
// On error the returned slice has the length of dst.
func Append(dst []byte, v any) ([]byte, error) {
	t := reflect.TypeOf(v)
	if t == nil {
		return append(dst, topNil), nil
	}
	top, err := encTopFor(t)
	if err != nil {
		return dst, err
	}
	buf, err := top.append(dst, v)
	if err != nil {
		return dst, err
	}
	return buf, nil
}

// The first byte of every encoding says whether a value follows.
const (
	topNil   = 0
	topValue = 1
)

// maxHint caps the per-type guess of Marshal's output size.
const maxHint = 64 << 10

// encTop is the compiled top level of Marshal for one dynamic type: up to
// levels pointer indirections are followed before encoding with base.
type encTop struct {
	base   *plan
	levels int
	// direct reports that the interface data word of a non-pointer value is
	// the value itself (a map, or a struct/array holding one pointer) rather
	// than a pointer to it.
	direct bool
	// hint is the length of the last output of Marshal (capped at maxHint),
	// Marshal's initial capacity: one allocation for values of stable size.
	hint atomic.Int64
}

// encTops caches *encTop by the dynamic type given to Marshal/Append.
var encTops sync.Map

func encTopFor(t reflect.Type) (*encTop, error) {
	if v, ok := encTops.Load(t); ok {
		return v.(*encTop), nil
	}
	top := &encTop{}
	bt := t
	for bt.Kind() == reflect.Pointer {
		bt = bt.Elem()
		top.levels++
	}
	base, err := planFor(bt)
	if err != nil {
		return nil, err
	}
	top.base = base
	if top.levels == 0 {
		top.direct = isDirectIface(t)
	}
	v, _ := encTops.LoadOrStore(t, top)
	return v.(*encTop), nil
}

// eface is the layout of an empty interface.
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

func (top *encTop) append(dst []byte, v any) (buf []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			buf, err = dst, unsupportedf("panic while encoding %T: %v", v, r)
		}
	}()
	p := (*eface)(unsafe.Pointer(&v)).data
	switch {
	case top.levels > 0:
		for range top.levels - 1 {
			if p == nil {
				break
			}
			p = *(*unsafe.Pointer)(p)
		}
	case top.direct:
		word := p // escapes: only this rare path allocates
		p = unsafe.Pointer(&word)
	}
	if p == nil {
		return append(dst, topNil), nil
	}
	return top.base.enc(append(dst, topValue), p, 0)
}

// isDirectIface reports whether the compiler stores values of t directly in
// an interface's data word. Pointer-shaped kinds always are; a struct or
// array of pointer size may be (the exact rule has changed between Go
// releases), so it is probed: a value holding a sentinel pointer is boxed by
// reflect and the data word compared with the sentinel.
func isDirectIface(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	case reflect.Struct, reflect.Array:
	default:
		return false
	}
	if t.Size() != unsafe.Sizeof(uintptr(0)) {
		return false
	}
	sentinel := new(int)
	pv := reflect.New(t)
	*(*unsafe.Pointer)(pv.UnsafePointer()) = unsafe.Pointer(sentinel)
	boxed := pv.Elem().Interface()
	direct := (*eface)(unsafe.Pointer(&boxed)).data == unsafe.Pointer(sentinel)
	*(*unsafe.Pointer)(pv.UnsafePointer()) = nil
	return direct
}

// --- composite encoders ----------------------------------------------------

func encStruct(fields []field) encFn {
	return func(buf []byte, p unsafe.Pointer, depth int) ([]byte, error) {
		var err error
		for k := range fields {
			f := &fields[k]
			fp := unsafe.Add(p, f.off)
			switch f.op {
			case opString:
				buf = appendString(buf, *(*string)(fp))
			case opInt64:
				buf = appendVarint(buf, *(*int64)(fp))
			case opInt:
				buf = appendVarint(buf, int64(*(*int)(fp)))
			case opInt32:
				buf = appendVarint(buf, int64(*(*int32)(fp)))
			case opUint64:
				buf = appendUvarint(buf, *(*uint64)(fp))
			case opUint:
				buf = appendUvarint(buf, uint64(*(*uint)(fp)))
			case opUint32:
				buf = appendUvarint(buf, uint64(*(*uint32)(fp)))
			case opBool:
				if *(*bool)(fp) {
					buf = append(buf, 1)
				} else {
					buf = append(buf, 0)
				}
			case opFloat64:
				buf = binary.LittleEndian.AppendUint64(buf, *(*uint64)(fp))
			case opTime:
				buf, err = encTime(buf, fp, depth)
			case opStrings:
				buf, err = encStrings(buf, fp, depth)
			case opBytes:
				buf, err = encBytes(buf, fp, depth)
			default:
				buf, err = f.plan.enc(buf, fp, depth)
			}
			if err != nil {
				return buf, err
			}
		}
		return buf, nil
	}
}

func encPointer(elem *plan) encFn {
	return func(buf []byte, p unsafe.Pointer, depth int) ([]byte, error) {
		q := *(*unsafe.Pointer)(p)
		if q == nil {
			return append(buf, 0), nil
		}
		if depth >= maxDepth {
			return buf, unsupportedf("pointers nested deeper than %d (cycle?) at %s", maxDepth, elem.typ)
		}
		return elem.enc(append(buf, 1), q, depth+1)
	}
}

// sliceHeader is the layout of a slice.
type sliceHeader struct {
	data unsafe.Pointer
	len  int
	cap  int
}

// Slices: uvarint length+1 (0 = nil), then the elements. Elements whose
// encoding is always empty (struct{}, structs without encoded fields) take
// one zero byte each, so that every element occupies at least one byte and
// no length can exceed the input it came with.
func encSlice(elem *plan) encFn {
	return func(buf []byte, p unsafe.Pointer, depth int) ([]byte, error) {
		h := (*sliceHeader)(p)
		if h.data == nil {
			return append(buf, 0), nil
		}
		buf = appendUvarint(buf, uint64(h.len)+1)
		if elem.minSize == 0 {
			return append(buf, make([]byte, h.len)...), nil
		}
		if depth >= maxDepth {
			return buf, unsupportedf("slices nested deeper than %d (cycle?) at %s", maxDepth, elem.typ)
		}
		var err error
		for k := range h.len {
			if buf, err = elem.enc(buf, unsafe.Add(h.data, uintptr(k)*elem.size), depth+1); err != nil {
				return buf, err
			}
		}
		return buf, nil
	}
}

func encByteArray(n int) encFn {
	return func(buf []byte, p unsafe.Pointer, _ int) ([]byte, error) {
		return append(buf, unsafe.Slice((*byte)(p), n)...), nil
	}
}

func encArray(n int, elem *plan) encFn {
	return func(buf []byte, p unsafe.Pointer, depth int) ([]byte, error) {
		var err error
		for k := range n {
			if buf, err = elem.enc(buf, unsafe.Add(p, uintptr(k)*elem.size), depth); err != nil {
				return buf, err
			}
		}
		return buf, nil
	}
}

// Maps: uvarint length+1 (0 = nil), then key/value pairs in iteration order
// (a pair whose encoding is always empty takes one zero byte).
func encMap(t reflect.Type, key, val *plan) encFn {
	return func(buf []byte, p unsafe.Pointer, depth int) ([]byte, error) {
		m := reflect.NewAt(t, p).Elem()
		if m.IsNil() {
			return append(buf, 0), nil
		}
		n := m.Len()
		buf = appendUvarint(buf, uint64(n)+1)
		if n == 0 {
			return buf, nil
		}
		if depth >= maxDepth {
			return buf, unsupportedf("maps nested deeper than %d (cycle?) at %s", maxDepth, t)
		}
		pad := key.minSize == 0 && val.minSize == 0
		kv := reflect.New(t.Key()).Elem()
		vv := reflect.New(t.Elem()).Elem()
		kp, vp := kv.Addr().UnsafePointer(), vv.Addr().UnsafePointer()
		var err error
		count := 0
		for it := m.MapRange(); it.Next(); count++ {
			if count == n {
				return buf, unsupportedf("map %s modified during Marshal", t)
			}
			kv.SetIterKey(it)
			vv.SetIterValue(it)
			if pad {
				buf = append(buf, 0)
				continue
			}
			if buf, err = key.enc(buf, kp, depth+1); err != nil {
				return buf, err
			}
			if buf, err = val.enc(buf, vp, depth+1); err != nil {
				return buf, err
			}
		}
		if count != n {
			return buf, unsupportedf("map %s modified during Marshal", t)
		}
		return buf, nil
	}
}
