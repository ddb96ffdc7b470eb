package invalidation

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/internal/failpoint"
)

// receive reads the subscription until Close, applying events and keeping
// the health state: any connection error turns L1 off (and so does silence,
// through watch); a subscription confirmation or a heartbeat after that flushes
// L1 and turns it back on.
func (b *Bus) receive() {
	defer b.wg.Done()
	backoff := 10 * time.Millisecond
	// A (re)connection happens inside the call that needs it, with its
	// context: the deadline bounds it (a Redis that accepts and never
	// answers), and Close's cancellation ends it. The deadline is never
	// shorter than HealthWindow, which bounds each read.
	connect := max(b.opts.SubscribeTimeout, b.opts.HealthWindow)
	for !b.closed() {
		ctx, cancel := context.WithTimeout(b.life, connect)
		msg, err := b.sub().ReceiveTimeout(ctx, b.opts.HealthWindow)
		cancel()
		if err != nil {
			var nerr interface{ Timeout() bool }
			timeout := errors.As(err, &nerr) && nerr.Timeout()
			why := reasonSilent
			if !timeout && b.healthy.Load() { // the string only for a transition
				why = "subscription connection error: " + err.Error()
			}
			b.setHealthy(false, why)
			if b.closed() || errors.Is(err, redis.ErrClosed) {
				return
			}
			b.rerouted(err) // sharded: a subscription on a node without the slot is made again
			if timeout {
				continue // silence: the pinger keeps asking
			}
			b.st.connErrors.Add(1)
			b.notSubscribed(err)
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
			if m.Kind == "sunsubscribe" { // sharded: the node lost the slot (migration, failover)
				b.resubscribe()
				continue
			}
			if (m.Kind == "subscribe" || m.Kind == "ssubscribe") && m.Channel == b.channel {
				b.subscribed()
			}
		case *redis.Message:
			if m.Channel == b.ackCh {
				b.gotAck(m.Payload)
				continue
			}
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

// subscribed handles the confirmation of a new subscription: whatever was
// published before it is unknown to us, so L1 is off until it is flushed,
// and the epoch is re-read. A confirmation does not prove that what is
// published from now on reaches the subscription: on a cluster it may sit
// on a replica (a demoted primary that its client's stale slot map still
// names), which receives its primary's SPUBLISHes over the cluster bus only
// once the primary has learnt that it is one of its replicas, and every
// message published until then is lost for it. So L1 comes back (flushed)
// only with a heartbeat of this instance published after the confirmation
// (heartbeat): a message published after that heartbeat, on the same
// primary, reaches the subscription too.
func (b *Bus) subscribed() {
	n := b.st.subscribes.Add(1)
	b.logSubscribed(n)
	b.gaps.reset()
	b.setHealthy(false, "resubscribed")
	b.refreshEpoch()
	b.healthMu.Lock()
	b.subscribedAt = b.c.Now()
	b.healthMu.Unlock()
	b.heard.Store(time.Now().UnixNano())
	if failpoint.Disabled(failpoint.GuardSubscribedBeat) {
		b.setHealthy(true, "")
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
	failpoint.Hit(context.Background(), failpoint.BeforeApply, b.id)
	if b.gaps.saw(e.Origin, e.Seq, time.Now()) {
		b.lostEvents()
	}
	switch e.Kind {
	case KindProbe:
		b.probed(e.Origin, e.Seq)
	case KindEpoch:
		b.refreshEpoch()
	case KindInvalidate:
		for _, k := range e.Keys {
			b.c.EvictLocal(k.Key, k.Version)
		}
		b.confirm(e)
		b.st.keysApplied.Add(uint64(len(e.Keys)))
	case KindUnconfirmed:
		keys := make([]string, len(e.Keys))
		for i, k := range e.Keys {
			keys[i] = k.Key
		}
		b.suspectMu.Lock()
		if b.suspects == nil {
			b.suspects = map[string]string{}
		}
		for _, k := range keys {
			if len(b.suspects) < maxTracked {
				b.suspects[k] = e.Origin
			}
		}
		b.suspectMu.Unlock()
		b.c.SuspectRemote(keys)
		b.st.unconfirmed.Add(uint64(len(keys)))
	}
	if e.Kind != KindProbe {
		b.ackPending(false) // this event may close the gap a probe waits on
	}
	lag := time.Duration(time.Now().UnixNano() - e.SentAt)
	b.st.lag.record(lag)
	b.st.lagHist.record(lag)
	if b.opts.OnApply != nil {
		b.opts.OnApply(e, lag)
	}
}

// maxTracked bounds the unconfirmed keys whose confirmation the bus waits
// for; keys beyond it stay unread from Redis until the epoch moves.
const maxTracked = 10000

// confirm lets the cache read from Redis again the keys of e that e's origin
// had announced as unconfirmed: a later invalidation from the same origin
// means its retry reached Redis.
func (b *Bus) confirm(e Event) {
	b.suspectMu.Lock()
	defer b.suspectMu.Unlock()
	if len(b.suspects) == 0 {
		return
	}
	var ok []string
	for _, k := range e.Keys {
		if b.suspects[k.Key] == e.Origin {
			delete(b.suspects, k.Key)
			ok = append(ok, k.Key)
		}
	}
	if len(ok) > 0 {
		b.c.ConfirmRemote(ok)
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
	n := b.st.gaps.Add(1) // after the flush: a reader of Stats who sees the gap sees its flush
	b.ackPending(true)    // nothing lost can be served from L1 any more
	b.opts.Logger.Warn("gormcache: invalidation events lost; L1 flushed", "namespace", b.ns, "instance", b.id, "gaps", n)
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
		// The presence entry and the heartbeat go in one MULTI: a heartbeat
		// that vouches for L1 always comes with a fresh entry, so a strict
		// writer that reads the entries knows every instance it must wait for.
		now := strconv.FormatInt(b.c.Now().UnixNano(), 10)
		_, _ = b.pub.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, b.presence, b.id, now)
			p.PExpire(ctx, b.presence, time.Hour)
			b.publish(ctx, p, b.beat, now) // a lost heartbeat shows up as silence
			return nil
		})
		cancel()
	}
}
