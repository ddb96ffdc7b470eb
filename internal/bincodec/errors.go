package bincodec

import (
	"errors"
	"fmt"
)

var (
	// ErrUnsupported reports a type or value the codec cannot round-trip
	// exactly, and so refuses rather than return a different value later.
	// Types (refused when their plan is compiled, on first use or by Check):
	// channels, functions, unsafe pointers, interface types, and structs
	// with unexported fields that they do not encode themselves through
	// marshaler methods. Values (refused by Marshal): pointer structures
	// nested deeper than the depth limit (cycles), maps modified during
	// Marshal, and marshaler methods that fail. A bad Unmarshal target is
	// ErrUnsupported too. Errors returned by this package for these cases
	// satisfy errors.Is(err, ErrUnsupported).
	ErrUnsupported = errors.New("gormcache: bincodec: unsupported type or value")

	// ErrCorrupt reports input that is not a valid encoding of the target
	// type: truncated, trailing bytes, out-of-range values, impossible
	// lengths, or a marshaler method that rejected its bytes. Errors returned
	// by Unmarshal for such input satisfy errors.Is(err, ErrCorrupt).
	ErrCorrupt = errors.New("gormcache: bincodec: corrupt input")
)

// codecError is a sentinel (ErrUnsupported or ErrCorrupt) with detail and an
// optional cause (for example the error of a marshaler method); errors.Is
// matches both.
type codecError struct {
	kind  error
	msg   string
	cause error
}

func (e *codecError) Error() string {
	s := e.kind.Error() + ": " + e.msg
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

func (e *codecError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func corruptf(format string, args ...any) error {
	return &codecError{kind: ErrCorrupt, msg: fmt.Sprintf(format, args...)}
}

func unsupportedf(format string, args ...any) error {
	return &codecError{kind: ErrUnsupported, msg: fmt.Sprintf(format, args...)}
}

// wrapCorrupt wraps the error of a method called while decoding.
func wrapCorrupt(cause error, format string, args ...any) error {
	return &codecError{kind: ErrCorrupt, msg: fmt.Sprintf(format, args...), cause: cause}
}

// wrapUnsupported wraps the error of a method called while encoding.
func wrapUnsupported(cause error, format string, args ...any) error {
	return &codecError{kind: ErrUnsupported, msg: fmt.Sprintf(format, args...), cause: cause}
}

// errTruncated is the error for input that ends inside a value.
func errTruncated(i int, what string) error {
	return corruptf("truncated %s at offset %d", what, i)
}

// errLength is the error for a length that the remaining input cannot hold.
func errLength(i int, n uint64, what string) error {
	return corruptf("%s length %d at offset %d exceeds the remaining input", what, n, i)
}
