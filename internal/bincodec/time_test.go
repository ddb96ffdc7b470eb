package bincodec

import (
	"bytes"
	"errors"
	"math"
	"os"
	"os/exec"
	"reflect"
	"testing"
	"time"
	_ "time/tzdata" // LoadLocation works without a system zone database
)

// exactTime encodes tm alone, in a struct and behind a pointer, and checks
// that each comes back reflect.DeepEqual to want (tm unless given).
func exactTime(t *testing.T, tm time.Time, want ...time.Time) {
	t.Helper()
	exp := tm
	if len(want) > 0 {
		exp = want[0]
	}
	type holder struct {
		A time.Time
		P *time.Time
		S []time.Time
		M myTime
	}
	for _, c := range []struct{ in, want any }{
		{tm, exp},
		{holder{tm, &tm, []time.Time{tm, tm}, myTime(tm)}, holder{exp, &exp, []time.Time{exp, exp}, myTime(exp)}},
	} {
		b, err := Marshal(c.in)
		if err != nil {
			t.Fatalf("Marshal(%v): %v", tm, err)
		}
		got := reflect.New(reflect.TypeOf(c.in))
		if err := Unmarshal(b, got.Interface()); err != nil {
			t.Fatalf("Unmarshal(%v): %v", tm, err)
		}
		if !reflect.DeepEqual(got.Elem().Interface(), c.want) {
			t.Fatalf("%v (%s) came back as %v (%s)", exp, exp.Location(), got.Elem().Interface(), got.Elem().Interface())
		}
	}
	// Same pointer, not just deep-equal: the location cache gives it back.
	b, _ := Marshal(tm)
	var got time.Time
	if err := Unmarshal(b, &got); err != nil || got.Location() != exp.Location() || got != exp {
		t.Fatalf("%v: got %v in %p, want %p", tm, got, got.Location(), exp.Location())
	}
}

func timeCases(t *testing.T) map[string]time.Time {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	ams, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 26, 12, 0, 0, 123456789, time.UTC)
	return map[string]time.Time{
		"utc":               base,
		"utc/no-nsec":       base.Truncate(time.Second),
		"local":             base.In(time.Local),
		"local/1850":        time.Date(1850, 1, 1, 0, 0, 0, 7, time.Local),
		"local/zero":        time.Time{}.In(time.Local),
		"fixed/hour":        base.In(time.FixedZone("CET", 3600)),
		"fixed/unnamed":     base.In(time.FixedZone("", 3600)),
		"fixed/unnamed-odd": base.In(time.FixedZone("", 5*3600+1800)),
		"fixed/neg":         base.In(time.FixedZone("Y", -9*3600-1800)),
		"fixed/neg-seconds": time.Date(1850, 1, 1, 0, 0, 0, 0, time.FixedZone("LMT", -(4*3600+56*60+2))),
		"fixed/named-utc":   base.In(time.FixedZone("UTC", 0)),
		"fixed/named-local": base.In(time.FixedZone("Local", 0)),
		"fixed/huge":        base.In(time.FixedZone("far", 1<<40)),
		"zero":              {},
		"zero/fixed":        time.Time{}.In(time.FixedZone("Z", -1)),
		"unix0":             time.Unix(0, 0),
		"unix0/utc":         time.Unix(0, 0).UTC(),
		"pre1900":           time.Date(1066, 10, 14, 9, 0, 0, 999999999, time.UTC),
		"bc":                time.Date(-500, 1, 1, 0, 0, 0, 1, time.UTC),
		"far":               time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		"farther":           time.Date(292277026596, 12, 4, 15, 30, 7, 999999999, time.UTC),
		"max":               time.Unix(math.MaxInt64, 999999999).UTC(),
		"min":               time.Unix(math.MinInt64, 0).UTC(),
		"ny":                base.In(ny),
		"ny/summer":         time.Date(2026, 7, 4, 12, 0, 0, 5, ny),
		"ny/zero":           time.Time{}.In(ny), // LMT -04:56:02
		"ny/1850":           time.Date(1850, 1, 1, 0, 0, 0, 0, ny),
		"ny/far":            time.Date(3000, 7, 1, 0, 0, 0, 0, ny),
		"amsterdam":         base.In(ams),
		"amsterdam/lmt":     time.Date(1850, 1, 1, 0, 0, 0, 0, ams), // +00:19:32
	}
}

