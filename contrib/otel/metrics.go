// Package otel exports gormcache's counters as OpenTelemetry metrics.
//
// New registers asynchronous (observable) instruments on the caller's
// metric.Meter with one callback, which reads the Stats of the caches,
// buses, plugins and change feeds added to it when the reader collects;
// repository operations are counted synchronously through
// repository.Options.Observe:
//
//	m, err := otel.New(provider.Meter("gormcache"))
//	m.AddCache("api-1", c)
//	m.AddBus("api-1", bus)
//	users, _ := repository.New[User, uint](db, c, repository.Options{Observe: m.Observe("api-1")})
//
// The instruments are those of the Prometheus collector
// (github.com/gormcache/gormcache/contrib/prometheus) under OpenTelemetry
// names: gormcache.cache.hits{tier} rather than gormcache_cache_hits_total.
// One difference: OpenTelemetry has no asynchronous histogram, and the bus
// keeps cumulative lag buckets that a synchronous histogram cannot be fed
// from after the fact, so the propagation lag is exported as the gauge
// gormcache.bus.propagation_lag with a quantile attribute (0.5, 0.99),
// quantiles since the bus started. Scrape the Prometheus collector where
// the full histogram matters.
//
// This package is a module of its own, so that the OpenTelemetry API
// reaches only the builds of programs that import it.
package otel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/gormcache/gormcache"
	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

// ErrDuplicate is returned by the Add methods for a source whose
// attributes another source of the same kind already uses.
var ErrDuplicate = errors.New("gormcache: metrics source already added with these attributes")

// FeedStats is what is exported of a change-feed relay. Build it from the
// relay's own Stats in the function given to AddFeed.
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

// Metrics holds the instruments registered by New. It is safe for
// concurrent use.
type Metrics struct {
	mu      sync.Mutex // protects the slices below
	caches  []source[*cache.Cache]
	buses   []source[*invalidation.Bus]
	plugins []source[*gormcache.Plugin]
	feeds   []source[func() FeedStats]

	reg     metric.Registration
	counter map[string]metric.Int64ObservableCounter
	gauge   map[string]metric.Float64ObservableGauge

	repoOps   metric.Int64Counter
	repoRows  metric.Int64Counter
	repoTimes metric.Float64Histogram
}

type source[T any] struct {
	attrs metric.MeasurementOption
	key   string
	v     T
}

// instrument describes one observable instrument.
type instrument struct{ name, unit, help string }

