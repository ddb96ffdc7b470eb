// Package prometheus exports gormcache's counters as Prometheus metrics.
//
// A Collector reads the Stats of the caches, buses, plugins and change
// feeds added to it when it is scraped (no goroutine, nothing counted twice),
// and counts repository operations through Options.Observe:
//
//	col := prometheus.NewCollector()
//	col.AddCache("api-1", c)
//	col.AddBus("api-1", bus)
//	users, _ := repository.New[User, uint](db, c, repository.Options{Observe: col.Observe("api-1")})
//	reg.MustRegister(col)
//
// Every metric is named gormcache_*, counters end in _total, durations are
// in seconds, and labels are bounded: namespace (the cache's), instance (the
// name given to Add*), tier (l1, l2, db), and for repositories table, op and
// result (ok, not_found, conflict, error). No label holds an error string.
//
// This package is a module of its own, so that client_golang reaches only
// the builds of programs that import it.
package prometheus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gormcache/gormcache"
	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

// ErrDuplicate is returned by the Add methods for a source whose labels
// another source of the same kind already uses: Prometheus refuses two
// series with the same labels.
var ErrDuplicate = errors.New("gormcache: metrics source already added with these labels")

// FeedStats is what the collector exports of a change-feed relay. Build it
// from the relay's own Stats in the function given to AddFeed.
type FeedStats struct {
	Lag              time.Duration // now minus the commit time of the last applied transaction
	RetainedWALBytes int64         // WAL the replication slot keeps
	Leader           bool          // this relay holds the lease and streams
	AppliedTxns      uint64        // transactions applied
	AppliedRows      uint64        // row changes applied
	Reconnects       uint64        // streaming sessions that ended in an error
	SlotLost         uint64        // slots found lost (every cache retired)
	Retired          uint64        // caches retired (TRUNCATE, schema change...)
}

// Collector is a prometheus.Collector of gormcache metrics. Create it with
// NewCollector; it is safe for concurrent use.
type Collector struct {
	mu      sync.Mutex // protects the slices below
	caches  []source[*cache.Cache]
	buses   []source[*invalidation.Bus]
	plugins []source[*gormcache.Plugin]
	feeds   []source[func() FeedStats]

	repoOps   *prometheus.CounterVec
	repoRows  *prometheus.CounterVec
	repoTimes *prometheus.HistogramVec
}

type source[T any] struct {
	ns, instance string
	v            T
}

// NewCollector returns an empty Collector.
func NewCollector() *Collector {
	return &Collector{
		repoOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gormcache_repository_operations_total",
			Help: "Repository operations by table, operation, tier that served the read (empty for writes) and result.",
		}, []string{"instance", "table", "op", "tier", "result"}),
		repoRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gormcache_repository_rows_read_total",
			Help: "Rows read through repositories, by the tier that served them.",
		}, []string{"instance", "table", "tier"}),
		repoTimes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gormcache_repository_operation_duration_seconds",
			Help:    "Duration of repository operations.",
			Buckets: []float64{0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1},
		}, []string{"instance", "table", "op"}),
	}
}

func add[T any](mu *sync.Mutex, list *[]source[T], ns, instance string, v T) error {
	mu.Lock()
	defer mu.Unlock()
	for _, s := range *list {
		if s.ns == ns && s.instance == instance {
			return fmt.Errorf("%w: namespace %q, instance %q", ErrDuplicate, ns, instance)
		}
	}
	*list = append(*list, source[T]{ns, instance, v})
	return nil
}

// AddCache exports c's Stats, labelled namespace=c.Namespace() and instance.
func (c *Collector) AddCache(instance string, cc *cache.Cache) error {
	return add(&c.mu, &c.caches, cc.Namespace(), instance, cc)
}

// AddBus exports b's Stats, labelled namespace=b.Namespace() and instance.
func (c *Collector) AddBus(instance string, b *invalidation.Bus) error {
	return add(&c.mu, &c.buses, b.Namespace(), instance, b)
}

