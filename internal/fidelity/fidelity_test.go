package fidelity

import (
	"math"
	"strings"
	"testing"
)

// TestFidelity reads every row of every shape through Get, GetMany (all
// ids; then a duplicate and a missing id) and GetBy, on a miss, an L1 hit
// and a Redis hit, with each codec on a fresh namespace, and compares each
// result with plain GORM's. It runs in the process's time zone and, in a
// re-executed test binary, in America/New_York.
func TestFidelity(t *testing.T) {
	t.Logf("process time zone: %s", zoneName())
	if needsOtherTZ() {
		startOtherTZ(t)
	}
	for _, s := range shapes() {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			s.fidelity(t)
		})
	}
}

// TestDiffValues checks the comparer itself: NaNs with the same bits are
// equal, everything else as reflect.DeepEqual, and differences name their
// field path.
func TestDiffValues(t *testing.T) {
	type inner struct{ F float64 }
	type row struct {
		A  float64
		B  []byte
		P  *inner
		M  map[string]any
		I  any
		u  int
		F3 float32
	}
	nan := math.NaN()
	other := math.Float64frombits(0x7ff8000000000002)
	base := func() row {
		return row{A: nan, B: []byte{}, P: &inner{F: nan}, M: map[string]any{"x": nan}, I: nan, u: 1, F3: float32(nan)}
	}
	if d := diffValues(base(), base()); d != nil {
		t.Errorf("equal rows with NaNs: %v", d)
	}
	cases := []struct {
		mod  func(*row)
		path string
	}{
		{func(r *row) { r.A = other }, "v.A: got NaN (bits 0x7ff8000000000002), want NaN (bits 0x7ff8000000000001) (NaNs with other bits)"},
		{func(r *row) { r.B = nil }, "v.B: got []uint8(nil), want []uint8{} (nil and non-nil slices)"},
		{func(r *row) { r.P.F = 1 }, "(*v.P).F: got 1"},
		{func(r *row) { r.M["y"] = 1 }, `v.M["y"]: got 1, want <invalid> (unexpected key)`},
		{func(r *row) { r.I = float32(1) }, "v.I: got 1 (bits 0x3f800000), want NaN (bits 0x7ff8000000000001) (types float32 and float64)"},
		{func(r *row) { r.u = 2 }, "v.u: got 2, want 1"},
	}
	for _, c := range cases {
		r := base()
		c.mod(&r)
		d := diffValues(r, base())
		if len(d) != 1 || !strings.HasPrefix(d[0], c.path) {
			t.Errorf("diff = %q, want one line starting %q", d, c.path)
		}
	}
}
