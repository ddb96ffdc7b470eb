package bincodec

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// This file holds the primitive readers and writers and the encFn/decFn of
// every scalar kind. Conventions:
//
//   - bool, int8, uint8: one raw byte (bool must be 0 or 1).
//   - other signed integers: zigzag varint (encoding/binary's Varint).
//   - other unsigned integers and uintptr: uvarint.
//   - float32/64: 4/8 bytes, little-endian IEEE-754 bits (NaN payloads and
//     -0 survive); complex64/128: real then imaginary part.
//   - string: uvarint byte length, then the bytes.
//
// Decoders take the input b and the read offset i (0 <= i <= len(b)) and
// return the new offset; they never read past len(b).

func appendUvarint(buf []byte, v uint64) []byte {
	if v < 0x80 {
		return append(buf, byte(v))
	}
	return binary.AppendUvarint(buf, v)
}

func appendVarint(buf []byte, v int64) []byte {
	return appendUvarint(buf, uint64(v<<1)^uint64(v>>63))
}

func appendString(buf []byte, s string) []byte {
	buf = appendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// readUvarint reads a uvarint at b[i:].
func readUvarint(b []byte, i int) (uint64, int, error) {
	if i < len(b) && b[i] < 0x80 {
		return uint64(b[i]), i + 1, nil
	}
	if v, j := uvarintAt(b, i); j >= 0 {
		return v, j, nil
	}
	return readUvarintSlow(b, i) // reports the error
}

// uvarintAt decodes the uvarint at b[i:] and returns the offset after it,
// or -1 for a truncated or overflowing varint; it accepts exactly what
// binary.Uvarint accepts. With 8 bytes available it needs one load and no
// loop (Unix seconds take 5 bytes, nanoseconds up to 5): the first byte
// whose high bit is clear ends the varint, and the 7-bit groups up to it are
// compacted by compact7. It is small enough to be inlined.
func uvarintAt(b []byte, i int) (uint64, int) {
	if i >= 0 && len(b)-i >= 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		if stop := ^x & 0x8080808080808080; stop != 0 {
			n := bits.TrailingZeros64(stop) + 1      // bits up to the end of the last byte
			return compact7(x & (1<<n - 1)), i + n/8 // n == 64 keeps all
		}
	}
	return uvarintLoop(b, i)
}

// compact7 joins the low 7 bits of each byte of x (little-endian) into one
// 56-bit number, pairing groups of 7, then 14, then 28 bits.
func compact7(x uint64) uint64 {
	x = x&0x007f007f007f007f | x>>1&0x3f803f803f803f80
	x = x&0x00003fff00003fff | x>>2&0x0fffc0000fffc000
	return x&0x000000000fffffff | x>>4&0x00fffffff0000000
}

// uvarintLoop is uvarintAt byte by byte, for the end of the input and
// varints longer than 8 bytes.
func uvarintLoop(b []byte, i int) (uint64, int) {
	var v uint64
	for k := 0; k < binary.MaxVarintLen64 && i+k < len(b); k++ {
		c := b[i+k]
		if c < 0x80 {
			if k == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -1 // overflows 64 bits
			}
			return v | uint64(c)<<(7*k), i + k + 1
		}
		v |= uint64(c&0x7f) << (7 * k)
	}
	return 0, -1
}

func readUvarintSlow(b []byte, i int) (uint64, int, error) {
	v, n := binary.Uvarint(b[i:])
	if n == 0 {
		return 0, i, errTruncated(i, "varint")
	}
	if n < 0 {
		return 0, i, corruptf("varint overflows 64 bits at offset %d", i)
	}
	return v, i + n, nil
}

// readVarint reads a zigzag varint at b[i:].
func readVarint(b []byte, i int) (int64, int, error) {
	u, i, err := readUvarint(b, i)
	return int64(u>>1) ^ -int64(u&1), i, err
}