var counters = []instrument{
	{"cache.hits", "{read}", "Reads served from a cache tier (tier: l1, l2)."},
	{"cache.misses", "{read}", "Reads that found nothing usable in either tier."},
	{"cache.loads", "{load}", "Loader calls."},
	{"cache.coalesced_loads", "{read}", "Reads that joined another caller's load."},
	{"cache.not_found_hits", "{read}", "Reads answered by a cached not-found entry."},
	{"cache.load_errors", "{error}", "Loader errors and panics."},
	{"cache.rejected_fills", "{fill}", "Fills refused because an invalidation happened while the load ran."},
	{"cache.decode_errors", "{error}", "Corrupt or foreign entries found (and deleted)."},
	{"cache.redis_errors", "{error}", "Failed Redis calls."},
	{"cache.redis_skips", "{call}", "Redis calls skipped because Redis was marked down or unverified."},
	{"cache.breaker_trips", "{trip}", "Times Redis was marked down."},
	{"cache.epoch_changes", "{change}", "Namespace epochs adopted."},
	{"cache.incarnations", "{change}", "Changes of the Redis server's identity."},
	{"cache.invalidations", "{key}", "Keys invalidated by this instance's writes."},
	{"cache.local_evictions", "{key}", "Keys evicted from L1 for other instances' writes."},
	{"cache.l1_flushes", "{flush}", "L1 flushes."},
	{"cache.lease_waits", "{wait}", "Loads that waited for another instance's load of the same key."},
	{"cache.degraded_writes", "{write}", "Writes whose invalidation Redis did not confirm."},
	{"cache.suspect_keys", "{key}", "Keys other instances announced as unconfirmed."},
	{"bus.invalidations_sent", "{event}", "Events published."},
	{"bus.invalidations_received", "{event}", "Valid events received, own included."},
	{"bus.keys_applied", "{key}", "Keys evicted from L1 for other instances' events."},
	{"bus.events_dropped", "{event}", "Events dropped from a full queue."},
	{"bus.publish_errors", "{error}", "Failed PUBLISH attempts."},
	{"bus.gaps", "{gap}", "Events declared lost (each flushed L1)."},
	{"bus.subscribes", "{subscription}", "Subscriptions confirmed (each flushed L1)."},
	{"bus.unhealthy", "{transition}", "Times L1 was turned off for silence or errors."},
	{"bus.strict_waits_acked", "{wait}", "Strict writes every live instance acknowledged."},
	{"bus.strict_waits_timed_out", "{wait}", "Strict writes that waited out HealthWindow."},
	{"plugin.row_reads", "{read}", "Primary-key reads answered through the row cache."},
	{"plugin.query_reads", "{query}", "Queries answered through the query cache."},
	{"plugin.query_loads", "{query}", "Cached queries that ran on the database."},
	{"plugin.passed", "{query}", "Queries that asked for the cache but were not cacheable."},
	{"feed.applied_transactions", "{transaction}", "Transactions the relay applied."},
	{"feed.applied_rows", "{row}", "Row changes the relay applied."},
	{"feed.reconnects", "{session}", "Streaming sessions that ended in an error."},
	{"feed.slot_lost", "{slot}", "Replication slots found lost."},
	{"feed.retired", "{retirement}", "Caches retired by the relay."},
}

var gauges = []instrument{
	{"cache.redis_healthy", "1", "1 while Redis is in use, 0 while reads bypass it."},
	{"cache.l1_serving", "1", "1 while L1 is served, 0 otherwise."},
	{"cache.l1_entries", "{entry}", "Entries in L1."},
	{"cache.l1_bytes", "By", "Memory allocated for L1 entries."},
	{"bus.healthy", "1", "1 while the invalidation subscription is confirmed and answering."},
	{"bus.queue_length", "{event}", "Events waiting to be published."},
	{"bus.propagation_lag", "s", "Quantiles (attribute quantile) of the time from an event's publication to its application here."},
	{"bus.strict_wait", "s", "Quantiles (attribute quantile) of acknowledged strict waits."},
	{"feed.lag", "s", "Now minus the commit time of the last transaction the relay applied."},
	{"feed.retained_wal", "By", "WAL the replication slot retains."},
	{"feed.leader", "1", "1 if this relay holds the lease and streams."},
}

// New creates the instruments on meter and registers their callback.
func New(meter metric.Meter) (*Metrics, error) {
	m := &Metrics{counter: map[string]metric.Int64ObservableCounter{}, gauge: map[string]metric.Float64ObservableGauge{}}
	var obs []metric.Observable
	for _, in := range counters {
		c, err := meter.Int64ObservableCounter("gormcache."+in.name, metric.WithUnit(in.unit), metric.WithDescription(in.help))
		if err != nil {
			return nil, err
		}
		m.counter[in.name] = c
		obs = append(obs, c)
	}
	for _, in := range gauges {
		g, err := meter.Float64ObservableGauge("gormcache."+in.name, metric.WithUnit(in.unit), metric.WithDescription(in.help))
		if err != nil {
			return nil, err
		}
		m.gauge[in.name] = g
		obs = append(obs, g)
	}
	var err error
	if m.repoOps, err = meter.Int64Counter("gormcache.repository.operations", metric.WithUnit("{operation}"),
		metric.WithDescription("Repository operations by table, op, tier that served the read, and result.")); err != nil {
		return nil, err
	}
	if m.repoRows, err = meter.Int64Counter("gormcache.repository.rows_read", metric.WithUnit("{row}"),
		metric.WithDescription("Rows read through repositories, by the tier that served them.")); err != nil {
		return nil, err
	}
	if m.repoTimes, err = meter.Float64Histogram("gormcache.repository.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of repository operations.")); err != nil {
		return nil, err
	}
	if m.reg, err = meter.RegisterCallback(m.observe, obs...); err != nil {
		return nil, err
	}
	return m, nil
}

