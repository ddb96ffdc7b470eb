package invalidation

import (
	"sync"
	"time"
)

// maxMissing bounds the sequence numbers awaited per origin; a larger gap
// is treated as lost at once.
const maxMissing = 1024

// gaps tracks, per origin, the sequence numbers not yet received. Events
// from one origin can arrive out of order (its writers publish concurrently,
// each in its own round trip), so a gap is a loss only if it is not filled
// within a grace period.
type gaps struct {
	mu     sync.Mutex // protects the fields below
	last   map[string]uint64
	wanted map[string]map[uint64]time.Time // origin → missing seq → when first missed
}

func newGaps() *gaps {
	return &gaps{last: map[string]uint64{}, wanted: map[string]map[uint64]time.Time{}}
}

// saw records event seq from origin at now. It reports lost when the gap it
// opens is too large to wait for.
func (g *gaps) saw(origin string, seq uint64, now time.Time) (lost bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	last, known := g.last[origin]
	switch {
	case !known || seq == last+1:
		// An origin's first event opens no gap: whatever it published before
		// went out before this instance subscribed (covered by the flush on
		// subscription), or it would have been received.
	case seq > last+1:
		if seq-last-1 > maxMissing {
			delete(g.wanted, origin)
			lost = true
			break
		}
		w := g.wanted[origin]
		if w == nil {
			w = map[uint64]time.Time{}
			g.wanted[origin] = w
		}
		for s := last + 1; s < seq; s++ {
			w[s] = now
		}
	default: // late or duplicate
		delete(g.wanted[origin], seq)
		return false
	}
	if seq > last || !known {
		g.last[origin] = seq
	}
	return lost
}

// expired reports whether some awaited event has been missing for longer
// than grace, and forgets every awaited event if so (the caller flushes).
func (g *gaps) expired(now time.Time, grace time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, w := range g.wanted {
		for _, since := range w {
			if now.Sub(since) > grace {
				clear(g.wanted)
				return true
			}
		}
	}
	return false
}

// reset forgets everything (after a resubscription, which flushes L1).
func (g *gaps) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.last)
	clear(g.wanted)
}

// complete reports whether every event of origin before seq has been
// received (or the origin is unknown: its earlier events predate the
// subscription, whose flush covered them).
func (g *gaps) complete(origin string, seq uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for s := range g.wanted[origin] {
		if s < seq {
			return false
		}
	}
	return true
}
