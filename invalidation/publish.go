package invalidation

import (
	"context"
	"errors"
	"time"

	"github.com/gormcache/gormcache/cache"
)

// Publish implements cache.Publisher: it queues one event for the
// invalidations of one committed write (or transaction) and returns. A
// single goroutine publishes queued events in order, retrying each until it
// is delivered to Redis.
func (b *Bus) Publish(_ context.Context, invs []cache.Invalidation) {
	for len(invs) > 0 {
		n := min(len(invs), MaxKeys)
		b.enqueue(Event{Kind: KindInvalidate, Keys: invs[:n]})
		invs = invs[n:]
	}
}

// PublishDelivered implements cache.DeliveryPublisher: Publish, with a
// channel that receives true once the events reached Redis, or false if they
// were dropped (a full queue, Close).
func (b *Bus) PublishDelivered(_ context.Context, invs []cache.Invalidation) <-chan bool {
	done := make(chan bool, 1)
	if len(invs) == 0 {
		done <- true
		return done
	}
	for len(invs) > 0 {
		n := min(len(invs), MaxKeys)
		b.mu.Lock()
		payload, ok := b.encodeLocked(Event{Kind: KindInvalidate, Keys: invs[:n]})
		b.mu.Unlock()
		invs = invs[n:]
		if !ok {
			done <- false
			return done
		}
		o := outgoing{payload: payload}
		if len(invs) == 0 {
			o.done = done // the last one: the sender delivers in order
		}
		b.push(o)
	}
	return done
}

// PublishUnconfirmed implements cache.UnconfirmedPublisher: other
// instances stop reading invs' keys from Redis until this instance confirms
// them (a later Publish of the keys) or the epoch moves.
func (b *Bus) PublishUnconfirmed(_ context.Context, invs []cache.Invalidation) {
	for len(invs) > 0 {
		n := min(len(invs), MaxKeys)
		b.enqueue(Event{Kind: KindUnconfirmed, Keys: invs[:n]})
		invs = invs[n:]
	}
}

// PublishEpoch implements cache.EpochPublisher: other instances re-read the
// epoch as soon as they receive it.
func (b *Bus) PublishEpoch(_ context.Context, epoch uint64) {
	b.enqueue(Event{Kind: KindEpoch, Epoch: epoch})
}

var _ cache.EpochDeliveryPublisher = (*Bus)(nil)

// PublishEpochDelivered implements cache.EpochDeliveryPublisher:
// PublishEpoch, with a channel that receives true once the event reached
// Redis, or false if it was dropped (a full queue, Close).
func (b *Bus) PublishEpochDelivered(_ context.Context, epoch uint64) <-chan bool {
	done := make(chan bool, 1)
	b.mu.Lock()
	payload, ok := b.encodeLocked(Event{Kind: KindEpoch, Epoch: epoch})
	b.mu.Unlock()
	if !ok {
		done <- false
		return done
	}
	b.push(outgoing{payload: payload, done: done})
	return done
}

// PreparePublish implements cache.PipelinePublisher: the cache sends the
// event in the same round trip as the tombstones, right after them, and
// reports whether it went out; the bus queues it for retry if not.
func (b *Bus) PreparePublish(invs []cache.Invalidation) (string, []byte, func(sent, confirmed bool) <-chan bool) {
	if len(invs) > MaxKeys || b.sharded {
		return "", nil, nil // too big for one event, or not a PUBLISH: use Publish
	}
	// The event always travels with its tombstones, even while earlier
	// events wait in the queue for a retry: it must fail only when they do
	// (the cache then treats the write as degraded). Subscribers wait a
	// moment for events that arrive out of order before counting a loss.
	b.mu.Lock()
	payload, ok := b.encodeLocked(Event{Kind: KindInvalidate, Keys: invs})
	b.mu.Unlock()
	if !ok {
		return "", nil, nil
	}
	return b.channel, payload, func(sent, confirmed bool) <-chan bool {
		switch {
		case sent:
			b.st.sent.Add(1)
		case confirmed:
			b.st.publishErrors.Add(1)
			done := make(chan bool, 1)
			b.push(outgoing{payload: payload, done: done})
			return done
		default:
			// The tombstones are not confirmed: announcing the keys as
			// invalidated would confirm them. The cache announces them as
			// unconfirmed instead (PublishUnconfirmed).
			b.st.publishErrors.Add(1)
		}
		return nil
	}
}

