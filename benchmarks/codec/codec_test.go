package codec

import (
	"fmt"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/gormcache/gormcache/cache"
)

// row is the row of the cache package's BenchmarkCodec (sampleRow there).
type row struct {
	ID        int64     `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Bio       string    `json:"bio"`
	Tags      []string  `json:"tags"`
	Score     float64   `json:"score"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Version   uint64    `json:"version"`
}

func benchRow() row {
	const id, version = 42, 7
	t := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	return row{
		ID: id, Email: fmt.Sprintf("user%d@example.com", id), Name: "Ada Lovelace",
		Bio:  "Mathematician and writer, chiefly known for her work on the Analytical Engine; the first to publish an algorithm.",
		Tags: []string{"math", "engines"}, Score: 97.5, Active: true,
		CreatedAt: t, UpdatedAt: t.Add(version * time.Minute), Version: version,
	}
}

// codecs are the cache's codecs and msgpack, by name.
var codecs = []struct {
	name      string
	marshal   func(any) ([]byte, error)
	unmarshal func([]byte, any) error
}{
	{"binary", cache.Binary{}.Marshal, cache.Binary{}.Unmarshal},
	{"goccy-go-json", cache.GoJSON{}.Marshal, cache.GoJSON{}.Unmarshal},
	{"encoding-json", cache.StdJSON{}.Marshal, cache.StdJSON{}.Unmarshal},
	{"msgpack", msgpack.Marshal, msgpack.Unmarshal},
}

// BenchmarkCodec decodes and encodes the row with every codec.
func BenchmarkCodec(b *testing.B) {
	r := benchRow()
	for _, c := range codecs {
		data, err := c.marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("decode/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var v row
				if err := c.unmarshal(data, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, c := range codecs {
		b.Run("encode/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.marshal(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestRoundTrip: every codec gives the row back.
func TestRoundTrip(t *testing.T) {
	want := benchRow()
	for _, c := range codecs {
		data, err := c.marshal(want)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var got row
		if err := c.unmarshal(data, &got); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %+v, want %+v", c.name, got, want)
		}
	}
}
