package repository

import (
	"context"
	"time"
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
}
