package gormcache

import "sync/atomic"

// Stats counts what the plugin's read path did with the queries that asked
// for the cache (the Cached clause or Plugin.CachedModels).
type Stats struct {
	RowReads   uint64 // primary-key reads answered through the row cache
	QueryReads uint64 // queries answered through the query cache
	QueryLoads uint64 // of which ran their query on the database (a miss of the list)
	Passed     uint64 // asked for the cache but sent to the database (not cacheable: a join, a transaction...)
}

// stats holds the counters behind Stats.
type stats struct {
	rows, queries, queryLoads, passed atomic.Uint64
}

// Stats returns the plugin's counters.
func (p *Plugin) Stats() Stats {
	return Stats{RowReads: p.st.rows.Load(), QueryReads: p.st.queries.Load(), QueryLoads: p.st.queryLoads.Load(), Passed: p.st.passed.Load()}
}
