package bincodec

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"time"
	"unsafe"
)

// time.Time is the most common non-trivial field of GORM models, so it has a
// dedicated path. Its encoding is exactly time's own binary format (a length
// byte, then Time.AppendBinary's 15 or 16 bytes), and decoding calls
// (*time.Time).UnmarshalBinary directly: the result is whatever that method
// produces (time.UTC for UTC, time.Local when the offset matches the local
// zone at that instant, otherwise an unnamed time.FixedZone), with neither
// the interface conversion nor the allocation of the generic marshaler path.
//
// As with every codec built on MarshalBinary or MarshalJSON, the monotonic
// clock reading and the name of a non-UTC, non-Local zone are not preserved.
//
// time's binary format mangles negative zone offsets that are not whole
// minutes (AppendBinary writes the seconds as a signed byte that
// UnmarshalBinary adds unsigned); Marshal refuses those (ErrUnsupported).
// UnmarshalBinary accepts a few inputs that do not round-trip (nanoseconds
// outside [0, 1e9), or a version-2 offset that AppendBinary would refuse);
// they can only come from corrupt input and are rejected as ErrCorrupt.

var timeType = reflect.TypeFor[time.Time]()

const (
	timeLenV1 = 15 // version, 8 bytes seconds, 4 bytes nanoseconds, 2 bytes offset minutes
	timeLenV2 = 16 // V1 + offset seconds
)

func buildTime(p *plan) {
	p.op = opTime
	p.minSize = 1 + timeLenV1
	p.enc = encTime
	p.dec = decTime
}

func encTime(buf []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	start := len(buf)
	out, err := (*time.Time)(p).AppendBinary(append(buf, 0))
	if err != nil {
		return buf, wrapUnsupported(err, "encoding time.Time")
	}
	n := len(out) - start - 1 // 15 or 16
	if n == timeLenV2 && int8(out[len(out)-1]) < 0 {
		// A negative offset with seconds (western LMT zones, before ~1900):
		// AppendBinary writes the seconds as a signed byte that
		// UnmarshalBinary adds unsigned, so it would decode a different
		// offset. Refuse rather than return a wrong time later.
		return buf, unsupportedf("time.Time zone offset %s is not representable in time's binary format", (*time.Time)(p).Format("-07:00:00"))
	}
	out[start] = byte(n)
	return out, nil
}

func decTime(b []byte, i int, p unsafe.Pointer, _ int) (int, error) {
	if i >= len(b) {
		return i, errTruncated(i, "time.Time")
	}
	n := int(b[i])
	j := i + 1
	if n != timeLenV1 && n != timeLenV2 {
		return i, corruptf("time.Time length %d at offset %d", n, i)
	}
	if len(b)-j < n {
		return i, errTruncated(i, "time.Time")
	}
	data := b[j : j+n : j+n]
	if want := byte(n - timeLenV1 + 1); data[0] != want { // version 1 has 15 bytes, 2 has 16
		return i, corruptf("time.Time version %d with length %d at offset %d", data[0], n, i)
	}
	if ns := binary.BigEndian.Uint32(data[9:]); ns >= 1e9 {
		return i, corruptf("time.Time nanoseconds %d out of range at offset %d", ns, i)
	}
	t := (*time.Time)(p)
	if err := t.UnmarshalBinary(data); err != nil {
		return i, wrapCorrupt(err, "time.Time at offset %d", i)
	}
	if n == timeLenV2 {
		// Only zones with a seconds offset (LMT) use version 2; accept it
		// only in the form AppendBinary produces, so it re-encodes.
		var tmp [timeLenV2]byte
		again, err := t.AppendBinary(tmp[:0])
		if err != nil || !bytes.Equal(again, data) {
			return i, corruptf("non-canonical time.Time at offset %d", i)
		}
	}
	return j + n, nil
}