// readLen reads a uvarint byte length and checks that b[i:] holds that many
// bytes after it.
func readLen(b []byte, i int, what string) (int, int, error) {
	n, j, err := readUvarint(b, i)
	if err != nil {
		return 0, j, err
	}
	if n > uint64(len(b)-j) {
		return 0, j, errLength(i, n, what)
	}
	return int(n), j, nil
}

// readString reads a length-prefixed string. The result aliases b (zero
// copy); the empty string never does.
func readString(b []byte, i int) (string, int, error) {
	if i < len(b) {
		// Fast path: a one-byte length.
		if n := int(b[i]); n < 0x80 && n < len(b)-i {
			if n == 0 {
				return "", i + 1, nil
			}
			return unsafe.String(&b[i+1], n), i + 1 + n, nil
		}
	}
	n, j, err := readLen(b, i, "string")
	if err != nil || n == 0 {
		return "", j, err
	}
	return unsafe.String(&b[j], n), j + n, nil
}

func readFixed64(b []byte, i int, what string) (uint64, int, error) {
	if len(b)-i < 8 {
		return 0, i, errTruncated(i, what)
	}
	return binary.LittleEndian.Uint64(b[i:]), i + 8, nil
}

func readFixed32(b []byte, i int, what string) (uint32, int, error) {
	if len(b)-i < 4 {
		return 0, i, errTruncated(i, what)
	}
	return binary.LittleEndian.Uint32(b[i:]), i + 4, nil
}

// --- encFn / decFn per scalar kind -----------------------------------------

func encBool(buf []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	if *(*bool)(p) {
		return append(buf, 1), nil
	}
	return append(buf, 0), nil
}

func decBool(b []byte, i int, p unsafe.Pointer, _ int) (int, error) {
	if i >= len(b) {
		return i, errTruncated(i, "bool")
	}
	switch b[i] {
	case 0:
		*(*bool)(p) = false
	case 1:
		*(*bool)(p) = true
	default:
		return i, corruptf("invalid bool byte %#x at offset %d", b[i], i)
	}
	return i + 1, nil
}

func encUint8(buf []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	return append(buf, *(*uint8)(p)), nil
}

func decUint8(b []byte, i int, p unsafe.Pointer, _ int) (int, error) {
	if i >= len(b) {
		return i, errTruncated(i, "byte")
	}
	*(*uint8)(p) = b[i]
	return i + 1, nil
}

// signed is every signed integer kind coded as a zigzag varint.
type signed interface {
	~int16 | ~int32 | ~int64 | ~int
}

// unsigned is every unsigned integer kind coded as a uvarint.
type unsigned interface {
	~uint16 | ~uint32 | ~uint64 | ~uint | ~uintptr
}

func encSigned[T signed](buf []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	return appendVarint(buf, int64(*(*T)(p))), nil
}

// decSigned decodes a T, refusing a value out of T's range.
func decSigned[T signed](b []byte, i int, p unsafe.Pointer, _ int) (int, error) {
	v, j, err := readVarint(b, i)
	if err != nil {
		return j, err
	}
	if v != int64(T(v)) {
		return j, corruptf("%T out of range at offset %d", T(0), i)
	}
	*(*T)(p) = T(v)
	return j, nil
}

func encUnsigned[T unsigned](buf []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	return appendUvarint(buf, uint64(*(*T)(p))), nil
}

// decUnsigned decodes a T, refusing a value out of T's range.
func decUnsigned[T unsigned](b []byte, i int, p unsafe.Pointer, _ int) (int, error) {
	v, j, err := readUvarint(b, i)
	if err != nil {
		return j, err
	}
	if v != uint64(T(v)) {
		return j, corruptf("%T out of range at offset %d", T(0), i)
	}
	*(*T)(p) = T(v)
	return j, nil
}

func encFloat32(buf []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	return binary.LittleEndian.AppendUint32(buf, *(*uint32)(p)), nil
}

