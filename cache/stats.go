package cache

import "sync/atomic"

// Stats is a snapshot of a Cache's counters, all since New.
type Stats struct {
	L1Hits   uint64 // reads served from the in-process tier
	L2Hits   uint64 // reads served from Redis
	Misses   uint64 // reads that found nothing usable in either tier
	Loads    uint64 // loader calls (one per flight, one per GetMany batch)
	Coalesce uint64 // reads that joined another caller's load instead of starting one
	// NotFoundHits counts reads answered by a cached not-found entry (they
	// are also counted as L1Hits or L2Hits).
	NotFoundHits uint64
	LoadErrors   uint64 // loader errors and panics (never cached)
	// RejectedFills counts fills refused because an invalidation had
	// happened since the load began (the stale fills the version and
	// generation guards stop).
	RejectedFills     uint64
	TombstonesWritten uint64 // invalidations that wrote an L2 tombstone
	Invalidations     uint64 // keys invalidated through Invalidate
	LocalEvictions    uint64 // keys evicted from L1 by EvictLocal (remote invalidations)
	Flushes           uint64 // L1 flushes
	DecodeErrors      uint64 // corrupt, truncated or foreign bytes found (and deleted)
	SchemaMismatches  uint64 // entries written for another shape of the type (a miss)
	L1Skips           uint64 // values too large for L1, kept in L2 only
	RedisErrors       uint64 // failed Redis calls
	RedisSkips        uint64 // Redis calls skipped because Redis was marked down
	BreakerTrips      uint64 // times Redis was marked down
	PendingEpochBumps uint64 // invalidations that could not reach Redis and forced an epoch bump
	EpochChanges      uint64 // epochs adopted after New
	Epoch             uint64 // the namespace epoch in use
	L1Entries         int    // entries in L1 now
	// L1Bytes is the memory bigcache has allocated for L1's entries now
	// (its queues grow up to L1MaxBytes and are not given back), not the
	// bytes the live entries use.
	L1Bytes int

	// Incarnations counts changes of the Redis server's identity (restart,
	// failover, restore), each a new epoch and an L1 flush.
	Incarnations uint64
	// LeaseWaits counts loads that found another load's lease and waited
	// for its fill; LeaseFallbacks those of them that then read the source
	// themselves (without filling).
	LeaseWaits, LeaseFallbacks uint64
	// OOMDeletes counts invalidations whose tombstone Redis refused (out of
	// memory), which deleted the entry instead.
	OOMDeletes uint64
	// InvalidationRetries counts invalidation attempts retried within
	// WriteTimeout; UnconfirmedInvalidations the invalidations that still
	// failed (the write's caller got ErrInvalidationUnconfirmed).
	InvalidationRetries, UnconfirmedInvalidations uint64
	// Suspects counts keys other instances announced as unconfirmed, not
	// read from Redis until confirmed.
	Suspects uint64
	// MaxmemoryPolicy is the server's maxmemory-policy ("" if unknown: no
	// Redis, or CONFIG refused); anything but noeviction evicts keys.
	MaxmemoryPolicy string
	// ServerIdentity is the Redis server's identity last verified
	// (run_id/replication id), "" if unknown or if INFO is refused.
	ServerIdentity string
}

// counter is an atomic counter on its own cache line.
type counter struct {
	n atomic.Uint64
	_ [56]byte
}

func (c *counter) add(d uint64) { c.n.Add(d) }
func (c *counter) load() uint64 { return c.n.Load() }

type stats struct {
	l1Hits, l2Hits, misses, loads, coalesce, nfHits, loadErrors    counter
	rejected, tombstones, invalidations, localEvictions, flushes   counter
	decodeErrors, schemaMismatch, l1Skips, redisErrors, redisSkips counter
	pendingBumps, epochChanges                                     counter
	incarnations, leaseWaits, leaseFallbacks, oomDeletes           counter
	invRetries, unconfirmed, suspects                              counter
}