// AddPlugin exports the GORM plugin's Stats, labelled with its cache's
// namespace and instance.
func (c *Collector) AddPlugin(instance string, p *gormcache.Plugin) error {
	ns := ""
	if p.Cache != nil {
		ns = p.Cache.Namespace()
	}
	return add(&c.mu, &c.plugins, ns, instance, p)
}

// AddFeed exports a change-feed relay's progress, read by stats at scrape
// time (stats must be fast and safe for concurrent use), labelled instance
// and, as namespace, name (the relay's slot, say).
//
//	col.AddFeed("api-1", "orders", func() prometheus.FeedStats {
//		s := relay.Stats()
//		return prometheus.FeedStats{Lag: s.Lag, RetainedWALBytes: s.RetainedWALBytes, Leader: s.IsLeader}
//	})
func (c *Collector) AddFeed(instance, name string, stats func() FeedStats) error {
	return add(&c.mu, &c.feeds, name, instance, stats)
}

// Observe returns a function for repository.Options.Observe that counts
// the repository's operations under instance.
func (c *Collector) Observe(instance string) func(context.Context, repository.Event) {
	return func(_ context.Context, e repository.Event) {
		c.repoOps.WithLabelValues(instance, e.Table, e.Op, string(e.Tier), result(e.Err)).Inc()
		c.repoTimes.WithLabelValues(instance, e.Table, e.Op).Observe(e.Duration.Seconds())
		c.rows(instance, e.Table, repository.TierL1, e.Served.L1)
		c.rows(instance, e.Table, repository.TierL2, e.Served.L2)
		c.rows(instance, e.Table, repository.TierDB, e.Served.Loaded)
	}
}

func (c *Collector) rows(instance, table string, tier repository.Tier, n int) {
	if n > 0 {
		c.repoRows.WithLabelValues(instance, table, string(tier)).Add(float64(n))
	}
}

// result classifies err into a bounded label value.
func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, repository.ErrNotFound):
		return "not_found"
	case errors.Is(err, repository.ErrConflict):
		return "conflict"
	}
	return "error"
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
	c.repoOps.Describe(ch)
	c.repoRows.Describe(ch)
	c.repoTimes.Describe(ch)
}

// Collect implements prometheus.Collector: it reads every source's Stats.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	caches, buses, plugins, feeds := c.caches, c.buses, c.plugins, c.feeds
	c.mu.Unlock()
	for _, s := range caches {
		collectCache(ch, s.ns, s.instance, s.v)
	}
	for _, s := range buses {
		collectBus(ch, s.ns, s.instance, s.v)
	}
	for _, s := range plugins {
		st := s.v.Stats()
		counter(ch, pluginRows, st.RowReads, s.ns, s.instance)
		counter(ch, pluginQueries, st.QueryReads, s.ns, s.instance)
		counter(ch, pluginQueryLoads, st.QueryLoads, s.ns, s.instance)
		counter(ch, pluginPassed, st.Passed, s.ns, s.instance)
	}
	for _, s := range feeds {
		st := s.v()
		gauge(ch, feedLag, st.Lag.Seconds(), s.ns, s.instance)
		gauge(ch, feedWAL, float64(st.RetainedWALBytes), s.ns, s.instance)
		gauge(ch, feedLeader, b2f(st.Leader), s.ns, s.instance)
		counter(ch, feedTxns, st.AppliedTxns, s.ns, s.instance)
		counter(ch, feedRows, st.AppliedRows, s.ns, s.instance)
		counter(ch, feedReconnects, st.Reconnects, s.ns, s.instance)
		counter(ch, feedSlotLost, st.SlotLost, s.ns, s.instance)
		counter(ch, feedRetired, st.Retired, s.ns, s.instance)
	}
	c.repoOps.Collect(ch)
	c.repoRows.Collect(ch)
	c.repoTimes.Collect(ch)
}

