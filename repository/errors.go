package repository

import (
	"errors"
	"fmt"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
)

// ErrNotFound is returned when a row does not exist (or is soft-deleted).
// errors.Is(err, gorm.ErrRecordNotFound) and errors.Is(err, cache.ErrNotFound)
// also hold for it, so existing checks keep working.
var ErrNotFound error = notFound{}

type notFound struct{}

func (notFound) Error() string { return "gormcache: record not found" }
func (notFound) Is(target error) bool {
	return target == gorm.ErrRecordNotFound || target == cache.ErrNotFound
}

// Sentinel errors; every error returned by this package wraps one of them,
// a GORM error, or the caller's context error.
var (
	// ErrConflict is returned by a versioned write whose row changed (or
	// vanished) since the caller read it: zero rows matched the version.
	// Nothing is invalidated; re-read and retry.
	ErrConflict = errors.New("gormcache: version conflict")
	// ErrInvalidID is returned for the zero value of an ID type.
	ErrInvalidID = errors.New("gormcache: invalid id")
	// ErrNilModel is returned for a nil model pointer.
	ErrNilModel = errors.New("gormcache: nil model")
	// ErrUnknownColumn is returned for a column or field the model lacks.
	ErrUnknownColumn = errors.New("gormcache: unknown column")
	// ErrNotUnique is returned by GetBy for a column without a unique
	// constraint (gorm tag unique or uniqueIndex, or Options.UniqueColumns).
	ErrNotUnique = errors.New("gormcache: column is not unique")
	// ErrTxBound is returned when a transaction-bound *gorm.DB is given where
	// the shared connection is required.
	ErrTxBound = errors.New("gormcache: transaction-bound *gorm.DB")
	// ErrUnsupportedModel is returned by New for a model it cannot cache
	// (not a struct, composite primary key, ID type mismatch).
	ErrUnsupportedModel = errors.New("gormcache: unsupported model")
	// ErrInvalidArgument is returned for nil databases, caches, functions.
	ErrInvalidArgument = errors.New("gormcache: invalid argument")
)

// MissingError reports the ids GetMany did not find. errors.Is(err,
// ErrNotFound) holds for it.
type MissingError[ID comparable] struct {
	Table string
	IDs   []ID
}

// Error implements error.
func (e *MissingError[ID]) Error() string {
	return fmt.Sprintf("gormcache: %d record(s) not found in %s: %v", len(e.IDs), e.Table, e.IDs)
}

// Is makes errors.Is(err, ErrNotFound) (and GORM's and the cache's not-found
// sentinels) hold.
func (e *MissingError[ID]) Is(target error) bool {
	return target == ErrNotFound || notFound{}.Is(target)
}
