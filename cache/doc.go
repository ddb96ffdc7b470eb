// Package cache is a two-tier, versioned read-through cache: a sharded
// in-process tier (L1, over github.com/allegro/bigcache/v3) in front of a
// shared Redis tier (L2, over github.com/redis/go-redis/v9) in front of a
// loader that reads the source of truth.
//
// A read goes L1 → singleflight { L1 again → L2 → loader → fill L2 → fill
// L1 }, so a storm of misses on one key costs one load per process.
//
// Every entry carries the version its source held it at. A Redis miss takes
// the key's lease in the same round trip; a write, after it commits, calls
// Invalidate with the new version, which voids the lease and leaves a
// versioned tombstone; a fill is accepted only while its lease is intact and
// if its version is not older than what Redis holds (a Lua script), so a
// reader that loaded the old row before the write can never store it after,
// even if Redis lost the tombstone. The lease also makes a miss storm across
// instances one load: the others wait briefly for its fill.
//
// Redis may lose what it acknowledged (a restart from an older snapshot, a
// failover, eviction, running out of memory): the server's identity is
// checked every ServerCheckInterval and a new one moves the namespace to a
// new epoch (entries of older epochs are misses) and flushes L1; tombstones
// Redis refuses become deletions; an invalidation Redis does not confirm in
// WriteTimeout is reported to the caller and covered by an epoch bump. In L1 the same ordering is kept with
// per-key generations: a fill that began before an invalidation is dropped.
// Invalidate also forgets the key's singleflight, so no caller that arrives
// after the write joins a load that began before it.
//
// Entries carry their expiry (bigcache itself returns expired entries until
// its clean window), and L1 never keeps an entry longer than the L2 entry it
// came from. Entries also carry a fingerprint of the value's type and codec,
// so a deploy that changes a cached struct misses instead of decoding old
// bytes into the new shape. Corrupt or foreign bytes are counted, deleted and
// treated as a miss.
//
// Redis is optional at every moment: when it is slow or down, reads fall
// through to the loader after at most RedisTimeout (and immediately while it
// stays down), and invalidations that could not reach it retire every L2
// entry by bumping the namespace epoch once Redis is back.
//
// Cross-instance coherence (pub/sub) lives in package invalidation, which
// attaches through SetPublisher, EvictLocal, FlushLocal and SetLocalServing.
package cache
