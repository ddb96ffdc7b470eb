package cache

import (
	"encoding"
	"encoding/json"
	"hash/fnv"
	"io"
	"reflect"
	"strconv"
	"sync"
)

// typeFingerprints caches the structural hash of each type (reflect.Type →
// uint64). A type's structure never changes within a process.
var typeFingerprints sync.Map

// typeFingerprint hashes the shape of t: kinds, field names, field types, tags
// and embedding, recursively. Two builds of a program whose cached struct
// gained, lost, renamed or retyped a field get different fingerprints, so an
// entry written by one is a miss (never a wrong decode) for the other.
func typeFingerprint(t reflect.Type) uint64 {
	if v, ok := typeFingerprints.Load(t); ok {
		return v.(uint64)
	}
	h := fnv.New64a()
	writeType(h, t, map[reflect.Type]int{})
	fp := h.Sum64()
	typeFingerprints.Store(t, fp)
	return fp
}

func writeType(w io.Writer, t reflect.Type, seen map[reflect.Type]int) {
	if id, ok := seen[t]; ok { // recursive type: refer back
		io.WriteString(w, "@"+strconv.Itoa(id))
		return
	}
	seen[t] = len(seen)
	io.WriteString(w, t.Kind().String())
	if t.PkgPath() != "" || t.Name() != "" {
		io.WriteString(w, "<"+t.PkgPath()+"."+t.Name()+">")
	}
	// Codecs choose an encoding by the methods a type has: a deploy that
	// adds or removes one changes the bytes, so it changes the fingerprint.
	pt := reflect.PointerTo(t)
	for i, m := range marshalerTypes {
		if pt.Implements(m) {
			io.WriteString(w, "+m"+strconv.Itoa(i))
		}
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice:
		writeType(w, t.Elem(), seen)
	case reflect.Array:
		io.WriteString(w, "["+strconv.Itoa(t.Len())+"]")
		writeType(w, t.Elem(), seen)
	case reflect.Map:
		writeType(w, t.Key(), seen)
		writeType(w, t.Elem(), seen)
	case reflect.Struct:
		io.WriteString(w, "{")
		for i := range t.NumField() {
			f := t.Field(i)
			io.WriteString(w, f.Name+" "+strconv.Quote(string(f.Tag)))
			if f.Anonymous {
				io.WriteString(w, " embedded")
			}
			writeType(w, f.Type, seen)
			io.WriteString(w, ";")
		}
		io.WriteString(w, "}")
	}
}

var marshalerTypes = []reflect.Type{
	reflect.TypeFor[encoding.BinaryMarshaler](), reflect.TypeFor[encoding.BinaryUnmarshaler](),
	reflect.TypeFor[encoding.TextMarshaler](), reflect.TypeFor[encoding.TextUnmarshaler](),
	reflect.TypeFor[json.Marshaler](), reflect.TypeFor[json.Unmarshaler](),
}

// schemaOf is the fingerprint stored in entries of type T for a codec: the
// type's shape mixed with the codec's name.
func schemaOf(t reflect.Type, codecHash uint64) uint64 {
	fp := typeFingerprint(t) ^ codecHash
	if fp == 0 { // 0 is reserved for tombstones
		fp = 1
	}
	return fp
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	io.WriteString(h, s)
	return h.Sum64()
}
