package rowcodec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
	"unsafe"
)

// ErrCorrupt is returned by Decode for bytes that are not an encoding of the
// plan's row (truncated, trailing bytes, unknown tags).
var ErrCorrupt = errors.New("gormcache: corrupt row entry")

// ErrUnsupportedValue is returned when a driver returned a value whose type
// is not one of database/sql's driver value kinds, so the row cannot be
// stored exactly. The row is then not cached.
var ErrUnsupportedValue = errors.New("gormcache: unsupported driver value")

// Tags of an encoded column. Every column of the plan has one, in the plan's
// column order.
const (
	tagAbsent byte = iota // the query returned no such column: the field stays zero
	tagNull
	tagFalse
	tagTrue
	tagInt    // zigzag varint
	tagFloat  // 8 bytes, IEEE-754 bits, little-endian (NaN payloads and -0 kept)
	tagString // uvarint length, bytes
	tagBytes  // uvarint length, bytes (a non-nil slice, possibly empty)
	tagTime   // zigzag varint seconds, uvarint nanoseconds, location (see appendTime)
)

// appendValue appends the encoding of driver value v.
func appendValue(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, tagNull), nil
	case bool:
		if x {
			return append(dst, tagTrue), nil
		}
		return append(dst, tagFalse), nil
	case int64:
		return binary.AppendVarint(append(dst, tagInt), x), nil
	case float64:
		return binary.LittleEndian.AppendUint64(append(dst, tagFloat), math.Float64bits(x)), nil
	case string:
		dst = binary.AppendUvarint(append(dst, tagString), uint64(len(x)))
		return append(dst, x...), nil
	case []byte:
		if x == nil { // database/sql's own values never do this; keep NULL semantics
			return append(dst, tagNull), nil
		}
		dst = binary.AppendUvarint(append(dst, tagBytes), uint64(len(x)))
		return append(dst, x...), nil
	case time.Time:
		return appendTime(append(dst, tagTime), x), nil
	}
	return dst, fmt.Errorf("%w: %T", ErrUnsupportedValue, v)
}

// Locations of a time value.
const (
	locUTC   byte = iota // loc nil: time.UTC
	locLocal             // time.Local
	locNamed             // any other: name, offset at that instant
)

// appendTime encodes the instant (seconds and nanoseconds since the Unix
// epoch) and the location: time.UTC and time.Local by identity, any other
// by name and offset. The monotonic reading, which no driver returns, is
// not kept.
func appendTime(dst []byte, t time.Time) []byte {
	dst = binary.AppendVarint(dst, t.Unix())
	dst = binary.AppendUvarint(dst, uint64(t.Nanosecond()))
	switch loc := t.Location(); loc {
	case time.UTC:
		return append(dst, locUTC)
	case time.Local:
		return append(dst, locLocal)
	default:
		_, off := t.Zone()
		rememberLocation(loc)
		dst = append(dst, locNamed)
		dst = binary.AppendUvarint(dst, uint64(len(loc.String())))
		dst = append(dst, loc.String()...)
		return binary.AppendVarint(dst, int64(off))
	}
}

// locations holds every named location this process encoded (name →
// *time.Location), so that an entry decoded here gets the same pointer back.
var locations sync.Map

func rememberLocation(loc *time.Location) {
	if _, ok := locations.Load(loc.String()); !ok {
		locations.LoadOrStore(loc.String(), loc)
	}
}

// locationFor returns the location named name whose offset at unix second
// sec is off: one this process encoded, else the tz database's, else a
// fixed zone.
func locationFor(name string, sec int64, off int) *time.Location {
	if v, ok := locations.Load(name); ok {
		loc := v.(*time.Location)
		if _, o := time.Unix(sec, 0).In(loc).Zone(); o == off {
			return loc
		}
	}
	if loc, err := time.LoadLocation(name); err == nil && name != "" {
		if _, o := time.Unix(sec, 0).In(loc).Zone(); o == off {
			v, _ := locations.LoadOrStore(name, loc)
			return v.(*time.Location)
		}
	}
	return time.FixedZone(name, off)
}

// reader walks an encoded row. Strings it returns alias its buffer.
type reader struct {
	b   []byte
	i   int
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = ErrCorrupt
	}
	r.i = len(r.b)
}

func (r *reader) byte() byte {
	if r.i >= len(r.b) {
		r.fail()
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b[r.i:])
	if n <= 0 {
		r.fail()
		return 0
	}
	r.i += n
	return v
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b[r.i:])
	if n <= 0 {
		r.fail()
		return 0
	}
	r.i += n
	return v
}

func (r *reader) float() float64 {
	if len(r.b)-r.i < 8 {
		r.fail()
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b[r.i:]))
	r.i += 8
	return v
}

// raw returns the next length-prefixed bytes, aliasing the buffer.
func (r *reader) raw() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)-r.i) {
		r.fail()
		return nil
	}
	s := r.b[r.i : r.i+int(n) : r.i+int(n)]
	r.i += int(n)
	return s
}

// str returns the next length-prefixed string, aliasing the buffer.
func (r *reader) str() string {
	b := r.raw()
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (r *reader) time() time.Time {
	sec := r.varint()
	nsec := r.uvarint()
	if nsec >= 1e9 {
		r.fail()
		return time.Time{}
	}
	switch r.byte() {
	case locUTC:
		return time.Unix(sec, int64(nsec)).UTC()
	case locLocal:
		return time.Unix(sec, int64(nsec))
	case locNamed:
		name := r.str()
		off := r.varint()
		if r.err != nil || off < math.MinInt32 || off > math.MaxInt32 {
			r.fail()
			return time.Time{}
		}
		return time.Unix(sec, int64(nsec)).In(locationFor(name, sec, int(off)))
	}
	r.fail()
	return time.Time{}
}

// value decodes the driver value of a column with tag tag (not tagAbsent):
// the generic path's input. Strings alias the buffer; []byte values are
// copies.
func (r *reader) value(tag byte) any {
	switch tag {
	case tagNull:
		return nil
	case tagFalse:
		return false
	case tagTrue:
		return true
	case tagInt:
		return r.varint()
	case tagFloat:
		return r.float()
	case tagString:
		return r.str()
	case tagBytes:
		return append([]byte{}, r.raw()...)
	case tagTime:
		return r.time()
	}
	r.fail()
	return nil
}
