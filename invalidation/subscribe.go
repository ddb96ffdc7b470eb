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
// through watch); a subscription confirmation or a PONG after that flushes
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
				b.setHealthy(false)
				rctx, cancel := context.WithTimeout(ctx, b.opts.PublishTimeout)
				b.c.RefreshEpoch(rctx)
				cancel()
				b.heard.Store(time.Now().UnixNano())
				b.setHealthy(true)
			}
		case *redis.Pong:
			// Only PONGs vouch for L1: they carry the time their PING was
			// sent, and every message published before it came first. Any
			// other message may be an old one from a backlog (after a pause).
			if sent, err := strconv.ParseInt(m.Payload, 10, 64); err == nil && b.st.subscribes.Load() > 0 {
				b.pong(time.Unix(0, sent))
			}
		case *redis.Message:
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
	if last, seen := b.lastSeq[e.Origin]; seen && e.Seq > last+1 {
		// Messages from this origin were lost (it dropped them, or they
		// never reached Redis): anything in L1 may be stale.
		b.st.gaps.Add(1)
		b.c.FlushLocal()
	}
	if e.Seq > b.lastSeq[e.Origin] {
		b.lastSeq[e.Origin] = e.Seq
	}
	switch e.Kind {
	case KindEpoch:
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.PublishTimeout)
		b.c.RefreshEpoch(ctx)
		cancel()
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

// ping asks the subscription connection for a PONG every PingInterval.
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
		_ = b.ps.Ping(ctx, strconv.FormatInt(b.c.Now().UnixNano(), 10)) // a lost PONG shows up as silence
		cancel()
	}
}
