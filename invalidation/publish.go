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

// PreparePublish implements cache.PipelinePublisher: the cache sends the
// event in the same round trip as the tombstones, right after them, and
// reports whether it went out; the bus queues it for retry if not.
func (b *Bus) PreparePublish(invs []cache.Invalidation) (string, []byte, func(sent, confirmed bool)) {
	if len(invs) > MaxKeys {
		return "", nil, nil // too big for one event: use Publish
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
	return b.channel, payload, func(sent, confirmed bool) {
		switch {
		case sent:
			b.st.sent.Add(1)
		case confirmed:
			b.st.publishErrors.Add(1)
			b.push(payload)
		default:
			// The tombstones are not confirmed: announcing the keys as
			// invalidated would confirm them. The cache announces them as
			// unconfirmed instead (PublishUnconfirmed).
			b.st.publishErrors.Add(1)
		}
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
		b.push(payload)
	}
}

// push queues an encoded event for the sender goroutine.
func (b *Bus) push(payload []byte) {
	b.mu.Lock()
	if len(b.queue) >= b.opts.QueueLen {
		b.queue = b.queue[1:] // subscribers will see the gap and flush
		b.st.dropped.Add(1)
	}
	b.queue = append(b.queue, payload)
	b.mu.Unlock()
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
		var head []byte
		if len(b.queue) > 0 {
			head = b.queue[0]
		}
		b.mu.Unlock()
		if head == nil {
			select {
			case <-b.stop:
				return
			case <-b.queued:
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := b.pub.Publish(ctx, b.channel, head).Err()
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
		if len(b.queue) > 0 && &b.queue[0][0] == &head[0] {
			b.queue = b.queue[1:]
		}
		b.mu.Unlock()
	}
}
