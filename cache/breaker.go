package cache

import (
	"sync/atomic"
	"time"
)

// breakerThreshold is how many consecutive Redis failures open the breaker.
// A timeout counts as a failure, so at most this many calls wait the full
// RedisTimeout before the rest fail fast.
const breakerThreshold = 3

// breaker makes calls to an unavailable Redis fail fast: after
// breakerThreshold consecutive failures it opens for the retry period, then
// lets a single probe through; the probe's success closes it.
type breaker struct {
	clock    Clock
	retry    time.Duration
	failures atomic.Int32
	open     atomic.Int64 // unix nanoseconds until which calls are refused; 0 = closed
	probing  atomic.Bool  // a half-open probe is in flight
	trips    atomic.Uint64
	onChange func(down bool) // told of every trip and recovery; may be nil
}

// allow reports whether a call may go to Redis.
func (b *breaker) allow() bool {
	until := b.open.Load()
	if until == 0 {
		return true
	}
	if b.clock.Now().UnixNano() < until {
		return false
	}
	return b.probing.CompareAndSwap(false, true)
}

// healthy reports whether the breaker is closed.
func (b *breaker) healthy() bool { return b.open.Load() == 0 }

func (b *breaker) success() {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	if b.open.Load() != 0 {
		if b.open.Swap(0) != 0 && b.onChange != nil {
			b.onChange(false)
		}
		b.probing.Store(false)
	}
}

func (b *breaker) failure() {
	n := b.failures.Add(1)
	if n >= breakerThreshold || b.probing.Load() {
		if b.open.Swap(b.clock.Now().Add(b.retry).UnixNano()) == 0 {
			b.trips.Add(1)
			if b.onChange != nil {
				b.onChange(true)
			}
		}
		b.probing.Store(false)
	}
}