func decFloat32(b []byte, i int, p unsafe.Pointer, _ int) (int, error) {
	v, j, err := readFixed32(b, i, "float32")
	if err != nil {
		return j, err
	}
	*(*uint32)(p) = v
	return j, nil
}

func encFloat64(buf []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	return binary.LittleEndian.AppendUint64(buf, *(*uint64)(p)), nil
}

func decFloat64(b []byte, i int, p unsafe.Pointer, _ int) (int, error) {
	v, j, err := readFixed64(b, i, "float64")
	if err != nil {
		return j, err
	}
	*(*uint64)(p) = v
	return j, nil
}

func encComplex64(buf []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	c := (*[2]uint32)(p)
	buf = binary.LittleEndian.AppendUint32(buf, c[0])
	return binary.LittleEndian.AppendUint32(buf, c[1]), nil
}

func decComplex64(b []byte, i int, p unsafe.Pointer, _ int) (int, error) {
	if len(b)-i < 8 {
		return i, errTruncated(i, "complex64")
	}
	c := (*[2]uint32)(p)
	c[0] = binary.LittleEndian.Uint32(b[i:])
	c[1] = binary.LittleEndian.Uint32(b[i+4:])
	return i + 8, nil
}

func encComplex128(buf []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	c := (*[2]uint64)(p)
	buf = binary.LittleEndian.AppendUint64(buf, c[0])
	return binary.LittleEndian.AppendUint64(buf, c[1]), nil
}

func decComplex128(b []byte, i int, p unsafe.Pointer, _ int) (int, error) {
	if len(b)-i < 16 {
		return i, errTruncated(i, "complex128")
	}
	c := (*[2]uint64)(p)
	c[0] = binary.LittleEndian.Uint64(b[i:])
	c[1] = binary.LittleEndian.Uint64(b[i+8:])
	return i + 16, nil
}

func encString(buf []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	return appendString(buf, *(*string)(p)), nil
}

func decString(b []byte, i int, p unsafe.Pointer, _ int) (int, error) {
	s, j, err := readString(b, i)
	if err != nil {
		return j, err
	}
	*(*string)(p) = s
	return j, nil
}

// []byte-shaped slices (element kind uint8 without marshaler): uvarint
// length+1 (0 = nil), then the raw bytes. Decoding always copies.

func encBytes(buf []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	s := *(*[]byte)(p)
	if s == nil {
		return append(buf, 0), nil
	}
	buf = appendUvarint(buf, uint64(len(s))+1)
	return append(buf, s...), nil
}

func decBytes(b []byte, i int, p unsafe.Pointer, _ int) (int, error) {
	n, j, err := readUvarint(b, i)
	if err != nil {
		return j, err
	}
	if n == 0 {
		*(*[]byte)(p) = nil
		return j, nil
	}
	n--
	if n > uint64(len(b)-j) {
		return j, errLength(i, n, "bytes")
	}
	s := make([]byte, n)
	copy(s, b[j:])
	*(*[]byte)(p) = s
	return j + int(n), nil
}

// []string-shaped slices (element kind string without marshaler).

func encStrings(buf []byte, p unsafe.Pointer, _ int) ([]byte, error) {
	s := *(*[]string)(p)
	if s == nil {
		return append(buf, 0), nil
	}
	buf = appendUvarint(buf, uint64(len(s))+1)
	for _, e := range s {
		buf = appendString(buf, e)
	}
	return buf, nil
}

func decStrings(b []byte, i int, p unsafe.Pointer, _ int) (int, error) {
	n, j, err := readUvarint(b, i)
	if err != nil {
		return j, err
	}
	if n == 0 {
		*(*[]string)(p) = nil
		return j, nil
	}
	n--
	// Every string takes at least its length byte.
	if n > uint64(len(b)-j) {
		return j, errLength(i, n, "[]string")
	}
	s := make([]string, n)
	for k := range s {
		if s[k], j, err = readString(b, j); err != nil {
			return j, err
		}
	}
	*(*[]string)(p) = s
	return j, nil
}