// Close unregisters the callback: nothing is observed afterwards.
func (m *Metrics) Close() error { return m.reg.Unregister() }

func add[T any](mu *sync.Mutex, list *[]source[T], ns, instance string, v T) error {
	mu.Lock()
	defer mu.Unlock()
	key := ns + "\x00" + instance
	for _, s := range *list {
		if s.key == key {
			return fmt.Errorf("%w: namespace %q, instance %q", ErrDuplicate, ns, instance)
		}
	}
	attrs := metric.WithAttributeSet(attribute.NewSet(attribute.String("namespace", ns), attribute.String("instance", instance)))
	*list = append(*list, source[T]{attrs, key, v})
	return nil
}

// AddCache observes c's Stats, with attributes namespace=c.Namespace() and
// instance.
func (m *Metrics) AddCache(instance string, c *cache.Cache) error {
	return add(&m.mu, &m.caches, c.Namespace(), instance, c)
}

// AddBus observes b's Stats, with attributes namespace=b.Namespace() and
// instance.
func (m *Metrics) AddBus(instance string, b *invalidation.Bus) error {
	return add(&m.mu, &m.buses, b.Namespace(), instance, b)
}

// AddPlugin observes the GORM plugin's Stats, with its cache's namespace
// and instance.
func (m *Metrics) AddPlugin(instance string, p *gormcache.Plugin) error {
	ns := ""
	if p.Cache != nil {
		ns = p.Cache.Namespace()
	}
	return add(&m.mu, &m.plugins, ns, instance, p)
}

// AddFeed observes a change-feed relay through stats (fast, safe for
// concurrent use), with attributes instance and namespace=name.
func (m *Metrics) AddFeed(instance, name string, stats func() FeedStats) error {
	return add(&m.mu, &m.feeds, name, instance, stats)
}

// Observe returns a function for repository.Options.Observe that counts the
// repository's operations under instance.
func (m *Metrics) Observe(instance string) func(context.Context, repository.Event) {
	return func(ctx context.Context, e repository.Event) {
		inst, table := attribute.String("instance", instance), attribute.String("table", e.Table)
		m.repoOps.Add(ctx, 1, metric.WithAttributes(inst, table, attribute.String("op", e.Op),
			attribute.String("tier", string(e.Tier)), attribute.String("result", result(e.Err))))
		m.repoTimes.Record(ctx, e.Duration.Seconds(), metric.WithAttributes(inst, table, attribute.String("op", e.Op)))
		for _, t := range []struct {
			tier repository.Tier
			n    int
		}{{repository.TierL1, e.Served.L1}, {repository.TierL2, e.Served.L2}, {repository.TierDB, e.Served.Loaded}} {
			if t.n > 0 {
				m.repoRows.Add(ctx, int64(t.n), metric.WithAttributes(inst, table, attribute.String("tier", string(t.tier))))
			}
		}
	}
}

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

var (
	tierL1, tierL2 = attribute.String("tier", "l1"), attribute.String("tier", "l2")
	q50, q99       = attribute.Float64("quantile", 0.5), attribute.Float64("quantile", 0.99)
)

