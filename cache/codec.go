package cache

import (
	stdjson "encoding/json"
	"reflect"

	gojson "github.com/goccy/go-json"

	"github.com/gormcache/gormcache/internal/bincodec"
)

// Codec turns values into bytes and back. Implementations must be safe for
// concurrent use. The cache never modifies data after passing it to
// Unmarshal, so a codec may alias it in the decoded value (Binary does, for
// strings); each caller gets its own data.
//
// Name identifies the wire format; it is hashed into every entry's schema
// fingerprint, so entries written by one codec are never decoded by another.
type Codec interface {
	Name() string
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// TypeChecker is implemented by a Codec that can tell, before encoding
// anything, whether it round-trips values of a type exactly. The cache asks
// once per type and refuses the types it rejects (ErrUnsupportedType), so a
// lossy entry is never written.
type TypeChecker interface {
	Check(t reflect.Type) error
}

// Binary is the default codec: a positional binary format (package
// internal/bincodec) that decodes a ~300-byte row several times faster than
// any JSON or msgpack codec, with fewer allocations (decoded strings alias the
// entry's private buffer). It was chosen by measurement: BenchmarkCodec in
// bench_test.go, where decoding, which dominates an L1 hit, is compared in one
// run against goccy/go-json and encoding/json, and the same benchmark with
// msgpack too in the benchmarks module (benchmarks/codec).
//
// A positional format is safe here only because every entry carries the
// fingerprint of its Go type: bytes written for another shape of the type are
// a miss, never decoded.
//
// It is exact or it refuses: a decoded value is reflect.DeepEqual to the one
// encoded (time.Time keeps its instant and location, losing only the
// monotonic reading; nil and empty slices and maps stay distinct), every
// exported field is kept whatever its tags (`json:"-"` too), and a type it
// cannot restore is refused with ErrUnsupportedType before the loader runs:
// unexported fields (unless the type has MarshalBinary/UnmarshalBinary,
// MarshalText/UnmarshalText or MarshalJSON/UnmarshalJSON, through which it
// then round-trips as well as those methods do), interface-typed fields,
// channels and functions. It is not for other languages: choose GoJSON to
// read entries with redis-cli or from elsewhere (with JSON's semantics).
//
// GORM models read through a repository do not use the codec at all (see
// package repository: rows are stored column by column).
type Binary struct{}

// Name implements Codec.
func (Binary) Name() string { return "bin2" }

// Check implements TypeChecker.
func (Binary) Check(t reflect.Type) error { return bincodec.Check(t) }

// Marshal implements Codec.
func (Binary) Marshal(v any) ([]byte, error) { return bincodec.Marshal(v) }

// Unmarshal implements Codec.
func (Binary) Unmarshal(data []byte, v any) error { return bincodec.Unmarshal(data, v) }

// GoJSON is JSON through github.com/goccy/go-json, the fastest JSON codec
// measured (about 4x encoding/json): readable entries in redis-cli, the same
// struct tags.
type GoJSON struct{}

// Name implements Codec.
func (GoJSON) Name() string { return "json" }

// Marshal implements Codec.
func (GoJSON) Marshal(v any) ([]byte, error) { return gojson.Marshal(v) }

// Unmarshal implements Codec.
func (GoJSON) Unmarshal(data []byte, v any) error { return gojson.Unmarshal(data, v) }

// StdJSON is JSON through the standard library's encoding/json. It writes the
// same bytes as GoJSON (and shares its Name), for users who prefer the
// standard decoder.
type StdJSON struct{}

// Name implements Codec.
func (StdJSON) Name() string { return "json" }

// Marshal implements Codec.
func (StdJSON) Marshal(v any) ([]byte, error) { return stdjson.Marshal(v) }

// Unmarshal implements Codec.
func (StdJSON) Unmarshal(data []byte, v any) error { return stdjson.Unmarshal(data, v) }
