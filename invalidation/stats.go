package invalidation

import (
	"math"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a Bus's counters, all since New.
type Stats struct {
	Sent          uint64 // events published
	PublishErrors uint64 // failed PUBLISH attempts (each retried)
	Dropped       uint64 // events dropped from a full queue
	Queued        int    // events waiting to be published now
	Received      uint64 // valid events received (own included)
	OwnEvents     uint64 // own events skipped (already applied locally)
	KeysApplied   uint64 // keys evicted on behalf of other instances
	BadEvents     uint64 // payloads that were not valid events for this namespace
	Gaps          uint64 // events lost: sequence gaps not filled within HealthWindow/2 (each flushed L1)
	Subscribes    uint64 // (re)subscriptions confirmed (each flushed L1)
	Unhealthy     uint64 // times L1 was turned off for silence or errors
	Recoveries    uint64 // times L1 was flushed and turned back on
	ConnErrors    uint64 // subscription connection errors
	EncodeErrors  uint64 // invalidations that could not be encoded
	// UnconfirmedKeys counts keys other instances announced as written but
	// not confirmed in Redis (not read from Redis here until confirmed).
	UnconfirmedKeys uint64
	// LagP50 and LagP99 summarise the time from publication (origin clock)
	// to application here, over events from other instances.
	LagP50, LagP99 time.Duration
	// LagBuckets is the same lag as a cumulative histogram:
	// LagBuckets[i] counts the events applied within LagBucketBounds()[i]
	// seconds (a lag below zero, from clock skew, counts as zero). LagCount
	// counts them all (the +Inf bucket), LagSum is their total lag.
	LagBuckets []uint64
	LagCount   uint64
	LagSum     time.Duration
	// StrictAcked counts WaitApplied calls every live instance
	// acknowledged; StrictTimeouts those that waited out HealthWindow
	// (an instance did not answer: it had stopped serving L1 by then).
	// StrictWaitP50 and StrictWaitP99 summarise how long acknowledged
	// waits took.
	StrictAcked, StrictTimeouts  uint64
	StrictWaitP50, StrictWaitP99 time.Duration
	Healthy                      bool
}

type stats struct {
	sent, publishErrors, dropped, received, ownEvents, keysApplied atomic.Uint64
	badEvents, gaps, subscribes, unhealthy, recoveries             atomic.Uint64
	connErrors, encodeErrors, unconfirmed                          atomic.Uint64
	strictAcked, strictTimeouts                                    atomic.Uint64
	lag, strictWait                                                histogram
	lagHist                                                        bucketed
}

// Stats returns a snapshot of the counters.
func (b *Bus) Stats() Stats {
	b.mu.Lock()
	queued := len(b.queue)
	b.mu.Unlock()
	s := Stats{
		Sent: b.st.sent.Load(), PublishErrors: b.st.publishErrors.Load(), Dropped: b.st.dropped.Load(), Queued: queued,
		Received: b.st.received.Load(), OwnEvents: b.st.ownEvents.Load(), KeysApplied: b.st.keysApplied.Load(),
		BadEvents: b.st.badEvents.Load(), Gaps: b.st.gaps.Load(), Subscribes: b.st.subscribes.Load(),
		Unhealthy: b.st.unhealthy.Load(), Recoveries: b.st.recoveries.Load(), ConnErrors: b.st.connErrors.Load(),
		EncodeErrors: b.st.encodeErrors.Load(), UnconfirmedKeys: b.st.unconfirmed.Load(),
		LagP50: b.st.lag.quantile(0.50), LagP99: b.st.lag.quantile(0.99), Healthy: b.Healthy(),
		StrictAcked: b.st.strictAcked.Load(), StrictTimeouts: b.st.strictTimeouts.Load(),
		StrictWaitP50: b.st.strictWait.quantile(0.50), StrictWaitP99: b.st.strictWait.quantile(0.99),
	}
	s.LagBuckets, s.LagCount, s.LagSum = b.st.lagHist.snapshot()
	return s
}

// lagBounds are the upper bounds of the propagation-lag buckets, in seconds:
// 100µs to 10s, about three per power of ten.
var lagBounds = [...]float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// LagBucketBounds returns the upper bounds, in seconds, of Stats.LagBuckets
// (a new slice on each call): 100µs to 10s. They never change at run time,
// so a metrics exporter may describe its histogram with them once.
func LagBucketBounds() []float64 { return append([]float64(nil), lagBounds[:]...) }

// bucketed is a fixed-bounds histogram of durations (lagBounds), counted
// per bucket, with the count beyond the last bound and the sum.
type bucketed struct {
	counts [len(lagBounds) + 1]atomic.Uint64
	sum    atomic.Int64 // nanoseconds
}

func (h *bucketed) record(d time.Duration) {
	d = max(d, 0)
	s := d.Seconds()
	i := 0
	for i < len(lagBounds) && s > lagBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// snapshot returns the cumulative bucket counts, the total count and the sum.
func (h *bucketed) snapshot() (cumulative []uint64, count uint64, sum time.Duration) {
	cumulative = make([]uint64, len(lagBounds))
	for i := range h.counts {
		count += h.counts[i].Load()
		if i < len(lagBounds) {
			cumulative[i] = count
		}
	}
	return cumulative, count, time.Duration(h.sum.Load())
}

// histogram counts durations in buckets four per power of two, from 1µs to
// about 70 minutes; quantiles are accurate to about 19 %.
type histogram struct {
	buckets [128]atomic.Uint64
}

func bucketOf(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	i := int(math.Log2(us)*4) + 1
	return min(i, 127)
}

func (h *histogram) record(d time.Duration) { h.buckets[bucketOf(d)].Add(1) }

// quantile returns the upper bound of the bucket holding quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	var total uint64
	var counts [128]uint64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, n := range counts {
		seen += n
		if seen >= rank {
			return time.Duration(math.Exp2(float64(i)/4) * float64(time.Microsecond))
		}
	}
	return 0
}

// Namespace returns the namespace of the cache the bus keeps coherent (for
// labelling its metrics).
func (b *Bus) Namespace() string { return b.ns }
