package prometheus

import "github.com/prometheus/client_golang/prometheus"

var allDescs []*prometheus.Desc

func desc(name, help string, extra ...string) *prometheus.Desc {
	d := prometheus.NewDesc("gormcache_"+name, help, append([]string{"namespace", "instance"}, extra...), nil)
	allDescs = append(allDescs, d)
	return d
}

// Cache metrics (cache.Stats).
var (
	cacheHits             = desc("cache_hits_total", "Reads served from a cache tier (l1: in-process, l2: Redis).", "tier")
	cacheMisses           = desc("cache_misses_total", "Reads that found nothing usable in either tier (served by the database).")
	cacheLoads            = desc("cache_loads_total", "Loader calls (one per flight, one per GetMany batch).")
	cacheCoalesced        = desc("cache_coalesced_loads_total", "Reads that joined another caller's load instead of starting one.")
	cacheNotFoundHits     = desc("cache_not_found_hits_total", "Reads answered by a cached not-found entry (also counted as hits).")
	cacheLoadErrors       = desc("cache_load_errors_total", "Loader errors and panics.")
	cacheRejected         = desc("cache_rejected_fills_total", "Fills refused because an invalidation happened while the load ran.")
	cacheDecodeErrors     = desc("cache_decode_errors_total", "Corrupt, truncated or foreign entries found (and deleted).")
	cacheSchemaMismatches = desc("cache_schema_mismatches_total", "Entries written for another shape of the type (a miss).")
	cacheRedisErrors      = desc("cache_redis_errors_total", "Failed Redis calls.")
	cacheRedisSkips       = desc("cache_redis_skips_total", "Redis calls skipped because Redis was marked down or unverified.")
	cacheBreakerTrips     = desc("cache_breaker_trips_total", "Times Redis was marked down.")
	cacheEpochChanges     = desc("cache_epoch_changes_total", "Namespace epochs adopted (each retires every entry).")
	cacheIncarnations     = desc("cache_incarnations_total", "Changes of the Redis server's identity (restart, failover, restore).")
	cachePendingBumps     = desc("cache_pending_epoch_bumps_total", "Invalidations that could not reach Redis and forced an epoch bump.")
	cacheInvalidations    = desc("cache_invalidations_total", "Keys invalidated by this instance's writes.")
	cacheTombstones       = desc("cache_tombstones_written_total", "Invalidations that wrote a Redis tombstone.")
	cacheLocalEvictions   = desc("cache_local_evictions_total", "Keys evicted from L1 for other instances' writes.")
	cacheFlushes          = desc("cache_l1_flushes_total", "L1 flushes.")
	cacheL1Skips          = desc("cache_l1_skips_total", "Values too large for L1, kept in Redis only.")
	cacheLeaseWaits       = desc("cache_lease_waits_total", "Loads that waited for another instance's load of the same key.")
	cacheLeaseFallbacks   = desc("cache_lease_fallbacks_total", "Lease waits that ended reading the database anyway.")
	cacheOOMDeletes       = desc("cache_oom_deletes_total", "Invalidations whose tombstone Redis refused (out of memory), deleted instead.")
	cacheInvRetries       = desc("cache_invalidation_retries_total", "Invalidation attempts retried within WriteTimeout.")
	cacheUnconfirmed      = desc("cache_degraded_writes_total", "Writes whose invalidation Redis did not confirm (ErrInvalidationUnconfirmed).")
	cacheSuspects         = desc("cache_suspect_keys_total", "Keys other instances announced as unconfirmed (read from the database until confirmed).")
	cacheRedisHealthy     = desc("cache_redis_healthy", "1 while Redis is in use (breaker closed, server verified), 0 while reads bypass it.")
	cacheLocalServing     = desc("cache_l1_serving", "1 while L1 is served (the bus vouches for it), 0 otherwise.")
	cacheL1Entries        = desc("cache_l1_entries", "Entries in L1.")
	cacheL1Bytes          = desc("cache_l1_bytes", "Memory allocated for L1 entries.")
	cachePolicy           = desc("redis_maxmemory_policy_info", "The Redis server's maxmemory-policy (anything but noeviction evicts keys).", "policy")
)

// Bus metrics (invalidation.Stats).
var (
	busHealthy        = desc("bus_healthy", "1 while the invalidation subscription is confirmed and answering (L1 served), 0 otherwise.")
	busQueued         = desc("bus_queue_length", "Events waiting to be published.")
	busSent           = desc("bus_invalidations_sent_total", "Events published.")
	busPublishErrors  = desc("bus_publish_errors_total", "Failed PUBLISH attempts (each retried).")
	busDropped        = desc("bus_events_dropped_total", "Events dropped from a full queue (other instances flush L1).")
	busReceived       = desc("bus_invalidations_received_total", "Valid events received, own included.")
	busOwn            = desc("bus_own_events_total", "Own events received back (already applied).")
	busApplied        = desc("bus_keys_applied_total", "Keys evicted from L1 for other instances' events.")
	busBad            = desc("bus_bad_events_total", "Payloads that were not valid events for this namespace.")
	busGaps           = desc("bus_gaps_total", "Events declared lost (each flushed L1).")
	busSubscribes     = desc("bus_subscribes_total", "Subscriptions confirmed (each flushed L1).")
	busUnhealthy      = desc("bus_unhealthy_total", "Times L1 was turned off for silence or errors.")
	busRecoveries     = desc("bus_recoveries_total", "Times L1 was flushed and turned back on.")
	busConnErrors     = desc("bus_connection_errors_total", "Subscription connection errors.")
	busEncodeErrors   = desc("bus_encode_errors_total", "Invalidations that could not be encoded.")
	busUnconfirmed    = desc("bus_unconfirmed_keys_total", "Keys announced by other instances as written but not confirmed in Redis.")
	busStrictAcked    = desc("bus_strict_waits_acked_total", "Strict writes every live instance acknowledged.")
	busStrictTimeouts = desc("bus_strict_waits_timed_out_total", "Strict writes that waited out HealthWindow.")
	busStrictP99      = desc("bus_strict_wait_p99_seconds", "99th percentile of acknowledged strict waits, since start.")
	busLag            = desc("bus_propagation_lag_seconds", "Time from an event's publication (origin clock) to its application here.")
)

// Plugin metrics (gormcache.Stats).
var (
	pluginRows       = desc("plugin_row_reads_total", "Primary-key reads answered through the row cache.")
	pluginQueries    = desc("plugin_query_reads_total", "Queries answered through the query cache.")
	pluginQueryLoads = desc("plugin_query_loads_total", "Cached queries that ran on the database (a list miss).")
	pluginPassed     = desc("plugin_passed_total", "Queries that asked for the cache but were not cacheable (sent to the database).")
)

// Change-feed metrics (FeedStats).
var (
	feedLag        = desc("feed_lag_seconds", "Now minus the commit time of the last transaction the relay applied.")
	feedWAL        = desc("feed_retained_wal_bytes", "WAL the replication slot retains.")
	feedLeader     = desc("feed_leader", "1 if this relay holds the lease and streams.")
	feedTxns       = desc("feed_applied_transactions_total", "Transactions whose invalidations the relay applied.")
	feedRows       = desc("feed_applied_rows_total", "Row changes the relay applied.")
	feedReconnects = desc("feed_reconnects_total", "Streaming sessions that ended in an error.")
	feedSlotLost   = desc("feed_slot_lost_total", "Replication slots found lost (every cache retired).")
	feedRetired    = desc("feed_retired_total", "Caches retired by the relay (TRUNCATE, schema change, unkeyable change).")
)
