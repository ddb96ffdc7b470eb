package bincodec

import (
	"testing"
	"time"
)

// The comparison with the JSON codecs on the same row is BenchmarkCodec in
// package cache.

func BenchmarkUnmarshalRow(b *testing.B) {
	data, err := Marshal(benchRow())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var r row
		if err := Unmarshal(data, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalRow(b *testing.B) {
	r := benchRow()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendRow(b *testing.B) {
	r := benchRow()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = Append(buf[:0], r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalRowReuse decodes into the same destination: the cost of
// decoding without the destination's own allocation.
func BenchmarkUnmarshalRowReuse(b *testing.B) {
	data, err := Marshal(benchRow())
	if err != nil {
		b.Fatal(err)
	}
	var r row
	b.ReportAllocs()
	for b.Loop() {
		if err := Unmarshal(data, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalTimes decodes a struct of four times in UTC and Local.
func BenchmarkUnmarshalTimes(b *testing.B) {
	type times struct{ A, B, C, D time.Time }
	now := time.Date(2026, 11, 26, 12, 0, 0, 123456789, time.UTC)
	data, err := Marshal(times{now, now.Add(time.Hour), now.Local(), time.Time{}})
	if err != nil {
		b.Fatal(err)
	}
	var v times
	b.ReportAllocs()
	for b.Loop() {
		if err := Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}
