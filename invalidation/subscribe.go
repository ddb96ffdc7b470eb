package invalidation

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// receive reads the subscription until Close, applying events and keeping
// the health state: any connection error turns L1 off (and so does silence,
// through watch); a subscription confirmation or a heartbeat after that flushes
// L1 and turns it back on.
func (b *Bus) receive() {
	defer b.wg.Done()
	ctx := context.Background()
	backoff := 10 * time.Millisecond
	for !b.closed() {
		msg, err := b.ps.ReceiveTimeout(ctx, b.opts.HealthWindow)
		if err != nil {
			b.setHealthy(false)
			if b.closed() || errors.Is(err, redis.ErrClosed) {
				return
			}
			var nerr interface{ Timeout() bool }
			if errors.As(err, &nerr) && nerr.Timeout() {
				continue // silence: the pinger keeps asking
			}
			b.st.connErrors.Add(1)
			if !b.sleep(backoff) { // Redis refuses connections: do not spin
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		b.heard.Store(time.Now().UnixNano())
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == b.channel {
				// A new subscription: whatever was published before it is
				// unknown to us. Forget L1 and re-read the epoch.
				b.st.subscribes.Add(1)
				b.gaps.reset()
				b.setHealthy(false)
				b.refreshEpoch()
				b.heard.Store(time.Now().UnixNano())
				b.setHealthy(true)
			}
		case *redis.Message:
			if m.Channel == b.beat {
				// Only heartbeats vouch for L1: they carry the time they were
				// published, and every event published before came first. Any
				// other message may be an old one from a backlog (after a
				// pause of this process).
				if sent, err := strconv.ParseInt(m.Payload, 10, 64); err == nil && b.st.subscribes.Load() > 0 {
					b.heartbeat(time.Unix(0, sent))
				}
				continue
			}
			b.apply([]byte(m.Payload))
		}
	}
}

// apply decodes and applies one event.
func (b *Bus) apply(payload []byte) {
	e, err := Decode(payload)
	if err != nil || e.Namespace != b.ns {
		b.st.badEvents.Add(1)
		return
	}
	b.st.received.Add(1)
	if e.Origin == b.id {
		// This instance applied its own invalidations to both tiers before
		// publishing them; nothing here is news.
		b.st.ownEvents.Add(1)
		return
	}
	if b.gaps.saw(e.Origin, e.Seq, time.Now()) {
		b.lostEvents()
	}
	switch e.Kind {
	case KindEpoch:
		b.refreshEpoch()
	case KindInvalidate:
		for _, k := range e.Keys {
			b.c.EvictLocal(k.Key, k.Version)
		}
		b.st.keysApplied.Add(uint64(len(e.Keys)))
	}
	lag := time.Duration(time.Now().UnixNano() - e.SentAt)
	b.st.lag.record(lag)
	if b.opts.OnApply != nil {
		b.opts.OnApply(e, lag)
	}
}

// refreshEpoch makes the cache re-read the namespace epoch; if Redis does
// not answer now, the cache keeps retrying on its own.
func (b *Bus) refreshEpoch() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	b.c.RefreshEpoch(ctx)
}

// lostEvents flushes L1: events from some origin were lost (it dropped
// them, or they never reached Redis), so anything in L1 may be stale.
func (b *Bus) lostEvents() {
	b.c.FlushLocal()
	b.st.gaps.Add(1) // after the flush: a reader of Stats who sees the gap sees its flush
}

// ping publishes a heartbeat to this instance's own channel every
// PingInterval; receive vouches for L1 when it comes back.
func (b *Bus) ping() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.PingInterval)
		_ = b.pub.Publish(ctx, b.beat, strconv.FormatInt(b.c.Now().UnixNano(), 10)).Err() // a lost heartbeat shows up as silence
		cancel()
	}
}