func TestTimeExact(t *testing.T) {
	for name, tm := range timeCases(t) {
		t.Run(name, func(t *testing.T) { exactTime(t, tm) })
	}
	// The monotonic reading is not encoded: as t.Round(0).
	now := time.Now()
	if readTime(reflect.ValueOf(now)) != now {
		t.Fatal("readTime does not match time.Time's layout")
	}
	exactTime(t, now, now.Round(0))
	exactTime(t, now.UTC(), now.UTC().Round(0))
}

// TestTimeLocalNewYork runs the time cases again in a process whose local
// zone is America/New_York, whose LMT offset (-04:56:02, before 1883) time's
// binary format cannot represent.
func TestTimeLocalNewYork(t *testing.T) {
	const env = "BINCODEC_TEST_TZ_CHILD"
	if os.Getenv(env) == "" {
		if testing.Short() {
			t.Skip("re-executes the test binary")
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestTimeLocalNewYork$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), env+"=1", "TZ=America/New_York")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child with TZ=America/New_York: %v\n%s", err, out)
		}
		if !bytes.Contains(out, []byte("--- PASS: TestTimeLocalNewYork/ny/zero")) {
			t.Fatalf("child with TZ=America/New_York did not run the cases:\n%s", out)
		}
		t.Logf("TZ=America/New_York: %d cases passed", bytes.Count(out, []byte("    --- PASS: ")))
		return
	}
	if _, off := time.Date(1850, 1, 1, 0, 0, 0, 0, time.Local).Zone(); off != -(4*3600 + 56*60 + 2) {
		t.Fatalf("local zone not America/New_York: offset %d in 1850", off)
	}
	for name, tm := range timeCases(t) {
		t.Run(name, func(t *testing.T) { exactTime(t, tm) })
	}
	for _, tm := range []time.Time{
		time.Time{}.Local(),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.Local),
		time.Date(1883, 11, 18, 12, 3, 57, 0, time.Local), // the last LMT second
		time.Date(2026, 3, 8, 2, 30, 0, 0, time.Local),    // in the spring gap
		time.Date(2026, 11, 1, 1, 30, 0, 0, time.Local),   // ambiguous hour
		time.Unix(-1e11, 1).Local(),
	} {
		exactTime(t, tm)
	}
}

// withoutZone runs f with name removed from the process's location cache,
// as in a process that never encoded that location, and restores it.
func withoutZone(name string, f func()) {
	old, ok := zones.m.LoadAndDelete(name)
	defer func() {
		if ok {
			zones.m.Store(name, old)
		}
	}()
	f()
}

func TestTimeZoneFallbacks(t *testing.T) {
	// Another process: not in the cache, found by time.LoadLocation.
	ny, _ := time.LoadLocation("America/New_York")
	for _, tm := range []time.Time{time.Date(2026, 1, 2, 3, 4, 5, 6, ny), time.Time{}.In(ny)} {
		b, err := Marshal(tm)
		if err != nil {
			t.Fatal(err)
		}
		withoutZone("America/New_York", func() {
			loadedZones.m.Delete("America/New_York")
			var got time.Time
			if err := Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tm) || got.Location().String() != "America/New_York" || got.Format(time.RFC3339Nano+" MST") != tm.Format(time.RFC3339Nano+" MST") {
				t.Fatalf("got %v want %v", got, tm)
			}
			if !reflect.DeepEqual(got, tm) {
				t.Logf("loaded again, not deep-equal (zone caches differ): %v", got)
			}
		})
	}
	// Another process: a fixed zone comes back deep-equal through FixedZone.
	for _, loc := range []*time.Location{time.FixedZone("Custom", 3600), time.FixedZone("", 1234), time.FixedZone("UTC", 0)} {
		tm := time.Date(1900, 5, 6, 7, 8, 9, 10, loc)
		b, _ := Marshal(tm)
		withoutZone(loc.String(), func() {
			var got time.Time
			if err := Unmarshal(b, &got); err != nil || !reflect.DeepEqual(got, tm) {
				t.Fatalf("%s: got %v (%v), want %v", loc, got, err, tm)
			}
		})
	}
	// Two fixed zones with one name: the cache holds the later, and the
	// earlier still comes back with its own offset.
	a := time.Date(2000, 1, 1, 0, 0, 0, 0, time.FixedZone("Dup", 3600))
	bt := time.Date(2000, 1, 1, 0, 0, 0, 0, time.FixedZone("Dup", 7200))
	ea, _ := Marshal(a)
	eb, _ := Marshal(bt)
	for _, c := range []struct {
		data []byte
		want time.Time
	}{{ea, a}, {eb, bt}} {
		var got time.Time
		if err := Unmarshal(c.data, &got); err != nil || !reflect.DeepEqual(got, c.want) {
			t.Fatalf("got %v (%v), want %v", got, err, c.want)
		}
	}
	// A name time.LoadLocation knows, with an offset it does not give at
	// that instant: a fixed zone of that name, with the encoded offset.
	fake := time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("America/New_York", 3600))
	b, _ := Marshal(fake)
	withoutZone("America/New_York", func() {
		var got time.Time
		if err := Unmarshal(b, &got); err != nil || !reflect.DeepEqual(got, fake) {
			t.Fatalf("got %v (%v), want %v", got, err, fake)
		}
	})
}

