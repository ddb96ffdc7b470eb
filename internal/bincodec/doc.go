// Package bincodec is a fast positional binary encoding of Go values, the
// default codec of the cache.
//
// # Precondition: the type is fixed externally
//
// The format carries no field names, types or lengths of fixed-size values:
// an encoding of a value of type T can only be decoded into a T. The cache
// stores every entry with a fingerprint of T's structure (field names, types,
// tags, embedding, computed elsewhere) and treats a mismatch as a miss, so a
// decoder never sees bytes written for another type. Within that contract the
// codec never returns a silently wrong value: Unmarshal(Marshal(v)) equals v
// (see the exceptions below), and bytes that are not a valid encoding of the
// target type (truncated, random, trailing garbage) yield ErrCorrupt, never a
// panic, and never an allocation that the input length does not justify.
//
// # Format
//
// An encoding is one header byte (0: nil, 1: a value follows) then the value:
//
//   - bool, int8, uint8: one byte (bool strictly 0 or 1);
//   - other signed integers: zigzag varint; other unsigned integers and
//     uintptr: uvarint; out-of-range values for the target size are corrupt;
//   - float32/64: 4/8 bytes of little-endian IEEE-754 bits (NaN payloads and
//     -0 survive); complex64/128: real then imaginary part;
//   - string: uvarint length, bytes;
//   - slice ([]byte included): uvarint length+1 with 0 meaning nil, so nil
//     and empty round-trip distinctly; then the elements (an element whose
//     encoding is always empty, like struct{}, is one zero byte, so that no
//     length can exceed the input);
//   - array: the elements (a [N]byte is N raw bytes);
//   - map: like a slice, then key/value pairs in iteration order;
//   - pointer: a presence byte (0/1), then the pointee;
//   - struct: its encoded fields in declaration order, nothing else;
//   - time.Time: a length byte, then time's own binary format;
//   - types with marshaler methods: uvarint length, the method's bytes;
//   - interface values: uvarint length (0: nil), JSON text.
//
// Marshal follows top-level pointers (Marshal(x) == Marshal(&x)), and
// Unmarshal allocates them (decoding into **T works), so a cache of T and a
// cache of *T share the format; a nil top-level pointer is the nil header.
//
// # Which encoding a type gets
//
// Named types are encoded by their underlying kind unless they encode
// themselves. For a type T the method set of *T decides, in this order:
//
//  1. encoding.BinaryMarshaler + BinaryUnmarshaler (time.Time, netip.Addr);
//  2. a struct whose fields are all exported is encoded structurally, even if
//     it has JSON or text marshalers: gorm.DeletedAt, sql.NullString and the
//     like take the fast path;
//  3. encoding.TextMarshaler + TextUnmarshaler;
//  4. json.Marshaler + json.Unmarshaler (the method's bytes, verbatim);
//  5. structural, except that a struct type defined as time.Time (type
//     MyTime time.Time, which has none of time.Time's methods and would
//     encode nothing) uses time.Time's format.
//
// Marshaler methods promoted from an embedded field are ignored (they would
// drop the outer struct's other fields); see marshaler.go. Structural
// encoding of a struct covers its exported fields, embedded ones included
// (recursively, as a nested value), skipping fields tagged `json:"-"`, plus
// unexported embedded fields of struct or pointer-to-struct type, whose
// exported fields encoding/json promotes. Other unexported fields are not
// encoded, exactly as with a JSON codec: they decode as zero. Interface-typed values are encoded
// as JSON with github.com/goccy/go-json and decoded with it, with a JSON
// codec's semantics (an `any` holding an int comes back as a float64);
// non-nil values in non-empty interface types cannot be decoded from JSON and
// are rejected by Marshal. Channels, functions and unsafe pointers are
// ErrUnsupported, as is a pointer/slice/map nesting deeper than 1000 levels
// (which is how a cycle is detected).
//
// # Zero-copy strings
//
// Decoded strings point into the input (except empty strings, which do not):
// the caller must never modify the input after Unmarshal. []byte values are
// always copied, and Unmarshal keeps no other reference to the input (the
// Unmarshal methods of self-encoding types receive a sub-slice and, by their
// interfaces' contracts, copy what they keep).
//
// # Exceptions to exact round trips
//
// They are those of any codec built on the same methods: time.Time loses its
// monotonic reading and the name of a zone other than UTC and Local;
// unexported fields are not encoded; interface values get JSON semantics;
// self-encoding types round-trip as well as their methods do. In addition,
// top-level pointers are flattened: Marshal of a **T whose *T is nil decodes
// as a nil **T. Unmarshal into an interface-typed target (*any) is
// ErrUnsupported, since Marshal only sees the dynamic type. A pointer chain,
// or slices and maps, nested deeper than 1000 levels cannot be encoded.
//
// # Performance
//
// Each type is compiled once into a plan (cached in a sync.Map by
// reflect.Type) of encode/decode functions working on unsafe pointers, with
// field offsets precomputed and the common field shapes (strings, integers,
// floats, bools, time.Time, []string, []byte) handled inline. Decoding a
// typical GORM row allocates only for its slices, maps and pointers.
package bincodec
