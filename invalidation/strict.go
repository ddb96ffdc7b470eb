package invalidation

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Strict writes: Bus.WaitApplied returns once every live instance has
// applied what this instance published before the call, acknowledged over
// Redis, or once HealthWindow has passed, by which time an instance that
// has not applied it has stopped serving L1 (its last heartbeat predates
// the events, and L1 is served only HealthWindow after a heartbeat).
//
// Liveness comes from a presence hash, "<channel>:presence", written in the
// same MULTI as every heartbeat: an instance whose heartbeat vouches for its
// L1 has refreshed its entry at the same moment, so the set of instances
// read from the hash is complete.

// presenceSlack widens the window in which an instance counts as live: the
// entries carry each instance's own clock. Counting a dead instance costs a
// wait until the deadline, never a miss.
const presenceSlack = time.Second

// acks holds the acknowledgements received on this instance's ack channel.
type acks struct {
	mu      sync.Mutex        // guards the fields below
	seen    map[string]uint64 // instance → highest probe it acknowledged
	waiters map[chan struct{}]bool
	pending map[string]uint64 // origin → probe awaiting a gap to close before its ack
}

func newAcks() *acks {
	return &acks{seen: map[string]uint64{}, waiters: map[chan struct{}]bool{}, pending: map[string]uint64{}}
}

func (a *acks) record(inst string, seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if seq > a.seen[inst] {
		a.seen[inst] = seq
	}
	for w := range a.waiters {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// WaitApplied returns when every other live instance has applied every
// event this instance published before the call (they acknowledge a probe
// published after them), or when HealthWindow has passed since the call,
// whichever comes first: either way, no instance serves from L1 an entry
// those events retired. Call it after a write whose invalidation returned
// (its events are then published). It returns ctx's error if ctx ends
// first, and ErrClosed on a closed bus.
func (b *Bus) WaitApplied(ctx context.Context) error {
	if b.closed() {
		return ErrClosed
	}
	start := time.Now()
	deadline := start.Add(b.opts.HealthWindow)
	w := make(chan struct{}, 1)
	b.acks.mu.Lock()
	b.acks.waiters[w] = true
	b.acks.mu.Unlock()
	defer func() {
		b.acks.mu.Lock()
		delete(b.acks.waiters, w)
		b.acks.mu.Unlock()
	}()
	live, err := b.liveInstances(ctx, deadline)
	b.mu.Lock()
	probe, ok := b.encodeLocked(Event{Kind: KindProbe})
	seq := b.seq
	b.mu.Unlock()
	if err == nil && ok {
		b.push(outgoing{payload: probe})
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for err != nil || !b.allAcked(live, seq) {
		select {
		case <-w:
			continue
		case <-t.C:
			b.st.strictTimeouts.Add(1)
			if !b.strictTimingOut.Swap(true) { // once until a wait is acknowledged again
				args := []any{"namespace", b.ns, "instance", b.id, "live", len(live), "health_window", b.opts.HealthWindow}
				if err != nil {
					args = append(args, "err", err)
				}
				b.opts.Logger.Warn("gormcache: strict write waited out HealthWindow: an instance did not acknowledge (it has stopped serving L1)", args...)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-b.stop:
			return ErrClosed
		}
	}
	b.st.strictAcked.Add(1)
	b.st.strictWait.record(time.Since(start))
	if b.strictTimingOut.Load() && b.strictTimingOut.Swap(false) {
		b.opts.Logger.Info("gormcache: strict writes acknowledged again", "namespace", b.ns, "instance", b.id)
	}
	return nil
}

func (b *Bus) allAcked(live []string, seq uint64) bool {
	b.acks.mu.Lock()
	defer b.acks.mu.Unlock()
	for _, id := range live {
		if b.acks.seen[id] < seq {
			return false
		}
	}
	return true
}

// liveInstances lists the other instances whose presence entry is recent.
func (b *Bus) liveInstances(ctx context.Context, deadline time.Time) ([]string, error) {
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	all, err := b.pub.HGetAll(cctx, b.presence).Result()
	if err != nil {
		return nil, fmt.Errorf("gormcache: reading the instances' presence: %w", err)
	}
	horizon := time.Now().Add(-b.opts.HealthWindow - presenceSlack).UnixNano()
	var live []string
	for id, v := range all {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > horizon && id != b.id {
			live = append(live, id)
		}
	}
	return live, nil
}

// probed acknowledges origin's probe seq once every event origin published
// before it has been applied here; until then it is kept and acknowledged
// by ackPending when the gap closes (or is declared lost: L1 is flushed).
func (b *Bus) probed(origin string, seq uint64) {
	if !b.gaps.complete(origin, seq) {
		b.acks.mu.Lock()
		b.acks.pending[origin] = max(b.acks.pending[origin], seq)
		b.acks.mu.Unlock()
		return
	}
	b.ack(origin, seq)
}

// ackPending acknowledges the pending probes whose gaps closed; all of them
// when all is set (after a flush).
func (b *Bus) ackPending(all bool) {
	b.acks.mu.Lock()
	var due map[string]uint64
	for origin, seq := range b.acks.pending {
		if all || b.gaps.complete(origin, seq) {
			if due == nil {
				due = map[string]uint64{}
			}
			due[origin] = seq
			delete(b.acks.pending, origin)
		}
	}
	b.acks.mu.Unlock()
	for origin, seq := range due {
		b.ack(origin, seq)
	}
}

// ack publishes "<this instance> <seq>" on origin's ack channel, off the
// receive loop.
func (b *Bus) ack(origin string, seq uint64) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.HealthWindow)
		defer cancel()
		_ = b.publish(ctx, b.pub, b.ackChannel(origin), b.id+" "+strconv.FormatUint(seq, 10)).Err()
	}()
}

// gotAck records an acknowledgement received on this instance's channel.
func (b *Bus) gotAck(payload string) {
	id, s, ok := strings.Cut(payload, " ")
	if seq, err := strconv.ParseUint(s, 10, 64); ok && err == nil {
		b.acks.record(id, seq)
	}
}