func TestTimeDecodeDoesNotAllocate(t *testing.T) {
	type ts struct {
		A, B time.Time
		P    int
	}
	ny, _ := time.LoadLocation("America/New_York")
	now := time.Now()
	for _, c := range []struct {
		name string
		v    ts
		max  float64
	}{
		{"utc", ts{A: now.UTC(), B: time.Time{}}, 0},
		{"local", ts{A: now.Local(), B: time.Date(1850, 1, 1, 0, 0, 0, 0, time.Local)}, 0},
		{"named", ts{A: now.In(ny), B: now.In(time.FixedZone("X", 60))}, 0},
	} {
		b, err := Marshal(c.v)
		if err != nil {
			t.Fatal(err)
		}
		var out ts
		allocs := testing.AllocsPerRun(200, func() {
			if err := Unmarshal(b, &out); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > c.max {
			t.Errorf("%s: decoding allocated %v times", c.name, allocs)
		}
	}
}

func TestTimeCorrupt(t *testing.T) {
	enc := func(parts ...[]byte) []byte {
		out := []byte{topValue}
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	sec := appendVarint(nil, 1e9)
	cases := map[string][]byte{
		"empty":          enc(),
		"no-nsec":        enc(sec),
		"no-loc":         enc(sec, []byte{0}),
		"nsec-1e9":       enc(sec, appendUvarint(nil, 1e9), []byte{locUTC}),
		"nsec-huge":      enc(sec, appendUvarint(nil, math.MaxUint64), []byte{locUTC}),
		"loc-byte":       enc(sec, []byte{0, 3}),
		"loc-byte-ff":    enc(sec, []byte{0, 0xff}),
		"no-name":        enc(sec, []byte{0, locNamed}),
		"name-too-long":  enc(sec, []byte{0, locNamed, 5, 'a'}),
		"no-offset":      enc(sec, []byte{0, locNamed, 1, 'X'}),
		"offset-trunc":   enc(sec, []byte{0, locNamed, 1, 'X', 0x80}),
		"sec-overflow":   enc([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, []byte{0, 0}),
		"trailing":       enc(sec, []byte{0, locUTC, 0}),
		"trailing-named": enc(sec, []byte{0, locNamed, 1, 'X', 2, 0}),
	}
	for name, data := range cases {
		var tm time.Time
		err := Unmarshal(data, &tm)
		if err == nil {
			t.Errorf("%s: accepted as %v", name, tm)
			continue
		}
		checkDecodeErr(t, err, name)
	}
	// The old format (time's MarshalBinary) is not accepted as the new one.
	raw, _ := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).MarshalBinary()
	var tm time.Time
	if err := Unmarshal(append([]byte{topValue, byte(len(raw))}, raw...), &tm); !errors.Is(err, ErrCorrupt) {
		t.Errorf("old format: %v (%v)", err, tm)
	}
}

// TestTimeSameNameSameOffset documents the one ambiguity of the format: two
// locations with the same name that give the same offset at an instant are
// the same to it, and decoding gives the one encoded last under that name,
// with the right instant, name and offset either way.
func TestTimeSameNameSameOffset(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	nyTime := time.Date(1850, 1, 1, 0, 0, 0, 0, ny)
	_, off := nyTime.Zone()
	fake := nyTime.In(time.FixedZone("America/New_York", off))
	bf, _ := Marshal(fake)
	var got time.Time
	if err := Unmarshal(bf, &got); err != nil || !reflect.DeepEqual(got, fake) {
		t.Fatalf("fake: got %v (%v), want %v", got, err, fake)
	}
	if _, err := Marshal(nyTime); err != nil {
		t.Fatal(err)
	}
	if err := Unmarshal(bf, &got); err != nil || got.Location() != ny || !equalZonesByName(got, fake) {
		t.Fatalf("fake after real: got %v in %p (%v), want the instant of %v in %p", got, got.Location(), err, fake, ny)
	}
}
