package bincodec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// corpusValues are valid values of the types the corruption tests decode.
func corpusValues() []any {
	x := 3
	return []any{
		benchRow(),
		nested{In: inner{1, "a"}, PIn: &inner{2, "b"}, Ins: []inner{{3, "c"}}, InMap: map[string]inner{"x": {4, "d"}}},
		withMaps{ByID: map[int64]*inner{1: {1, "x"}}, ByName: map[string][]string{"c": {"z"}}, Sets: map[string]struct{}{"s": {}}},
		allKinds{B: true, I16: -300, U32: 70000, S: "s", Bs: []byte("b"), Cn: counters{"c": 1}, PP: ptr(&x), Ptrs: []*int{nil, &x}},
		tree{Name: "r", Children: []tree{{Name: "c"}}, Index: map[string]*tree{"i": {Name: "i"}}},
		order{ID: 1, Total: money{5, "EUR"}, Lines: []money{{1, ""}}, ByKey: map[string]money{"k": {2, "X"}}},
		[]time.Time{{}, time.Unix(1e9, 5), time.Unix(-1e11, 999999999).UTC(), time.Unix(7, 0).In(time.FixedZone("Zone", -3599))},
		gormModel{ID: 1, DeletedAt: DeletedAt{Valid: true, Time: time.Unix(5, 0).UTC()}, Nick: sqlNullString("n")},
		fuzzTarget{M: map[string]*inner{"k": {1, "v"}}, P: &fuzzTarget{S: [][]int16{{1, -1}}}, O: []zeroSized{{}}, E: []empty{{}}},
		[]zeroSized{{}, {}},
		map[empty]empty{{}: {}},
		jsonSkipped{Keep: "k", Skip: "s", Hid: map[string]int{"h": 1}, Ptr: &inner{}},
	}
}

// decodeLike decodes data into a fresh value of v's type.
func decodeLike(v any, data []byte) (any, error) {
	dst := reflect.New(reflect.TypeOf(v))
	err := Unmarshal(data, dst.Interface())
	return dst.Elem().Interface(), err
}

// checkDecodeErr fails on errors that are not ErrCorrupt, and on errors that
// came from the last-resort recover (bad input must be detected, not caught).
func checkDecodeErr(t *testing.T, err error, ctx string) {
	t.Helper()
	if err == nil {
		return
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%s: error %v is not ErrCorrupt", ctx, err)
	}
	if strings.Contains(err.Error(), "panic") {
		t.Fatalf("%s: decoding panicked: %v", ctx, err)
	}
	if !strings.HasPrefix(err.Error(), "gormcache: ") {
		t.Fatalf("%s: message %q", ctx, err)
	}
}

func TestEveryPrefixFails(t *testing.T) {
	for _, v := range corpusValues() {
		data, err := Marshal(v)
		if err != nil {
			t.Fatalf("%T: %v", v, err)
		}
		if _, err := decodeLike(v, data); err != nil {
			t.Fatalf("%T: full input: %v", v, err)
		}
		for n := range len(data) {
			_, err := decodeLike(v, data[:n:n])
			if err == nil {
				t.Fatalf("%T: prefix %d/%d decoded without error", v, n, len(data))
			}
			checkDecodeErr(t, err, reflect.TypeOf(v).String())
		}
	}
}

func TestTrailingBytes(t *testing.T) {
	for _, v := range corpusValues() {
		data, _ := Marshal(v)
		for _, extra := range [][]byte{{0}, {1, 2, 3}, data} {
			_, err := decodeLike(v, append(bytes.Clone(data), extra...))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%T + % x: %v", v, extra, err)
			}
		}
	}
	var r row
	if err := Unmarshal([]byte{topNil, 0}, &r); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("nil + byte: %v", err)
	}
}

