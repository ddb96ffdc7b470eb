package bincodec

import (
	"testing"

	gojson "github.com/goccy/go-json"
)

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

func BenchmarkUnmarshalRowGoJSON(b *testing.B) {
	data, err := gojson.Marshal(benchRow())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var r row
		if err := gojson.Unmarshal(data, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalRowGoJSON(b *testing.B) {
	r := benchRow()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := gojson.Marshal(r); err != nil {
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
