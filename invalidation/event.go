package invalidation

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gormcache/gormcache/cache"
)

// Kind says what an Event announces.
type Kind uint8

// Event kinds.
const (
	// KindInvalidate carries the keys one committed transaction changed.
	KindInvalidate Kind = 1
	// KindEpoch announces that the origin bumped the namespace epoch.
	KindEpoch Kind = 2
	// KindUnconfirmed carries keys the origin committed writes to but whose
	// invalidation Redis did not confirm (yet): receivers evict them and stop
	// reading them from Redis until a KindInvalidate of the same keys from the
	// same origin confirms them, or the namespace epoch moves.
	KindUnconfirmed Kind = 3
	// KindProbe asks every instance to acknowledge, on the origin's ack
	// channel, that it has applied every event the origin published before
	// (Bus.WaitApplied). It carries no keys.
	KindProbe Kind = 4
)

// Event is one message on the bus: the invalidations of one committed
// transaction (or an epoch bump) from one instance.
type Event struct {
	Kind      Kind
	Namespace string
	Origin    string // the publishing instance's id
	Seq       uint64 // per-origin sequence number, from 1, one per event
	SentAt    int64  // origin's clock, unix nanoseconds (for propagation figures)
	Epoch     uint64 // KindEpoch: the new epoch
	Keys      []cache.Invalidation
}

// Limits enforced by Decode (and Encode), so that garbage can never make a
// subscriber allocate much or evict the wrong key.
const (
	MaxOrigin    = 64
	MaxNamespace = 128
	MaxKeys      = 1 << 16
)

// ErrBadEvent wraps every reason a payload is not a valid event.
var ErrBadEvent = errors.New("gormcache: bad invalidation event")

// Wire format: "gI", format version 1, kind, then uvarint/varint fields and
// length-prefixed strings: origin, seq, sentAt (zigzag), epoch, namespace,
// key count, then per key: key, version.
const (
	magic0, magic1 = 'g', 'I'
	formatVersion  = 1
)

// Encode appends e's wire form to dst.
func Encode(dst []byte, e Event) ([]byte, error) {
	if err := e.validate(); err != nil {
		return nil, err
	}
	dst = append(dst, magic0, magic1, formatVersion, byte(e.Kind))
	dst = appendString(dst, e.Origin)
	dst = binary.AppendUvarint(dst, e.Seq)
	dst = binary.AppendVarint(dst, e.SentAt)
	dst = binary.AppendUvarint(dst, e.Epoch)
	dst = appendString(dst, e.Namespace)
	dst = binary.AppendUvarint(dst, uint64(len(e.Keys)))
	for _, k := range e.Keys {
		dst = appendString(dst, k.Key)
		dst = binary.AppendUvarint(dst, k.Version)
	}
	return dst, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func (e Event) validate() error {
	switch {
	case e.Kind != KindInvalidate && e.Kind != KindEpoch && e.Kind != KindUnconfirmed && e.Kind != KindProbe:
		return fmt.Errorf("%w: kind %d", ErrBadEvent, e.Kind)
	case e.Origin == "" || len(e.Origin) > MaxOrigin:
		return fmt.Errorf("%w: origin of %d bytes", ErrBadEvent, len(e.Origin))
	case e.Namespace == "" || len(e.Namespace) > MaxNamespace:
		return fmt.Errorf("%w: namespace of %d bytes", ErrBadEvent, len(e.Namespace))
	case e.Seq == 0:
		return fmt.Errorf("%w: sequence 0", ErrBadEvent)
	case len(e.Keys) > MaxKeys:
		return fmt.Errorf("%w: %d keys", ErrBadEvent, len(e.Keys))
	case (e.Kind == KindInvalidate || e.Kind == KindUnconfirmed) && len(e.Keys) == 0:
		return fmt.Errorf("%w: invalidation without keys", ErrBadEvent)
	case e.Kind == KindProbe && len(e.Keys) != 0:
		return fmt.Errorf("%w: probe with keys", ErrBadEvent)
	case e.Kind == KindEpoch && (e.Epoch == 0 || len(e.Keys) != 0):
		return fmt.Errorf("%w: malformed epoch event", ErrBadEvent)
	}
	for _, k := range e.Keys {
		if k.Key == "" || len(k.Key) > cache.MaxStoredKeyLen {
			return fmt.Errorf("%w: key of %d bytes", ErrBadEvent, len(k.Key))
		}
	}
	return nil
}

// Decode parses a payload. It accepts only a complete, valid event: any
// malformed, truncated or oversized input, or trailing bytes, is ErrBadEvent,
// and nothing of it is returned. It never panics.
func Decode(b []byte) (Event, error) {
	d := decoder{b: b}
	if len(b) < 4 || b[0] != magic0 || b[1] != magic1 || b[2] != formatVersion {
		return Event{}, fmt.Errorf("%w: not an event", ErrBadEvent)
	}
	e := Event{Kind: Kind(b[3])}
	d.b = b[4:]
	e.Origin = d.str(MaxOrigin)
	e.Seq = d.uvarint()
	e.SentAt = d.varint()
	e.Epoch = d.uvarint()
	e.Namespace = d.str(MaxNamespace)
	n := d.uvarint()
	if n > MaxKeys || n > uint64(len(d.b)) { // each key takes at least 2 bytes
		return Event{}, fmt.Errorf("%w: %d keys", ErrBadEvent, n)
	}
	if n > 0 {
		e.Keys = make([]cache.Invalidation, n)
	}
	for i := range e.Keys {
		e.Keys[i].Key = d.str(cache.MaxStoredKeyLen)
		e.Keys[i].Version = d.uvarint()
	}
	if d.err != nil {
		return Event{}, d.err
	}
	if len(d.b) != 0 {
		return Event{}, fmt.Errorf("%w: %d trailing bytes", ErrBadEvent, len(d.b))
	}
	if err := e.validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

type decoder struct {
	b       []byte
	err     error
	scratch [binary.MaxVarintLen64]byte
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != len(binary.AppendUvarint(d.scratch[:0], v)) { // overlong encodings too
		d.err = fmt.Errorf("%w: bad varint", ErrBadEvent)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || n != len(binary.AppendVarint(d.scratch[:0], v)) {
		d.err = fmt.Errorf("%w: bad varint", ErrBadEvent)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(max int) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(max) || n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: string of %d bytes", ErrBadEvent, n)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
