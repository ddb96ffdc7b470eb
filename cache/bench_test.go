package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	gojson "github.com/goccy/go-json"

	"github.com/gormcache/gormcache/internal/bincodec"
)

// The benchmarks use the ~300-byte row of helpers_test.go against the shared
// test Redis (make bench-cache). Compare ratios within one run with
// benchstat; never compare against figures from another machine.

func benchRow() row { return sampleRow(42, 7) }

func BenchmarkL1Hit(b *testing.B) {
	c, _ := newCache(b, singleInstance) // L1TTL, not DefaultStalenessBound: every read an L1 hit
	s := newSource()
	s.put("hot", benchRow())
	mustGet(b, c, "hot", s)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Get(ctx, c, "hot", s.load); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkL1HitParallel(b *testing.B) {
	c, _ := newCache(b, singleInstance)
	s := newSource()
	for i := 0; i < 64; i++ {
		s.put("hot:"+strconv.Itoa(i), benchRow())
		mustGet(b, c, "hot:"+strconv.Itoa(i), s)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := Get(ctx, c, "hot:"+strconv.Itoa(i&63), s.load); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkL2Hit reads from Redis with L1 disabled; BenchmarkRedisGetDecode
// is its baseline: a bare go-redis GET of the same bytes plus the same decode.
func BenchmarkL2Hit(b *testing.B) {
	c, _ := newCache(b, noL1)
	s := newSource()
	s.put("hot", benchRow())
	mustGet(b, c, "hot", s)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Get(ctx, c, "hot", s.load); err != nil {
			b.Fatal(err)
		}
	}
	if st := c.Stats(); st.Loads != 1 {
		b.Fatalf("loads = %d", st.Loads)
	}
}

func BenchmarkRedisGetDecode(b *testing.B) {
	c, rdb := newCache(b, noL1)
	ctx := context.Background()
	payload, _ := c.opts.Codec.Marshal(benchRow())
	key := c.l2.key("hot")
	rdb.Set(ctx, key, payload, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		raw, err := rdb.Get(ctx, key).Bytes()
		if err != nil {
			b.Fatal(err)
		}
		var v row
		if err := c.opts.Codec.Unmarshal(raw, &v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMiss is a full miss: L1 and Redis miss, an in-memory loader, then
// both fills (the version-guarded Lua fill in Redis).
func BenchmarkMiss(b *testing.B) {
	c, _ := newCache(b, nil)
	ctx := context.Background()
	r := benchRow()
	load := func(context.Context, string) (row, uint64, error) { return r, 7, nil }
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Get(ctx, c, "miss:"+strconv.FormatInt(n.Add(1), 10), load); err != nil {
			b.Fatal(err)
		}
	}
}

func benchGetMany(b *testing.B, mod func(*Options), warm bool) {
	c, _ := newCache(b, mod)
	ctx := context.Background()
	s := newSource()
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprintf("many:%d", i)
		s.put(keys[i], benchRow())
	}
	if warm {
		if _, err := GetMany(ctx, c, keys, s.loadMany); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !warm {
			b.StopTimer()
			c.FlushLocal()
			for _, k := range keys {
				c.Invalidate(ctx, k, 7)
			}
			b.StartTimer()
		}
		got, err := GetMany(ctx, c, keys, s.loadMany)
		if err != nil || len(got) != 100 {
			b.Fatal(err, len(got))
		}
	}
}

// BenchmarkGetMany100 reads 100 keys: all in L1, all in Redis only, or none
// cached (one loader call and one pipelined fill).
func BenchmarkGetMany100(b *testing.B) {
	b.Run("L1", func(b *testing.B) { benchGetMany(b, singleInstance, true) })
	b.Run("L2", func(b *testing.B) { benchGetMany(b, noL1, true) })
	b.Run("cold", func(b *testing.B) { benchGetMany(b, nil, false) })
}

// BenchmarkCodec measures what chose the default codec: decoding dominates an
// L1 hit. (msgpack, the peers' codec, is compared end to end in the
// benchmarks module, which keeps that dependency out of the library's.)
func BenchmarkCodec(b *testing.B) {
	r := benchRow()
	js, _ := json.Marshal(r)
	bin, _ := bincodec.Marshal(r)
	b.Logf("row: %d bytes as JSON, %d binary", len(js), len(bin))
	for _, tc := range []struct {
		name   string
		data   []byte
		decode func([]byte, any) error
	}{
		{"decode/binary", bin, bincodec.Unmarshal},
		{"decode/goccy-go-json", js, gojson.Unmarshal},
		{"decode/encoding-json", js, json.Unmarshal},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var v row
				if err := tc.decode(tc.data, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, tc := range []struct {
		name   string
		encode func(any) ([]byte, error)
	}{
		{"encode/binary", bincodec.Marshal},
		{"encode/goccy-go-json", gojson.Marshal},
		{"encode/encoding-json", json.Marshal},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := tc.encode(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
