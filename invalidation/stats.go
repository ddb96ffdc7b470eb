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
}

// Stats returns a snapshot of the counters.
func (b *Bus) Stats() Stats {
	b.mu.Lock()
	queued := len(b.queue)
	b.mu.Unlock()
	return Stats{
		Sent: b.st.sent.Load(), PublishErrors: b.st.publishErrors.Load(), Dropped: b.st.dropped.Load(), Queued: queued,
		Received: b.st.received.Load(), OwnEvents: b.st.ownEvents.Load(), KeysApplied: b.st.keysApplied.Load(),
		BadEvents: b.st.badEvents.Load(), Gaps: b.st.gaps.Load(), Subscribes: b.st.subscribes.Load(),
		Unhealthy: b.st.unhealthy.Load(), Recoveries: b.st.recoveries.Load(), ConnErrors: b.st.connErrors.Load(),
		EncodeErrors: b.st.encodeErrors.Load(), UnconfirmedKeys: b.st.unconfirmed.Load(),
		LagP50: b.st.lag.quantile(0.50), LagP99: b.st.lag.quantile(0.99), Healthy: b.Healthy(),
		StrictAcked: b.st.strictAcked.Load(), StrictTimeouts: b.st.strictTimeouts.Load(),
		StrictWaitP50: b.st.strictWait.quantile(0.50), StrictWaitP99: b.st.strictWait.quantile(0.99),
	}
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
