package rowcodec

import (
	"bytes"
	"database/sql"
	"math"
	"reflect"
	"time"
	"unsafe"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// op is how a column is set: opGeneric goes through GORM (see setGeneric);
// the others write the field directly, with the result GORM's path gives for
// their natural driver value and for NULL. For any other driver value they
// defer to the generic path, which also produces GORM's errors.
type op uint8

const (
	opGeneric op = iota
	opBool
	opInt8
	opInt16
	opInt32
	opInt64 // int64 and int (64-bit platforms) kinds
	opUint8
	opUint16
	opUint32
	opUint64 // uint64 and uint kinds
	opFloat64
	opString
	opBytes // []byte
	opTime  // time.Time
	opPtrString
	opPtrBool
	opPtrInt64
	opPtrInt
	opPtrFloat64
	opPtrTime
	opNullString
	opNullInt64
	opNullInt32
	opNullInt16
	opNullByte
	opNullFloat64
	opNullBool
	opNullTime // sql.NullTime, gorm.DeletedAt
)

var (
	scannerType = reflect.TypeFor[sql.Scanner]()
	exactOps    = map[reflect.Type]op{
		reflect.TypeFor[[]byte]():          opBytes,
		reflect.TypeFor[time.Time]():       opTime,
		reflect.TypeFor[*string]():         opPtrString,
		reflect.TypeFor[*bool]():           opPtrBool,
		reflect.TypeFor[*int64]():          opPtrInt64,
		reflect.TypeFor[*int]():            opPtrInt,
		reflect.TypeFor[*float64]():        opPtrFloat64,
		reflect.TypeFor[*time.Time]():      opPtrTime,
		reflect.TypeFor[sql.NullString]():  opNullString,
		reflect.TypeFor[sql.NullInt64]():   opNullInt64,
		reflect.TypeFor[sql.NullInt32]():   opNullInt32,
		reflect.TypeFor[sql.NullInt16]():   opNullInt16,
		reflect.TypeFor[sql.NullByte]():    opNullByte,
		reflect.TypeFor[sql.NullFloat64](): opNullFloat64,
		reflect.TypeFor[sql.NullBool]():    opNullBool,
		reflect.TypeFor[sql.NullTime]():    opNullTime,
		reflect.TypeFor[gorm.DeletedAt]():  opNullTime,
	}
	kindOps = map[reflect.Kind]op{
		reflect.Bool: opBool, reflect.Int8: opInt8, reflect.Int16: opInt16, reflect.Int32: opInt32,
		reflect.Int64: opInt64, reflect.Uint8: opUint8, reflect.Uint16: opUint16, reflect.Uint32: opUint32,
		reflect.Uint64: opUint64, reflect.Float64: opFloat64, reflect.String: opString,
	}
)

func init() {
	if unsafe.Sizeof(int(0)) == 8 {
		kindOps[reflect.Int], kindOps[reflect.Uint] = opInt64, opUint64
	}
}

// fastOp chooses the op of field f of model type mt and its offset. Only
// fields reachable without a pointer (GORM allocates embedded pointers as it
// sets their fields) and without a serializer qualify; basic kinds qualify
// when their type has no Scan method, other types only as listed in exactOps.
func fastOp(mt reflect.Type, f *schema.Field) (op, uintptr) {
	if f.Serializer != nil || f.StructField.Type != f.FieldType {
		return opGeneric, 0
	}
	var off uintptr
	t := mt
	for _, i := range f.StructField.Index {
		if i < 0 || t.Kind() != reflect.Struct || i >= t.NumField() {
			return opGeneric, 0
		}
		sf := t.Field(i)
		off += sf.Offset
		t = sf.Type
	}
	if t != f.FieldType {
		return opGeneric, 0
	}
	if o, ok := exactOps[t]; ok {
		return o, off
	}
	if reflect.PointerTo(t).Implements(scannerType) {
		return opGeneric, 0
	}
	if o, ok := kindOps[t.Kind()]; ok {
		return o, off
	}
	return opGeneric, 0
}

// setFast sets the field at p from the column's tag and value and reports
// whether it did; when it did not, r is where it was (the value unread).
func setFast(o op, p unsafe.Pointer, tag byte, r *reader) bool {
	if tag == tagNull {
		return true // the model is zero: GORM leaves (or sets) the zero value
	}
	start := r.i
	ok := false
	switch o {
	case opBool, opPtrBool, opNullBool:
		ok = setBool(o, p, tag)
	case opInt8, opInt16, opInt32, opInt64, opUint8, opUint16, opUint32, opUint64, opPtrInt64, opPtrInt,
		opNullInt64, opNullInt32, opNullInt16, opNullByte:
		ok = tag == tagInt && setInt(o, p, r.varint())
	case opFloat64, opPtrFloat64, opNullFloat64:
		ok = tag == tagFloat && setFloat(o, p, r.float())
	case opString, opPtrString, opNullString:
		ok = tag == tagString && setString(o, p, r.str())
	case opBytes:
		if ok = tag == tagBytes; ok {
			*(*[]byte)(p) = bytes.Clone(r.raw()) // raw is never nil: an empty value stays non-nil, as in database/sql
		}
	case opTime, opPtrTime, opNullTime:
		ok = tag == tagTime && setTime(o, p, r.time())
	}
	if !ok || r.err != nil {
		r.i, r.err = start, nil
		return false
	}
	return true
}

func setBool(o op, p unsafe.Pointer, tag byte) bool {
	if tag != tagTrue && tag != tagFalse {
		return false
	}
	b := tag == tagTrue
	switch o {
	case opBool:
		*(*bool)(p) = b
	case opPtrBool:
		*(**bool)(p) = ptrTo(b)
	case opNullBool:
		*(*sql.NullBool)(p) = sql.NullBool{Bool: b, Valid: true}
	}
	return true
}

// setInt stores n if it fits the field; out of range, database/sql returns an
// error, which the generic path reproduces.
func setInt(o op, p unsafe.Pointer, n int64) bool {
	switch o {
	case opInt8:
		if n < math.MinInt8 || n > math.MaxInt8 {
			return false
		}
		*(*int8)(p) = int8(n)
	case opInt16:
		if n < math.MinInt16 || n > math.MaxInt16 {
			return false
		}
		*(*int16)(p) = int16(n)
	case opInt32:
		if n < math.MinInt32 || n > math.MaxInt32 {
			return false
		}
		*(*int32)(p) = int32(n)
	case opInt64:
		*(*int64)(p) = n
	case opUint8:
		if n < 0 || n > math.MaxUint8 {
			return false
		}
		*(*uint8)(p) = uint8(n)
	case opUint16:
		if n < 0 || n > math.MaxUint16 {
			return false
		}
		*(*uint16)(p) = uint16(n)
	case opUint32:
		if n < 0 || n > math.MaxUint32 {
			return false
		}
		*(*uint32)(p) = uint32(n)
	case opUint64:
		if n < 0 {
			return false
		}
		*(*uint64)(p) = uint64(n)
	case opPtrInt64:
		*(**int64)(p) = ptrTo(n)
	case opPtrInt:
		*(**int)(p) = ptrTo(int(n))
	case opNullInt64:
		*(*sql.NullInt64)(p) = sql.NullInt64{Int64: n, Valid: true}
	case opNullInt32:
		if n < math.MinInt32 || n > math.MaxInt32 {
			return false
		}
		*(*sql.NullInt32)(p) = sql.NullInt32{Int32: int32(n), Valid: true}
	case opNullInt16:
		if n < math.MinInt16 || n > math.MaxInt16 {
			return false
		}
		*(*sql.NullInt16)(p) = sql.NullInt16{Int16: int16(n), Valid: true}
	case opNullByte:
		if n < 0 || n > math.MaxUint8 {
			return false
		}
		*(*sql.NullByte)(p) = sql.NullByte{Byte: byte(n), Valid: true}
	default:
		return false
	}
	return true
}

func setFloat(o op, p unsafe.Pointer, f float64) bool {
	switch o {
	case opFloat64:
		*(*float64)(p) = f
	case opPtrFloat64:
		*(**float64)(p) = ptrTo(f)
	case opNullFloat64:
		*(*sql.NullFloat64)(p) = sql.NullFloat64{Float64: f, Valid: true}
	}
	return true
}

func setString(o op, p unsafe.Pointer, s string) bool {
	switch o {
	case opString:
		*(*string)(p) = s
	case opPtrString:
		*(**string)(p) = ptrTo(s)
	case opNullString:
		*(*sql.NullString)(p) = sql.NullString{String: s, Valid: true}
	}
	return true
}

func setTime(o op, p unsafe.Pointer, t time.Time) bool {
	switch o {
	case opTime:
		*(*time.Time)(p) = t
	case opPtrTime:
		*(**time.Time)(p) = ptrTo(t)
	case opNullTime:
		*(*sql.NullTime)(p) = sql.NullTime{Time: t, Valid: true}
	}
	return true
}

// ptrTo returns a new pointer to a copy of v. (Taking the address of a
// parameter instead would move it to the heap on every call, pointer field or
// not.)
func ptrTo[V any](v V) *V {
	p := new(V)
	*p = v
	return p
}