func TestRandomInputNeverPanics(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	targets := corpusValues()
	iters := 3000
	if testing.Short() {
		iters = 300
	}
	for _, v := range targets {
		valid, _ := Marshal(v)
		for range iters {
			// Pure garbage, mostly with a valid header byte.
			n := rng.IntN(80)
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rng.UintN(256))
			}
			if n > 0 && rng.IntN(4) > 0 {
				b[0] = topValue
			}
			_, err := decodeLike(v, b)
			checkDecodeErr(t, err, "garbage")
			// A valid encoding with a few bytes changed.
			m := bytes.Clone(valid)
			for range 1 + rng.IntN(3) {
				if len(m) > 1 {
					m[1+rng.IntN(len(m)-1)] = byte(rng.UintN(256))
				}
			}
			_, err = decodeLike(v, m)
			checkDecodeErr(t, err, "mutated")
		}
	}
}

func TestHugeLengthsDoNotAllocate(t *testing.T) {
	huge := binary.AppendUvarint([]byte{topValue}, 1<<62)
	max := binary.AppendUvarint([]byte{topValue}, 1<<64-1)
	inputs := [][]byte{huge, max, append(bytes.Clone(huge), 1, 2, 3)}
	targets := []any{
		new(string), new([]byte), new([]string), new([]int), new([]inner), new(map[string]int),
		new([]zeroSized), new(map[empty]empty), new([][]byte), new(secret), new(celsius), new(money),
		new(order), new(nested), new([]*row), new([]time.Time),
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, in := range inputs {
		for _, target := range targets {
			err := Unmarshal(in, target)
			if err == nil {
				t.Fatalf("%T: huge length accepted", target)
			}
			checkDecodeErr(t, err, reflect.TypeOf(target).String())
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("huge lengths allocated %d bytes", d)
	}
	// A small input claiming many elements is refused before allocating:
	// each []string element needs at least one byte.
	in := binary.AppendUvarint([]byte{topValue}, 1000+1)
	in = append(in, make([]byte, 999)...)
	var s []string
	allocs := testing.AllocsPerRun(100, func() { _ = Unmarshal(in, &s) })
	if err := Unmarshal(in, &s); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("1000 strings in 999 bytes: %v", err)
	}
	if allocs > 4 { // the error value only
		t.Fatalf("rejecting a length allocated %v times", allocs)
	}
}

func TestInvalidBytes(t *testing.T) {
	type b struct{ B bool }
	type p struct{ P *int }
	type i16 struct{ I int16 }
	type u8s struct{ U uint32 }
	type ti struct{ T time.Time }
	cases := []struct {
		name   string
		data   []byte
		target any
	}{
		{"header", []byte{2}, new(b)},
		{"empty", nil, new(b)},
		{"bool", []byte{topValue, 2}, new(b)},
		{"presence", []byte{topValue, 2, 0}, new(p)},
		{"int16-range", binary.AppendVarint([]byte{topValue}, 1<<20), new(i16)},
		{"uint32-range", binary.AppendUvarint([]byte{topValue}, 1<<40), new(u8s)},
		{"varint-overflow", []byte{topValue, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, new(int64)},
		{"time-nsec", append([]byte{topValue, 2}, append(appendUvarint(nil, 1e9), locUTC)...), new(ti)},
		{"time-loc", []byte{topValue, 2, 0, 3}, new(ti)},
		{"time-name", []byte{topValue, 2, 0, locNamed, 9, 'x'}, new(ti)},
		{"padding", []byte{topValue, 3, 0, 7}, new([]zeroSized)},
		{"money", []byte{topValue, 2, 1, 2}, new(money)},
		{"text", []byte{topValue, 2, 'x', 'y'}, new(celsius)},
		{"json", []byte{topValue, 2, '{', '}'}, new(secret)},
	}
	for _, c := range cases {
		err := Unmarshal(c.data, c.target)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		checkDecodeErr(t, err, c.name)
	}
}

func TestDecodeDepthLimit(t *testing.T) {
	// A list 5000 deep: presence byte 1, Val 0, ... — refused at maxDepth.
	data := []byte{topValue}
	for range 5000 {
		data = append(data, 0, 1) // Val=0, Next present
	}
	data = append(data, 0, 0)
	var n node
	err := Unmarshal(data, &n)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "deeper") {
		t.Fatalf("deep input: %v", err)
	}
	// Same for nested slices.
	deep := []byte{topValue}
	for range 5000 {
		deep = append(deep, 2)
	}
	var s selfSlice
	if err := Unmarshal(deep, &s); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("deep slices: %v", err)
	}
}
