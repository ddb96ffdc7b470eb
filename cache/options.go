package cache

import (
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults applied by New to zero fields of Options.
const (
	DefaultNamespace       = "gormcache"
	DefaultL1MaxBytes      = 64 << 20
	DefaultL1Shards        = 256
	DefaultL1MaxEntryBytes = 64 << 10
	DefaultL1TTL           = time.Minute
	DefaultL2TTL           = 10 * time.Minute
	DefaultNotFoundTTL     = 30 * time.Second
	DefaultTombstoneTTL    = 10 * time.Minute
	DefaultTTLJitter       = 0.1
	DefaultRedisTimeout    = 100 * time.Millisecond
	DefaultRedisRetryAfter = time.Second
	DefaultLoadTimeout     = 10 * time.Second
	DefaultEpochInterval   = time.Second
	DefaultLeaseTTL        = 2 * time.Second
	DefaultLeaseWait       = 100 * time.Millisecond
	DefaultWriteTimeout    = time.Second
	DefaultServerCheck     = 50 * time.Millisecond

	// DefaultStalenessBound is the staleness bound B by default: how long
	// after another instance's acknowledged write this instance may still
	// serve the old row from L1. The invalidation bus's DefaultHealthWindow
	// is this value. A cache with Redis and no invalidation source attached
	// (see SetLocalServing, VouchLocal) caps the lifetime of every L1 entry
	// at it, so that instances sharing the Redis namespace without a bus are
	// no more stale than instances with one, unless Options.SingleInstance
	// declares that there are no other instances.
	DefaultStalenessBound = 150 * time.Millisecond

	// MaxKeyLen is the longest key a read accepts, in bytes. Invalidations
	// accept longer keys (nothing is cached under them), so that the
	// invalidation of a committed write never fails on the length of a
	// value it wrote.
	MaxKeyLen = 64 << 10
	// MaxStoredKeyLen is the longest key stored as it is; a longer key is
	// stored (and announced to other instances) under "#" and its SHA-256 in
	// hex, and its entries carry the original, so that a collision would be
	// a miss, never another key's value.
	MaxStoredKeyLen = 1024
)

// Options configures a Cache. The zero value of every field means its
// documented default, so Options{Redis: rdb} is a complete configuration.
// New validates the result and reports every problem as ErrInvalidOptions.
type Options struct {
	// Redis is the shared second tier (L2). Any redis.UniversalClient works:
	// a single node, a failover client, or a cluster client (every script
	// touches one hash slot). Nil means no L2: the cache is process-local
	// and coherent within this process only.
	//
	// go-redis clients must be created with ContextTimeoutEnabled: true (or
	// a ReadTimeout no longer than RedisTimeout): otherwise they ignore the
	// deadline RedisTimeout puts on each call, and New refuses them.
	Redis redis.UniversalClient

	// Namespace prefixes every Redis key ("<ns>:{<key>}", its lease
	// "<ns>:{<key>}:lease", the epoch "<ns>:epoch{e}") and names
	// the invalidation channel. Default DefaultNamespace. It must not contain
	// '{', '}' or whitespace.
	Namespace string

	// L1MaxBytes bounds the memory of the in-process tier (bigcache's hard
	// limit, rounded up to whole MiB). Default 64 MiB; negative disables L1.
	L1MaxBytes int
	// L1Shards is the number of bigcache shards, a power of two. Default 256.
	L1Shards int
	// L1MaxEntryBytes is the largest encoded entry kept in L1; larger values
	// are kept in L2 only. Default 64 KiB. It must not exceed a quarter of a
	// shard (L1MaxBytes / L1Shards / 4), so one entry never empties a shard.
	L1MaxEntryBytes int

	// L1TTL is the longest an entry lives in L1. An L1 entry never outlives
	// the L2 entry it came from. With Redis, it applies only once an
	// invalidation source is attached or with SingleInstance; until then
	// entries live at most DefaultStalenessBound. Default 1 minute.
	L1TTL time.Duration
	// SingleInstance declares that this process is the only one using this
	// Redis namespace; L1 is then bounded by L1TTL alone. Without it, a
	// cache with Redis and no invalidation source attached (package
	// invalidation) keeps L1 entries at most DefaultStalenessBound: another
	// process writing through the same namespace could not tell this one,
	// and a longer L1 lifetime would be served stale for that long. Without
	// Redis (a process-local cache) it changes nothing.
	SingleInstance bool
	// L2TTL is the lifetime of a value in Redis. Default 10 minutes.
	L2TTL time.Duration
	// NotFoundTTL is the lifetime of a cached "not found" in both tiers (in
	// L1 it is also capped by L1TTL). Default 30 seconds; negative disables
	// negative caching.
	NotFoundTTL time.Duration
	// TombstoneTTL is the lifetime of the versioned tombstone an
	// invalidation leaves in Redis. It must exceed LoadTimeout, so that a
	// tombstone outlives every load that could carry an older version.
	// Default 10 minutes.
	TombstoneTTL time.Duration
	// TTLJitter shortens each TTL by a random fraction in [0, TTLJitter), so
	// entries filled together do not expire together. Default 0.1; negative
	// means no jitter; must be below 1.
	TTLJitter float64

	// Codec encodes cached values. Default Binary (see codec.go for why).
	// Its Name is part of every entry's schema fingerprint, so changing codec
	// never decodes old bytes with the new codec.
	Codec Codec
	// Clock supplies the time. Default the system clock; tests inject one.
	Clock Clock

	// RedisTimeout bounds every Redis call made on behalf of a read or an
	// invalidation. Default 100 ms.
	RedisTimeout time.Duration
	// RedisRetryAfter is how long Redis is skipped after it failed
	// (consecutive errors or a timeout); reads then go straight to the
	// loader instead of each waiting for RedisTimeout. Default 1 second.
	RedisRetryAfter time.Duration
	// LoadTimeout bounds how long a shared load is trusted: callers arriving
	// after it start a new load instead of joining, and a result that takes
	// longer is returned but not cached (its tombstone window may have
	// passed). The loader itself is not cancelled; a caller may give up at
	// any time through its own context. Default 10 seconds.
	LoadTimeout time.Duration
	// EpochInterval is how often the namespace epoch is re-read from Redis
	// (and a pending epoch bump retried). Default 1 second.
	EpochInterval time.Duration

	// LeaseTTL is how long the lease a load takes with its Redis miss lasts:
	// only that load may fill the key meanwhile (an invalidation voids the
	// lease, and a fill without an intact lease is dropped), and other
	// instances missing the same key wait for its fill instead of querying
	// the database too. Default 2 seconds.
	LeaseTTL time.Duration
	// LeaseWait is how long a load that finds another load's lease waits
	// for that load's fill before reading the database itself (without
	// filling). Default 100 ms; negative means never wait.
	LeaseWait time.Duration
	// WriteTimeout bounds a write's invalidation in Redis, retried within
	// it: longer than RedisTimeout, because a lost invalidation costs more
	// than a slow read. When it passes, Invalidate returns an error wrapping
	// ErrInvalidationUnconfirmed. Default 1 second.
	WriteTimeout time.Duration
	// ServerCheckInterval is how often the identity of the Redis server
	// (run_id and replication id, from INFO) is verified. A new identity (a
	// restart, a failover, a restore from a snapshot) moves the namespace to
	// a new epoch and flushes L1, and Redis is only read within three
	// intervals of the last successful check. Default 50 ms.
	ServerCheckInterval time.Duration

	// Logger receives state changes (never one line per read): server
	// identity changes, epoch bumps, an evicting maxmemory-policy, Redis
	// marked down and back. Default: nothing is logged.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.L1MaxBytes == 0 {
		o.L1MaxBytes = DefaultL1MaxBytes
	}
	if o.L1Shards == 0 {
		o.L1Shards = DefaultL1Shards
	}
	if o.L1MaxEntryBytes == 0 {
		o.L1MaxEntryBytes = DefaultL1MaxEntryBytes
	}
	if o.L1TTL == 0 {
		o.L1TTL = DefaultL1TTL
	}
	if o.L2TTL == 0 {
		o.L2TTL = DefaultL2TTL
	}
	if o.NotFoundTTL == 0 {
		o.NotFoundTTL = DefaultNotFoundTTL
	}
	if o.TombstoneTTL == 0 {
		o.TombstoneTTL = DefaultTombstoneTTL
	}
	if o.TTLJitter == 0 {
		o.TTLJitter = DefaultTTLJitter
	} else if o.TTLJitter < 0 {
		o.TTLJitter = 0
	}
	if o.Codec == nil {
		o.Codec = Binary{}
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	if o.RedisTimeout == 0 {
		o.RedisTimeout = DefaultRedisTimeout
	}
	if o.RedisRetryAfter == 0 {
		o.RedisRetryAfter = DefaultRedisRetryAfter
	}
	if o.LoadTimeout == 0 {
		o.LoadTimeout = DefaultLoadTimeout
	}
	if o.EpochInterval == 0 {
		o.EpochInterval = DefaultEpochInterval
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.LeaseWait == 0 {
		o.LeaseWait = DefaultLeaseWait
	} else if o.LeaseWait < 0 {
		o.LeaseWait = 0
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.ServerCheckInterval == 0 {
		o.ServerCheckInterval = DefaultServerCheck
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func (o Options) validate() error {
	if strings.ContainsAny(o.Namespace, "{} \t\r\n") {
		return invalidOption("Namespace %q contains '{', '}' or whitespace", o.Namespace)
	}
	if len(o.Namespace) > 128 {
		return invalidOption("Namespace is %d bytes, more than 128", len(o.Namespace))
	}
	if o.L1MaxBytes > 0 {
		if o.L1Shards < 1 || o.L1Shards&(o.L1Shards-1) != 0 {
			return invalidOption("L1Shards = %d is not a positive power of two", o.L1Shards)
		}
		if o.L1MaxEntryBytes < 0 {
			return invalidOption("L1MaxEntryBytes = %d is negative", o.L1MaxEntryBytes)
		}
		if shard := l1MiB(o.L1MaxBytes) << 20 / o.L1Shards; o.L1MaxEntryBytes > shard/4 {
			return invalidOption("L1MaxEntryBytes = %d exceeds a quarter of an L1 shard (%d bytes); raise L1MaxBytes or lower L1Shards", o.L1MaxEntryBytes, shard)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"L1TTL", o.L1TTL}, {"L2TTL", o.L2TTL}, {"TombstoneTTL", o.TombstoneTTL},
		{"RedisTimeout", o.RedisTimeout}, {"RedisRetryAfter", o.RedisRetryAfter},
		{"LoadTimeout", o.LoadTimeout}, {"EpochInterval", o.EpochInterval},
		{"LeaseTTL", o.LeaseTTL}, {"WriteTimeout", o.WriteTimeout}, {"ServerCheckInterval", o.ServerCheckInterval},
	} {
		if d.v < 0 {
			return invalidOption("%s = %v is negative", d.name, d.v)
		}
	}
	if o.L2TTL < time.Millisecond || o.TombstoneTTL < time.Millisecond {
		return invalidOption("L2TTL and TombstoneTTL must be at least 1ms (Redis PX resolution)")
	}
	if o.TombstoneTTL <= o.LoadTimeout {
		return invalidOption("TombstoneTTL = %v must exceed LoadTimeout = %v, or a slow load could outlive the tombstone that rejects it", o.TombstoneTTL, o.LoadTimeout)
	}
	if o.LeaseTTL < time.Millisecond {
		return invalidOption("LeaseTTL = %v must be at least 1ms (Redis PX resolution)", o.LeaseTTL)
	}
	if o.WriteTimeout < o.RedisTimeout {
		return invalidOption("WriteTimeout = %v must not be shorter than RedisTimeout = %v", o.WriteTimeout, o.RedisTimeout)
	}
	if o.TTLJitter >= 1 {
		return invalidOption("TTLJitter = %v must be below 1", o.TTLJitter)
	}
	if o.Codec.Name() == "" {
		return invalidOption("Codec.Name() is empty")
	}
	if rt, ignores := ignoresDeadlines(o.Redis); ignores && (rt <= 0 || rt > o.RedisTimeout) {
		return invalidOption("the Redis client ignores context deadlines (ContextTimeoutEnabled is false) and its "+
			"ReadTimeout (%v) exceeds RedisTimeout (%v), so a hung Redis would hold each read that long; "+
			"set ContextTimeoutEnabled: true in the client's options", rt, o.RedisTimeout)
	}
	return nil
}

// ignoresDeadlines reports whether rdb is a go-redis client configured to
// ignore context deadlines on socket I/O, and its read timeout. Clients of
// other types are assumed to honour contexts.
func ignoresDeadlines(rdb redis.UniversalClient) (readTimeout time.Duration, ignores bool) {
	switch c := rdb.(type) {
	case *redis.Client:
		o := c.Options()
		return o.ReadTimeout, !o.ContextTimeoutEnabled
	case *redis.ClusterClient:
		o := c.Options()
		return o.ReadTimeout, !o.ContextTimeoutEnabled
	case *redis.Ring:
		o := c.Options()
		return o.ReadTimeout, !o.ContextTimeoutEnabled
	}
	return 0, false
}

// l1MiB converts the byte budget to bigcache's whole-MiB limit.
func l1MiB(b int) int { return (b + 1<<20 - 1) >> 20 }

// Logger returns the logger of Options.Logger (one that discards everything
// when none was given), for the packages built on the cache: the
// invalidation bus logs to it unless given its own.
func (c *Cache) Logger() *slog.Logger { return c.opts.Logger }