func (m *Metrics) observe(_ context.Context, o metric.Observer) error {
	m.mu.Lock()
	caches, buses, plugins, feeds := m.caches, m.buses, m.plugins, m.feeds
	m.mu.Unlock()
	cnt := func(name string, v uint64, opts ...metric.ObserveOption) {
		o.ObserveInt64(m.counter[name], int64(v), opts...)
	}
	g := func(name string, v float64, opts ...metric.ObserveOption) {
		o.ObserveFloat64(m.gauge[name], v, opts...)
	}
	for _, s := range caches {
		st := s.v.Stats()
		cnt("cache.hits", st.L1Hits, s.attrs, metric.WithAttributes(tierL1))
		cnt("cache.hits", st.L2Hits, s.attrs, metric.WithAttributes(tierL2))
		for name, v := range map[string]uint64{
			"cache.misses": st.Misses, "cache.loads": st.Loads, "cache.coalesced_loads": st.Coalesce,
			"cache.not_found_hits": st.NotFoundHits, "cache.load_errors": st.LoadErrors,
			"cache.rejected_fills": st.RejectedFills, "cache.decode_errors": st.DecodeErrors,
			"cache.redis_errors": st.RedisErrors, "cache.redis_skips": st.RedisSkips,
			"cache.breaker_trips": st.BreakerTrips, "cache.epoch_changes": st.EpochChanges,
			"cache.incarnations": st.Incarnations, "cache.invalidations": st.Invalidations,
			"cache.local_evictions": st.LocalEvictions, "cache.l1_flushes": st.Flushes,
			"cache.lease_waits": st.LeaseWaits, "cache.degraded_writes": st.UnconfirmedInvalidations,
			"cache.suspect_keys": st.Suspects,
		} {
			cnt(name, v, s.attrs)
		}
		g("cache.redis_healthy", b2f(s.v.RedisHealthy()), s.attrs)
		g("cache.l1_serving", b2f(s.v.LocalServing()), s.attrs)
		g("cache.l1_entries", float64(st.L1Entries), s.attrs)
		g("cache.l1_bytes", float64(st.L1Bytes), s.attrs)
	}
	for _, s := range buses {
		st := s.v.Stats()
		for name, v := range map[string]uint64{
			"bus.invalidations_sent": st.Sent, "bus.invalidations_received": st.Received,
			"bus.keys_applied": st.KeysApplied, "bus.events_dropped": st.Dropped,
			"bus.publish_errors": st.PublishErrors, "bus.gaps": st.Gaps, "bus.subscribes": st.Subscribes,
			"bus.unhealthy": st.Unhealthy, "bus.strict_waits_acked": st.StrictAcked,
			"bus.strict_waits_timed_out": st.StrictTimeouts,
		} {
			cnt(name, v, s.attrs)
		}
		g("bus.healthy", b2f(st.Healthy), s.attrs)
		g("bus.queue_length", float64(st.Queued), s.attrs)
		g("bus.propagation_lag", st.LagP50.Seconds(), s.attrs, metric.WithAttributes(q50))
		g("bus.propagation_lag", st.LagP99.Seconds(), s.attrs, metric.WithAttributes(q99))
		g("bus.strict_wait", st.StrictWaitP50.Seconds(), s.attrs, metric.WithAttributes(q50))
		g("bus.strict_wait", st.StrictWaitP99.Seconds(), s.attrs, metric.WithAttributes(q99))
	}
	for _, s := range plugins {
		st := s.v.Stats()
		cnt("plugin.row_reads", st.RowReads, s.attrs)
		cnt("plugin.query_reads", st.QueryReads, s.attrs)
		cnt("plugin.query_loads", st.QueryLoads, s.attrs)
		cnt("plugin.passed", st.Passed, s.attrs)
	}
	for _, s := range feeds {
		st := s.v()
		cnt("feed.applied_transactions", st.AppliedTxns, s.attrs)
		cnt("feed.applied_rows", st.AppliedRows, s.attrs)
		cnt("feed.reconnects", st.Reconnects, s.attrs)
		cnt("feed.slot_lost", st.SlotLost, s.attrs)
		cnt("feed.retired", st.Retired, s.attrs)
		g("feed.lag", st.Lag.Seconds(), s.attrs)
		g("feed.retained_wal", float64(st.RetainedWALBytes), s.attrs)
		g("feed.leader", b2f(st.Leader), s.attrs)
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