// encodeLocked assigns e the next sequence number and encodes it. b.mu
// must be held.
func (b *Bus) encodeLocked(e Event) ([]byte, bool) {
	b.seq++
	e.Namespace, e.Origin, e.Seq, e.SentAt = b.ns, b.id, b.seq, time.Now().UnixNano()
	payload, err := Encode(nil, e)
	if err != nil { // a key the cache accepted is always encodable; count, never panic
		b.st.encodeErrors.Add(1)
		return nil, false
	}
	return payload, true
}

func (b *Bus) enqueue(e Event) {
	b.mu.Lock()
	payload, ok := b.encodeLocked(e)
	b.mu.Unlock()
	if ok {
		b.push(outgoing{payload: payload})
	}
}

// outgoing is a queued event: its encoding, and where to report whether it
// was delivered (nil: nobody waits).
type outgoing struct {
	payload []byte
	done    chan bool // buffered (1); receives one report
}

func (o outgoing) report(delivered bool) {
	if o.done != nil {
		o.done <- delivered
	}
}

// push queues an encoded event for the sender goroutine.
func (b *Bus) push(o outgoing) {
	b.mu.Lock()
	first := false
	if len(b.queue) >= b.opts.QueueLen {
		b.queue[0].report(false)
		b.queue = b.queue[1:] // subscribers will see the gap and flush
		b.st.dropped.Add(1)
		first, b.dropping = !b.dropping, true
	}
	b.queue = append(b.queue, o)
	b.mu.Unlock()
	if first { // once until the queue drains, not once per event
		b.opts.Logger.Warn("gormcache: invalidation queue full; dropping the oldest events (other instances will flush L1)",
			"namespace", b.ns, "instance", b.id, "queue_len", b.opts.QueueLen)
	}
	select {
	case b.queued <- struct{}{}:
	default:
	}
}

// maxPublishBackoff caps the wait between publish retries: an event stuck
// behind a failed publish delays the events queued after it, and every
// other instance's view of them.
const maxPublishBackoff = 50 * time.Millisecond

// maxPublishTimeout caps the attempt timeout, which doubles from
// PublishTimeout while attempts time out, so that a Redis slower than
// PublishTimeout still gets the events, late rather than never.
const maxPublishTimeout = 2 * time.Second

// send publishes queued events in order until Close.
func (b *Bus) send() {
	defer b.wg.Done()
	backoff := 10 * time.Millisecond
	timeout := b.opts.PublishTimeout // grows while attempts time out: Redis may be slow, not gone
	for {
		b.mu.Lock()
		var head outgoing
		if len(b.queue) > 0 {
			head = b.queue[0]
		}
		b.mu.Unlock()
		if head.payload == nil {
			select {
			case <-b.stop:
				return
			case <-b.queued:
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := b.publish(ctx, b.pub, b.channel, head.payload).Err()
		cancel()
		if err != nil {
			b.st.publishErrors.Add(1)
			if errors.Is(err, context.DeadlineExceeded) {
				timeout = min(2*timeout, maxPublishTimeout)
			}
			if !b.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, maxPublishBackoff)
			continue
		}
		backoff, timeout = 10*time.Millisecond, b.opts.PublishTimeout
		b.st.sent.Add(1)
		b.mu.Lock()
		if len(b.queue) > 0 && &b.queue[0].payload[0] == &head.payload[0] {
			b.queue = b.queue[1:]
			head.report(true)
		}
		drained := b.dropping && len(b.queue) == 0
		if drained {
			b.dropping = false
		}
		b.mu.Unlock()
		if drained {
			b.opts.Logger.Info("gormcache: invalidation queue drained", "namespace", b.ns, "instance", b.id, "dropped", b.st.dropped.Load())
		}
	}
}
