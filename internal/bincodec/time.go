package bincodec

import (
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// time.Time is the most common non-trivial field of GORM models, so it has a
// dedicated path and its own exact format (time's MarshalBinary would lose
// the zone's name, and cannot represent negative offsets that are not whole
// minutes, such as New York's LMT before 1883):
//
//   - the seconds since the Unix epoch (t.Unix()), zigzag varint;
//   - the nanoseconds within the second (t.Nanosecond()), uvarint; a value
//     of 1e9 or more is corrupt;
//   - a location byte: 0 for UTC, 1 for time.Local, 2 for any other
//     location, followed by its name (t.Location().String(), uvarint length
//     then bytes) and its offset east of UTC in seconds at that instant
//     (zigzag varint).
//
// Decoding gives time.Unix(sec, nsec).UTC() for 0 and time.Unix(sec, nsec)
// (time.Local) for 1. For 2 the location is, in this order of preference:
//
//  1. the one named so in a process-wide cache, which Marshal fills with
//     every location other than UTC and Local that it encodes (the latest
//     one per name): in the process that wrote the entry, the very pointer
//     comes back;
//  2. time.LoadLocation(name), when it succeeds, is neither UTC nor Local,
//     and gives the encoded offset at that instant (then cached);
//  3. time.FixedZone(name, offset), which is what time.FixedZone values
//     (and the zones of parsed offsets) were in the first place.
//
// A candidate is used only if its offset at that instant is the encoded one,
// so the instant, the wall clock and the zone's name are always right; the
// zone abbreviation of a location found by name is the location's own. The
// format cannot tell apart two different locations with the same name that
// give the same offset at an instant (a time.FixedZone("America/New_York",
// -18000) and the real zone in winter): such a time decodes in the one that
// the process encoded last under that name.
//
// The result is reflect.DeepEqual to the original for UTC, Local (when the
// decoding process has the same local zone: Local means the process's zone),
// fixed zones, and, in the writing process or wherever the IANA database
// agrees, loaded zones; for any instant a Time can hold, the zero time and
// pre-1900 LMT offsets included. The monotonic clock reading is not encoded:
// a value comes back as t.Round(0). Decoding a UTC or Local time does not
// allocate.

var timeType = reflect.TypeFor[time.Time]()

// The location byte of an encoded time.Time.
const (
	locUTC   = 0
	locLocal = 1
	locNamed = 2
)

func buildTime(p *plan) {
	p.op = opTime
	p.minSize = 3 // seconds, nanoseconds, location: one byte each at least
	p.enc = encTime
	p.dec = decTime
}

func encTime(buf []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	t := (*time.Time)(p)
	buf = appendVarint(buf, t.Unix())
	buf = appendUvarint(buf, uint64(t.Nanosecond()))
	switch loc := t.Location(); loc {
	case time.UTC:
		return append(buf, locUTC), nil
	case time.Local:
		return append(buf, locLocal), nil
	default:
		name := loc.String()
		_, off := t.Zone()
		rememberZone(name, loc)
		buf = appendString(append(buf, locNamed), name)
		return appendVarint(buf, int64(off)), nil
	}
}

func decTime(b []byte, i int, p unsafe.Pointer, depth int) (int, error) {
	// Fast path for UTC and Local: no error values, no calls that return
	// them; anything else (other locations, invalid input) takes the slow
	// path, which parses again and reports the error.
	if i >= 0 {
		u, j := uvarintAt(b, i)
		if j >= 0 {
			var ns uint64
			var k int
			if j < len(b) && b[j] < 0x80 { // whole seconds, or < 128ns
				ns, k = uint64(b[j]), j+1
			} else {
				ns, k = uvarintAt(b, j)
			}
			if k >= 0 && k < len(b) && ns < 1e9 && b[k] <= locLocal {
				// Time.Unix and time.Unix are inverses modulo 2^64 (both
				// add a constant to the internal seconds), so every
				// instant a Time can hold comes back bit for bit, even
				// one whose Unix seconds wrap around.
				t := time.Unix(int64(u>>1)^-int64(u&1), int64(ns))
				if b[k] == locUTC {
					t = t.UTC()
				}
				*(*time.Time)(p) = t
				return k + 1, nil
			}
		}
	}
	return decTimeSlow(b, i, p, depth)
}

func decTimeSlow(b []byte, i int, p unsafe.Pointer, _ int) (int, error) {
	sec, j, err := readVarint(b, i)
	if err != nil {
		return j, err
	}
	ns, j, err := readUvarint(b, j)
	if err != nil {
		return j, err
	}
	if ns >= 1e9 {
		return j, corruptf("time.Time nanoseconds %d out of range at offset %d", ns, i)
	}
	if j >= len(b) {
		return j, errTruncated(j, "time.Time location")
	}
	t := time.Unix(sec, int64(ns)) // see decTime
	switch b[j] {
	case locUTC:
		t = t.UTC()
		j++
	case locLocal:
		j++
	case locNamed:
		var name string
		if name, j, err = readString(b, j+1); err != nil {
			return j, err
		}
		var off int64
		if off, j, err = readVarint(b, j); err != nil {
			return j, err
		}
		if int64(int(off)) != off {
			return j, corruptf("time.Time zone offset %d out of range at offset %d", off, i)
		}
		t = t.In(zoneFor(name, int(off), t))
	default:
		return j, corruptf("invalid time.Time location byte %#x at offset %d", b[j], j)
	}
	*(*time.Time)(p) = t
	return j, nil
}

// maxZones bounds each of the zone caches below (names from corrupt input
// must not grow them without limit). Past it, locations are still found,
// just not cached.
const maxZones = 1024

// zoneCache is a bounded, concurrent map.
type zoneCache struct {
	m sync.Map
	n atomic.Int64
}

func (c *zoneCache) load(key any) (*time.Location, bool) {
	v, ok := c.m.Load(key)
	if !ok {
		return nil, false
	}
	return v.(*time.Location), true
}

// add stores loc under key unless key is present or the cache is full.
func (c *zoneCache) add(key any, loc *time.Location) {
	if c.n.Load() >= maxZones {
		return
	}
	if _, loaded := c.m.LoadOrStore(key, loc); !loaded {
		c.n.Add(1)
	}
}

var (
	// zones holds locations by name: those Marshal encoded, and those
	// time.LoadLocation found while decoding.
	zones zoneCache
	// loadedZones caches time.LoadLocation by name; nil when it failed or
	// gave UTC or Local, which would not encode as a named location.
	loadedZones zoneCache
	// fixedZones caches time.FixedZone by fixedKey.
	fixedZones zoneCache
)

type fixedKey struct {
	name string
	off  int
}

// rememberZone records loc, encoded under name, for the decoder. The latest
// location per name wins, so a value decoded right after it was encoded gets
// the very same pointer back.
func rememberZone(name string, loc *time.Location) {
	if old, ok := zones.load(name); ok {
		if old != loc {
			zones.m.Store(name, loc)
		}
		return
	}
	zones.add(name, loc)
}

// zoneFor returns the location named name whose offset at t's instant is
// off. name may alias the input: it is copied before being kept.
func zoneFor(name string, off int, t time.Time) *time.Location {
	if loc, ok := zones.load(name); ok && offsetIn(t, loc) == off {
		return loc
	}
	name = strings.Clone(name)
	if loc := loadZone(name); loc != nil && offsetIn(t, loc) == off {
		zones.add(name, loc)
		return loc
	}
	key := fixedKey{name, off}
	if loc, ok := fixedZones.load(key); ok {
		return loc
	}
	loc := time.FixedZone(name, off)
	fixedZones.add(key, loc)
	return loc
}

// loadZone is time.LoadLocation, cached, or nil when it fails or gives UTC or
// Local (a time in those would have been encoded as such).
func loadZone(name string) *time.Location {
	if loc, ok := loadedZones.load(name); ok {
		return loc
	}
	loc, err := time.LoadLocation(name)
	if err != nil || loc == time.UTC || loc == time.Local {
		loc = nil
	}
	loadedZones.add(name, loc)
	return loc
}

func offsetIn(t time.Time, loc *time.Location) int {
	_, off := t.In(loc).Zone()
	return off
}
