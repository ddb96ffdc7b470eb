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
// codec never returns a silently wrong value: Unmarshal(Marshal(v)) is
// reflect.DeepEqual to v (see the exceptions below) or the type is refused
// with ErrUnsupported, and bytes that are not a valid encoding of the target
// type (truncated, random, trailing garbage) yield ErrCorrupt, never a
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
//   - time.Time: the Unix seconds (zigzag varint), the nanoseconds (uvarint,
//     below 1e9), a location byte (0: UTC, 1: time.Local, 2: other), and for
//     2 the zone's name (uvarint length, bytes) and its offset in seconds at
//     that instant (zigzag varint); see time.go;
//   - types with marshaler methods: uvarint length, the method's bytes.
//
// Marshal follows top-level pointers (Marshal(x) == Marshal(&x)), and
// Unmarshal allocates them (decoding into **T works), so a cache of T and a
// cache of *T share the format; a nil top-level pointer is the nil header.
//
// # Which encoding a type gets
//
// Every type is either round-tripped exactly or refused, with an error
// wrapping ErrUnsupported that names the offending field path and why, when
// its plan is compiled: on first use by Marshal or Unmarshal, or earlier by
// Check. Nothing is dropped in silence.
//
// Named types are encoded by their underlying kind unless they encode
// themselves. For a type T the method set of *T decides, in this order:
//
//  1. encoding.BinaryMarshaler + BinaryUnmarshaler (netip.Addr, ...);
//  2. a struct whose fields are all exported is encoded structurally, even if
//     it has JSON or text marshalers: gorm.DeletedAt, sql.NullString and the
//     like take the fast path;
//  3. encoding.TextMarshaler + TextUnmarshaler;
//  4. json.Marshaler + json.Unmarshaler (the method's bytes, verbatim);
//  5. structural, except that time.Time and struct types defined as
//     time.Time (type MyTime time.Time, which has none of time.Time's
//     methods) have their own exact format.
//
// Marshaler methods promoted from an embedded field are ignored (they would
// drop the outer struct's other fields); see marshaler.go. Structural
// encoding of a struct covers every exported field, embedded ones included
// (recursively, as a nested value), whatever its tags: fields tagged
// `json:"-"` are encoded too, since this is a cache codec and not JSON. It
// also covers unexported embedded fields of struct or pointer-to-struct type.
// Any other unexported field, which the codec could not restore, refuses the
// struct type (and every type containing it) unless the type encodes itself
// through marshaler methods (rules 1, 3 and 4): give a type with private
// state MarshalBinary/UnmarshalBinary to cache it. A sync.Mutex field is
// therefore refused, as intended; an unexported field of size zero holds no
// state and is ignored.
//
// Interface types (any, error, fmt.Stringer, ...), as fields, elements,
// map keys or values, or the Unmarshal target, are refused: the encoding is
// positional and carries no dynamic type, so an interface value could not
// come back as it was. Use a concrete type, or the cache's GoJSON codec for
// JSON-shaped data. Channels, functions and unsafe pointers are refused too.
// Marshal also refuses values (not types) whose pointer/slice/map nesting is
// deeper than 1000 levels (which is how a cycle is detected), and values
// whose marshaler methods fail.
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
// For every supported type, Unmarshal(Marshal(v)) is reflect.DeepEqual to v
// with these exceptions only:
//
//   - time.Time loses its monotonic clock reading: a value comes back as
//     t.Round(0) (time.Local means the decoding process's local zone, and a
//     zone other than UTC and Local is found again by name as described in
//     time.go);
//   - self-encoding types (rules 1, 3 and 4 above) round-trip as well as
//     their methods do, which the codec cannot check: that is the type's own
//     contract;
//   - top-level pointers are flattened: Marshal of a **T whose *T is nil
//     decodes as a nil **T.
//
// # Performance
//
// Each type is compiled once into a plan (cached in a sync.Map by
// reflect.Type) of encode/decode functions working on unsafe pointers, with
// field offsets precomputed and the common field shapes (strings, integers,
// floats, bools, time.Time, []string, []byte) handled inline. Decoding a
// typical GORM row allocates only for its slices, maps and pointers (a
// time.Time in UTC or Local never allocates).
package bincodec
