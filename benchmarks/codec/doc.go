// Package codec compares the cache's codecs with msgpack, the codec of the
// peer libraries, on the ~300-byte row of the cache package's own
// BenchmarkCodec (which compares the binary and JSON codecs only, so that
// the library module does not require msgpack):
//
//	cd benchmarks && go test -run '^$' -bench Codec -benchmem ./codec/
package codec
