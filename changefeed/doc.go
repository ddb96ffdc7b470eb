// Package changefeed keeps every cache tier coherent for writes the library
// never sees — other services, psql sessions, migrations, processes that died
// between COMMIT and their invalidation — by following PostgreSQL's logical
// replication stream: a Relay holds a publication of the cached tables and one
// persistent pgoutput slot per database, turns each committed transaction into
// the invalidations a local write of the same rows would have made (row keys at
// the new tuple's version where the model has a repository.Version column,
// stamped otherwise; unique-column mappings; the table's generation key),
// applies them through cache.InvalidateMany, which publishes them on the bus,
// and acknowledges the transaction's LSN only afterwards. Exactly one relay per
// database streams at a time: the others wait on a fenced Redis lease and take
// over when the leader dies. TRUNCATE and schema changes retire the table's
// cache, a lost slot retires every cache and is recreated, and tables the feed
// cannot key are reported rather than skipped.
package changefeed