func collectCache(ch chan<- prometheus.Metric, ns, inst string, c *cache.Cache) {
	st := c.Stats()
	counter(ch, cacheHits, st.L1Hits, ns, inst, "l1")
	counter(ch, cacheHits, st.L2Hits, ns, inst, "l2")
	for _, m := range []struct {
		d *prometheus.Desc
		v uint64
	}{
		{cacheMisses, st.Misses}, {cacheLoads, st.Loads}, {cacheCoalesced, st.Coalesce},
		{cacheNotFoundHits, st.NotFoundHits}, {cacheLoadErrors, st.LoadErrors},
		{cacheRejected, st.RejectedFills}, {cacheDecodeErrors, st.DecodeErrors},
		{cacheSchemaMismatches, st.SchemaMismatches}, {cacheRedisErrors, st.RedisErrors},
		{cacheRedisSkips, st.RedisSkips}, {cacheBreakerTrips, st.BreakerTrips},
		{cacheEpochChanges, st.EpochChanges}, {cacheIncarnations, st.Incarnations},
		{cachePendingBumps, st.PendingEpochBumps}, {cacheInvalidations, st.Invalidations},
		{cacheTombstones, st.TombstonesWritten}, {cacheLocalEvictions, st.LocalEvictions},
		{cacheFlushes, st.Flushes}, {cacheL1Skips, st.L1Skips},
		{cacheLeaseWaits, st.LeaseWaits}, {cacheLeaseFallbacks, st.LeaseFallbacks},
		{cacheOOMDeletes, st.OOMDeletes}, {cacheInvRetries, st.InvalidationRetries},
		{cacheUnconfirmed, st.UnconfirmedInvalidations}, {cacheSuspects, st.Suspects},
	} {
		counter(ch, m.d, m.v, ns, inst)
	}
	gauge(ch, cacheRedisHealthy, b2f(c.RedisHealthy()), ns, inst)
	gauge(ch, cacheLocalServing, b2f(c.LocalServing()), ns, inst)
	gauge(ch, cacheL1Entries, float64(st.L1Entries), ns, inst)
	gauge(ch, cacheL1Bytes, float64(st.L1Bytes), ns, inst)
	if st.MaxmemoryPolicy != "" {
		gauge(ch, cachePolicy, 1, ns, inst, st.MaxmemoryPolicy)
	}
}

func collectBus(ch chan<- prometheus.Metric, ns, inst string, b *invalidation.Bus) {
	st := b.Stats()
	gauge(ch, busHealthy, b2f(st.Healthy), ns, inst)
	gauge(ch, busQueued, float64(st.Queued), ns, inst)
	for _, m := range []struct {
		d *prometheus.Desc
		v uint64
	}{
		{busSent, st.Sent}, {busPublishErrors, st.PublishErrors}, {busDropped, st.Dropped},
		{busReceived, st.Received}, {busOwn, st.OwnEvents}, {busApplied, st.KeysApplied},
		{busBad, st.BadEvents}, {busGaps, st.Gaps}, {busSubscribes, st.Subscribes},
		{busUnhealthy, st.Unhealthy}, {busRecoveries, st.Recoveries}, {busConnErrors, st.ConnErrors},
		{busEncodeErrors, st.EncodeErrors}, {busUnconfirmed, st.UnconfirmedKeys},
		{busStrictAcked, st.StrictAcked}, {busStrictTimeouts, st.StrictTimeouts},
	} {
		counter(ch, m.d, m.v, ns, inst)
	}
	gauge(ch, busStrictP99, st.StrictWaitP99.Seconds(), ns, inst)
	buckets := make(map[float64]uint64, len(st.LagBuckets))
	for i, le := range invalidation.LagBucketBounds() {
		if i < len(st.LagBuckets) {
			buckets[le] = st.LagBuckets[i]
		}
	}
	ch <- prometheus.MustNewConstHistogram(busLag, st.LagCount, st.LagSum.Seconds(), buckets, ns, inst)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
