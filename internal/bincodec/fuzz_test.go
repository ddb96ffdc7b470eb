package bincodec

import (
	"database/sql"
	"testing"
	"time"
)

// fuzzTarget exercises maps, pointers, slices, arrays, padding, marshalers
// (over unexported state too), times in each kind of location, and
// recursion.
type fuzzTarget struct {
	M   map[string]*inner
	P   *fuzzTarget
	S   [][]int16
	B   []byte
	A   [2]uint32
	F   float32
	T   *time.Time
	E   []empty
	O   []zeroSized
	Set map[empty]empty
	C   celsius
	D   DeletedAt
	K   map[[2]int8]complex64
	R   *row
	X   []money
	J   jsonSkipped
	Z   []time.Time
}

func sqlNullString(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }

// FuzzUnmarshal decodes arbitrary bytes into *row and *fuzzTarget. Decoding
// must never panic (or reach the last-resort recover); when it succeeds,
// encoding the result and decoding that again must give an equal value (with
// locations compared by name and offset: see equalZonesByName).
func FuzzUnmarshal(f *testing.F) {
	tm := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("", 3600))
	lmt := time.Date(1850, 1, 1, 0, 0, 0, 0, time.FixedZone("LMT", -17762))
	for _, v := range []any{
		benchRow(),
		row{},
		fuzzTarget{},
		fuzzTarget{
			M: map[string]*inner{"k": {1, "v"}, "n": nil}, P: &fuzzTarget{S: [][]int16{{1, -1}, nil, {}}},
			B: []byte{1}, A: [2]uint32{1, 1 << 31}, F: -1.5, T: &tm, E: []empty{{}, {}}, O: []zeroSized{{}},
			Set: map[empty]empty{{}: {}}, C: celsius{12}, D: DeletedAt{Time: tm, Valid: true},
			K: map[[2]int8]complex64{{1, -1}: 1i}, R: &row{Tags: []string{}},
			X: []money{{-1, "EUR"}, {}}, J: jsonSkipped{Skip: "s", Ptr: &inner{}}, Z: []time.Time{{}, lmt, tm.Local(), tm.UTC()},
		},
	} {
		b, err := Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{topNil})
	f.Add([]byte{topValue, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzOne[row](t, data)
		fuzzOne[fuzzTarget](t, data)
	})
}

func fuzzOne[T any](t *testing.T, data []byte) {
	var v T
	err := Unmarshal(data, &v)
	if err != nil {
		checkDecodeErr(t, err, "fuzz")
		return
	}
	again, err := Marshal(v)
	if err != nil {
		t.Fatalf("re-encoding a decoded %T: %v", v, err)
	}
	var w T
	if err := Unmarshal(again, &w); err != nil {
		t.Fatalf("decoding a re-encoded %T: %v", v, err)
	}
	if !equalZonesByName(v, w) {
		t.Fatalf("%T changed after a second round trip:\n%#v\n%#v", v, v, w)
	}
}
