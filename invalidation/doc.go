// Package invalidation keeps the in-process tiers of every running instance
// of an application coherent, over Redis pub/sub.
//
// After a write commits, the writing instance applies its invalidation to
// Redis and to its own L1 (package cache) and then publishes one versioned
// event per transaction on the namespace's channel. Every other instance
// evicts the keys from its L1 unless it already holds that version or newer,
// and records the eviction so that a fill which began earlier cannot land
// afterwards.
//
// Pub/sub is at-most-once, so the bus bounds what a lost message can cost:
//
//   - On every (re)subscription the instance flushes L1 and re-reads the
//     namespace epoch.
//   - Every PingInterval the instance publishes a heartbeat to its own
//     channel on the same subscription connection. Redis delivers a
//     connection's messages in the order it executed the PUBLISHes, so a
//     heartbeat sent at t proves every event published before t has been
//     received. L1 is served only until HealthWindow after the last
//     heartbeat's send time, checked at read time: if heartbeats stop (a cut
//     or silent connection, Redis not executing writes, this process
//     paused), L1 stops being served — reads go to Redis and the database —
//     and it is flushed before it serves again.
//   - Each origin numbers its events; a gap flushes L1.
//   - Publishes that fail are retried in order; when Redis is unreachable
//     the cache bumps the namespace epoch once it is back, and the bus tells
//     the other instances to re-read it.
//
// Together these give the guarantee the project states: after a write is
// acknowledged, no instance serves an older version for longer than
// HealthWindow plus one network delay, as long as the writer can reach Redis
// (a writer cut off from Redis cannot tell anyone until it reaches it
// again; the epoch bump then retires everything written before).
//
// Deployments: a single Redis node, a failover (Sentinel) client or a Redis
// Cluster client. Every cache script touches one hash slot; on a cluster
// client the bus uses sharded pub/sub (SPUBLISH/SSUBSCRIBE, channels hash-
// tagged to one slot) unless Options.Transport says otherwise, since a
// classic PUBLISH is copied to every node of the cluster.
package invalidation
