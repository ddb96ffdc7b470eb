package cache

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps one of them (or
// the caller's context error, or the loader's own error), so callers test with
// errors.Is and never compare strings.
var (
	// ErrNotFound is returned by Get when the loader reported that the key
	// does not exist, now or from a cached not-found entry. Loaders return it
	// (or an error wrapping it) to have the absence cached.
	ErrNotFound = errors.New("gormcache: not found")
	// ErrInvalidOptions wraps every validation failure of Options.
	ErrInvalidOptions = errors.New("gormcache: invalid options")
	// ErrInvalidKey is returned for an empty key, a key longer than MaxKeyLen,
	// or a key containing '{' or '}' (reserved for Redis Cluster hash tags).
	ErrInvalidKey = errors.New("gormcache: invalid key")
	// ErrNilLoader is returned when Get or GetMany is called without a loader.
	ErrNilLoader = errors.New("gormcache: nil loader")
	// ErrNilCache is returned when a function is called with a nil *Cache.
	ErrNilCache = errors.New("gormcache: nil cache")
	// ErrClosed is returned by operations on a closed Cache.
	ErrClosed = errors.New("gormcache: cache closed")
	// ErrLoaderPanic wraps a panic raised by a loader. Every caller waiting on
	// that load receives it; the panic does not escape to the caller's
	// goroutine and nothing is cached.
	ErrLoaderPanic = errors.New("gormcache: loader panicked")
	// ErrEncode is returned when the codec cannot encode a loaded value.
	ErrEncode = errors.New("gormcache: cannot encode value")
	// ErrDecode is returned when a freshly loaded value cannot be decoded into
	// the caller's type. Corrupt bytes read from a tier are never returned as
	// this error: they are a miss.
	ErrDecode = errors.New("gormcache: cannot decode value")
	// ErrUnsupportedType is returned by Get, Load, GetMany and CheckType for
	// a type the cache's codec cannot round-trip exactly (a field it cannot
	// see or restore); the loader is not called. It wraps the codec's
	// explanation.
	ErrUnsupportedType = errors.New("gormcache: type cannot be cached faithfully")
	// ErrInvalidFormat is returned by LoadEncoded and GetManyEncoded for a
	// nil Format, a nil Decode or a zero Fingerprint.
	ErrInvalidFormat = errors.New("gormcache: invalid entry format")
	// ErrInvalidationUnconfirmed is returned by Invalidate and
	// InvalidateMany when Redis did not confirm the invalidation within
	// WriteTimeout (and by Close when a pending epoch bump could not be
	// made). The write itself committed. This instance stops reading Redis
	// until the namespace epoch is bumped (as soon as Redis answers), other
	// instances are told the keys are unconfirmed, and L1 is evicted
	// everywhere the bus reaches.
	ErrInvalidationUnconfirmed = errors.New("gormcache: invalidation not confirmed by Redis")
	// ErrPublisherSet is returned by SetPublisher when a publisher is already
	// attached.
	ErrPublisherSet = errors.New("gormcache: publisher already set")

	// errCorrupt marks bytes that are not a valid envelope.
	errCorrupt = errors.New("gormcache: corrupt entry")
)

func invalidOption(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
}

// PanicError is the error carried by ErrLoaderPanic: the recovered value and
// the stack of the loader goroutine.
type PanicError struct {
	Value any
	Stack []byte
}

// Error implements error.
func (p *PanicError) Error() string {
	return fmt.Sprintf("%v: %v\n\n%s", ErrLoaderPanic, p.Value, p.Stack)
}

// Unwrap makes errors.Is(err, ErrLoaderPanic) hold.
func (p *PanicError) Unwrap() error { return ErrLoaderPanic }
