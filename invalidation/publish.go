package invalidation

import (
	"context"
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

// PublishEpoch implements cache.EpochPublisher: other instances re-read the
// epoch as soon as they receive it.
func (b *Bus) PublishEpoch(_ context.Context, epoch uint64) {
	b.enqueue(Event{Kind: KindEpoch, Epoch: epoch})
}

func (b *Bus) enqueue(e Event) {
	b.mu.Lock()
	b.seq++
	e.Namespace, e.Origin, e.Seq, e.SentAt = b.ns, b.id, b.seq, time.Now().UnixNano()
	payload, err := Encode(nil, e)
	if err != nil { // a key the cache accepted is always encodable; count, never panic
		b.mu.Unlock()
		b.st.encodeErrors.Add(1)
		return
	}
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

// send publishes queued events in order until Close.
func (b *Bus) send() {
	defer b.wg.Done()
	backoff := 10 * time.Millisecond
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
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.PublishTimeout)
		err := b.rdb.Publish(ctx, b.channel, head).Err()
		cancel()
		if err != nil {
			b.st.publishErrors.Add(1)
			if !b.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		b.st.sent.Add(1)
		b.mu.Lock()
		if len(b.queue) > 0 && &b.queue[0][0] == &head[0] {
			b.queue = b.queue[1:]
		}
		b.mu.Unlock()
	}
}
