package repository

import (
	"context"
	"time"

	"github.com/gormcache/gormcache/cache"
)

// Options configures a Repository. The zero value means defaults.
type Options struct {
	// Namespace prefixes the cache keys of this repository's rows
	// ("<ns>:<id>"). Default: the model's table name.
	Namespace string
	// TTL is the Redis lifetime of cached rows. Default: the cache's L2TTL.
	TTL time.Duration
	// SkipL1 serves this repository from Redis only, never from the
	// in-process tier.
	SkipL1 bool
	// UniqueColumns adds columns GetBy may look rows up by, beyond those
	// declared unique in gorm tags (unique, uniqueIndex). The database must
	// enforce their uniqueness.
	UniqueColumns []string
	// SaveAssociations makes Update save the associations loaded into the
	// model as GORM's Save does (upserting child rows). By default Update
	// and Updates write the model's own columns only
	// (Omit(clause.Associations)): a row read, edited and written back
	// never inserts or rewrites other tables' rows behind the caller's back.
	// Create keeps GORM's behaviour and creates the associations it is given.
	SaveAssociations bool
	// Observe, if set, is called after every repository operation (for
	// metrics). It must be fast and safe for concurrent use.
	Observe func(ctx context.Context, e Event)
}

// Event describes one finished repository operation, for Options.Observe.
type Event struct {
	Op       string // "get", "get_many", "get_by", "create", "update", "updates", "delete", "invalidate"
	Table    string
	Rows     int // rows asked for or written
	Duration time.Duration
	Err      error
	// Tier is the tier that served a read (Get, GetMany, GetBy): TierL1,
	// TierL2, TierDB, or TierMixed for a GetMany whose rows came from more
	// than one; a transaction-bound repository reads the database (TierDB).
	// It is TierNone for writes, for Find, and for reads that failed before
	// any tier answered.
	Tier Tier
	// Served counts the rows (distinct keys) of a read by the tier that
	// answered them; for GetBy, the row's read (not the unique-column
	// lookup before it).
	Served cache.Served
}

// Tier names the tier that served a read, as Event.Tier; its values are
// short lowercase words suitable as a metric label.
type Tier string

// The tiers of Event.Tier.
const (
	TierNone  Tier = ""      // not a cached read, or nothing answered
	TierL1    Tier = "l1"    // the in-process cache
	TierL2    Tier = "l2"    // Redis
	TierDB    Tier = "db"    // the database (a miss in both tiers)
	TierMixed Tier = "mixed" // a GetMany answered by more than one tier
)

// TierOf returns the tier that answered all of s, TierMixed if several did,
// TierNone if none did.
func TierOf(s cache.Served) Tier {
	switch {
	case s.L1 > 0 && s.L2 == 0 && s.Loaded == 0:
		return TierL1
	case s.L2 > 0 && s.L1 == 0 && s.Loaded == 0:
		return TierL2
	case s.Loaded > 0 && s.L1 == 0 && s.L2 == 0:
		return TierDB
	case s == cache.Served{}:
		return TierNone
	}
	return TierMixed
}
