package cache

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Kind is what an entry says about its key.
type Kind uint8

// Entry kinds.
const (
	// KindValue holds an encoded value.
	KindValue Kind = 1
	// KindTombstone records that the key was invalidated at a version: any
	// fill with an older version is rejected. It is a miss for readers.
	KindTombstone Kind = 2
	// KindNotFound records that the loader found nothing. Not-found entries
	// always carry version 0, so they never outrank a later insert.
	KindNotFound Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindValue:
		return "value"
	case KindTombstone:
		return "tombstone"
	case KindNotFound:
		return "not-found"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// The envelope is the byte layout of every entry in both tiers:
//
//	offset size field
//	0      1    magic (format version), envMagic
//	1      1    kind
//	2      8    version, big-endian (so Lua can compare it bytewise)
//	10     8    expiry, unix nanoseconds, big-endian; 0 = none
//	18     8    schema fingerprint of the value's type and codec
//	26     8    namespace epoch the entry was loaded under, big-endian
//	34     4    CRC-32C of the whole envelope with this field zeroed;
//	            0 in tombstones, whose version the server rewrites
//	38     4    payload length
//	42     n    payload (codec bytes; empty unless KindValue)
//
// A keyed envelope (magic envKeyedMagic), for a key stored under its hash
// (see MaxStoredKeyLen), has the original key between the header and the
// payload (uvarint length, bytes), so that a hash collision is a miss.
//
// The Lua scripts in l2.go read the magic, kind, version, expiry, schema
// (a tombstone's floor) and epoch at these offsets (1-based in Lua).
const (
	envMagic      byte = 0xC9
	envKeyedMagic byte = 0xCA
)

const (
	envHeaderLen = 42
	offKind      = 1
	offVersion   = 2
	offExpiry    = 10
	offSchema    = 18
	offEpoch     = 26
	offCRC       = 34
	offLen       = 38
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var zeroCRC [4]byte // stands in for the CRC field while it is computed

// checksum is the CRC-32C of b with its CRC field taken as zero.
func checksum(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[:offCRC])
	c = crc32.Update(c, castagnoli, zeroCRC[:])
	return crc32.Update(c, castagnoli, b[offCRC+4:])
}

// envelope is a decoded entry. Its payload aliases the decoded buffer.
type envelope struct {
	kind    Kind
	version uint64
	expiry  int64 // unix nanoseconds; 0 = never
	schema  uint64
	epoch   uint64 // values and not-founds: the epoch their load began in; tombstones: 0
	key     string // the original key of a hashed key (keyed envelopes only)
	payload []byte
}

// appendEnvelope appends the encoding of e to dst.
func appendEnvelope(dst []byte, e envelope) []byte {
	var h [envHeaderLen]byte
	h[0] = envMagic
	if e.key != "" {
		h[0] = envKeyedMagic
	}
	h[offKind] = byte(e.kind)
	binary.BigEndian.PutUint64(h[offVersion:], e.version)
	binary.BigEndian.PutUint64(h[offExpiry:], uint64(e.expiry))
	binary.BigEndian.PutUint64(h[offSchema:], e.schema)
	binary.BigEndian.PutUint64(h[offEpoch:], e.epoch)
	binary.BigEndian.PutUint32(h[offLen:], uint32(len(e.payload)))
	start := len(dst)
	dst = append(dst, h[:]...)
	if e.key != "" {
		dst = binary.AppendUvarint(dst, uint64(len(e.key)))
		dst = append(dst, e.key...)
	}
	dst = append(dst, e.payload...)
	if e.kind != KindTombstone {
		binary.BigEndian.PutUint32(dst[start+offCRC:], checksum(dst[start:]))
	}
	return dst
}

// decodeEnvelope parses b. Every malformed input (short, foreign magic,
// unknown kind, length mismatch, payload on a non-value, checksum mismatch)
// is errCorrupt; it never panics and never reads past b.
func decodeEnvelope(b []byte) (envelope, error) {
	if len(b) < envHeaderLen || (b[0] != envMagic && b[0] != envKeyedMagic) {
		return envelope{}, errCorrupt
	}
	e := envelope{
		kind:    Kind(b[offKind]),
		version: binary.BigEndian.Uint64(b[offVersion:]),
		expiry:  int64(binary.BigEndian.Uint64(b[offExpiry:])),
		schema:  binary.BigEndian.Uint64(b[offSchema:]),
		epoch:   binary.BigEndian.Uint64(b[offEpoch:]),
	}
	n := binary.BigEndian.Uint32(b[offLen:])
	body := envHeaderLen
	if b[0] == envKeyedMagic {
		kl, w := binary.Uvarint(b[envHeaderLen:])
		if w <= 0 || kl == 0 || kl > uint64(len(b)-envHeaderLen-w) {
			return envelope{}, errCorrupt
		}
		body += w + int(kl)
		e.key = string(b[envHeaderLen+w : body])
	}
	if uint64(n) != uint64(len(b)-body) || e.expiry < 0 {
		return envelope{}, errCorrupt
	}
	sum := binary.BigEndian.Uint32(b[offCRC:])
	switch e.kind {
	case KindValue:
		e.payload = b[body:]
	case KindTombstone:
		if n != 0 || sum != 0 {
			return envelope{}, errCorrupt
		}
		return e, nil
	case KindNotFound:
		if n != 0 {
			return envelope{}, errCorrupt
		}
	default:
		return envelope{}, errCorrupt
	}
	if sum != checksum(b) {
		return envelope{}, errCorrupt
	}
	return e, nil
}

// expired reports whether e has expired at now (unix nanoseconds).
func (e envelope) expired(now int64) bool { return e.expiry != 0 && now >= e.expiry }

// setExpiry rewrites the expiry of an encoded envelope in place (and its
// checksum).
func setExpiry(b []byte, expiry int64) {
	if len(b) < envHeaderLen {
		return
	}
	binary.BigEndian.PutUint64(b[offExpiry:], uint64(expiry))
	if Kind(b[offKind]) != KindTombstone {
		binary.BigEndian.PutUint32(b[offCRC:], checksum(b))
	}
}

// expiryOf reads the expiry of an encoded envelope.
func expiryOf(b []byte) int64 { return int64(binary.BigEndian.Uint64(b[offExpiry:])) }
