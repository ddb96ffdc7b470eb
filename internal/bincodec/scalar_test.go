package bincodec

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// TestReadUvarint checks readUvarint (and its one-load fast path) against
// binary.Uvarint on every length, with and without padding after the
// varint, non-canonical encodings and garbage included.
func TestReadUvarint(t *testing.T) {
	check := func(b []byte) {
		t.Helper()
		want, wn := binary.Uvarint(b)
		got, j, err := readUvarint(b, 0)
		switch {
		case wn > 0:
			if err != nil || got != want || j != wn {
				t.Fatalf("% x: got %d, %d, %v; want %d, %d", b, got, j, err, want, wn)
			}
		case err == nil:
			t.Fatalf("% x: got %d, %d; want an error", b, got, j)
		}
	}
	values := []uint64{0, 1, 127, 128, 255, 300, 1<<14 - 1, 1 << 14, 1<<21 + 5, 1<<28 - 1, 1 << 35, 1<<49 - 1, 1 << 49, 1<<56 - 1, 1 << 56, 1<<63 + 7, math.MaxUint64}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		values = append(values, rng.Uint64()>>rng.UintN(64))
	}
	for _, v := range values {
		enc := binary.AppendUvarint(nil, v)
		for pad := range 10 {
			b := append(append([]byte(nil), enc...), make([]byte, pad)...)
			for k := len(enc); k < len(b); k++ {
				b[k] = byte(rng.UintN(256))
			}
			check(b)
			check(b[:len(enc)-1]) // truncated
		}
	}
	// Non-canonical, overlong and garbage inputs.
	for range 20000 {
		b := make([]byte, rng.IntN(14))
		for k := range b {
			b[k] = byte(rng.UintN(256)) | 0x80*byte(rng.UintN(2))
		}
		check(b)
	}
	check([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00})
	check([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02})
}
