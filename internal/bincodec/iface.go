package bincodec

import (
	"reflect"
	"unicode/utf8"
	"unsafe"

	gojson "github.com/goccy/go-json"
)

// Interface-typed values (any, error, fmt.Stringer, ...) carry their dynamic
// type, which a positional format cannot describe, so they are encoded as
// JSON with github.com/goccy/go-json: a uvarint length (0 = nil interface),
// then the JSON text. Decoding unmarshals that JSON into the interface, with
// exactly the semantics of a JSON codec: an `any` comes back as nil, bool,
// float64, string, []any or map[string]any.
//
// A non-empty interface type (one with methods) cannot be decoded from JSON,
// so a non-nil value in such a field is rejected at Marshal time with
// ErrUnsupported rather than producing an entry that never decodes. The JSON
// must be valid UTF-8 (go-json's output always is); raw invalid bytes in it
// are ErrCorrupt.

func buildInterface(p *plan) {
	t := p.typ
	p.minSize = 1
	empty := t.NumMethod() == 0
	p.enc = func(buf []byte, ptr unsafe.Pointer, depth int) ([]byte, error) {
		v := reflect.NewAt(t, ptr).Elem()
		if v.IsNil() {
			return append(buf, 0), nil
		}
		if !empty {
			return buf, unsupportedf("non-nil %s in interface type %s (only the empty interface can be decoded)", v.Elem().Type(), t)
		}
		if depth >= maxDepth {
			return buf, unsupportedf("nesting deeper than %d (cycle?) at %s", maxDepth, t)
		}
		js, err := gojson.Marshal(v.Interface())
		if err != nil {
			return buf, wrapUnsupported(err, "JSON-encoding %s held in %s", v.Elem().Type(), t)
		}
		if !utf8.Valid(js) { // only possible through a MarshalJSON method
			return buf, unsupportedf("JSON of %s held in %s is not valid UTF-8", v.Elem().Type(), t)
		}
		buf = appendUvarint(buf, uint64(len(js)))
		return append(buf, js...), nil
	}
	p.dec = func(b []byte, i int, ptr unsafe.Pointer, depth int) (int, error) {
		n, j, err := readLen(b, i, "interface JSON")
		if err != nil {
			return j, err
		}
		v := reflect.NewAt(t, ptr)
		v.Elem().SetZero()
		if n == 0 {
			return j, nil
		}
		if depth >= maxDepth {
			return j, corruptf("nesting deeper than %d at offset %d", maxDepth, i)
		}
		js := b[j : j+n : j+n]
		if !utf8.Valid(js) {
			// The encoder never writes it, and go-json would decode the raw
			// bytes into strings that do not re-encode to themselves.
			return j, corruptf("interface JSON at offset %d is not valid UTF-8", i)
		}
		if err := gojson.Unmarshal(js, v.Interface()); err != nil {
			return j, wrapCorrupt(err, "interface JSON at offset %d", i)
		}
		return j + n, nil
	}
}
