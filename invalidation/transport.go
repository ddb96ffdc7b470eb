package invalidation

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Transport is the pub/sub flavour the bus uses.
type Transport int

const (
	// TransportAuto chooses TransportSharded when the client that publishes
	// (the cache's, else Options.Redis) is a *redis.ClusterClient, and
	// TransportClassic for every other client.
	TransportAuto Transport = iota
	// TransportClassic uses PUBLISH and SUBSCRIBE. On a cluster a PUBLISH
	// is broadcast to every node over the cluster bus, and messages
	// published on different nodes may reach a subscriber out of order,
	// which the heartbeats' vouching does not allow.
	TransportClassic
	// TransportSharded uses SPUBLISH and SSUBSCRIBE (Redis 7): the channel,
	// the heartbeat and acknowledgement channels and the presence hash
	// share one hash slot, so one shard carries every message of the bus,
	// in the order it executed them. A channel without a hash tag keeps its
	// name and gets "{<channel>}" in front of the names derived from it,
	// which puts them in the channel's own slot.
	TransportSharded
)

// String returns the transport's name.
func (t Transport) String() string {
	switch t {
	case TransportAuto:
		return "auto"
	case TransportClassic:
		return "classic"
	case TransportSharded:
		return "sharded"
	}
	return "Transport(" + strconv.Itoa(int(t)) + ")"
}

// shardedFor resolves TransportAuto for the bus's publishing client.
func shardedFor(t Transport, pub redis.UniversalClient) bool {
	switch t {
	case TransportSharded:
		return true
	case TransportClassic:
		return false
	}
	_, ok := pub.(*redis.ClusterClient)
	return ok
}

// hashTag reports whether name has a Redis Cluster hash tag (a non-empty
// "{...}"): a name extended after it stays in its slot.
func hashTag(name string) bool {
	i := strings.IndexByte(name, '{')
	if i < 0 {
		return false
	}
	j := strings.IndexByte(name[i+1:], '}')
	return j > 0
}

// shardable reports whether names derived from channel can be put in
// channel's slot: it has a hash tag, or no brace at all.
func shardable(channel string) bool {
	return hashTag(channel) || !strings.ContainsAny(channel, "{}")
}

// derived returns the name of one of the bus's channels or keys, channel
// followed by suffix; with the sharded transport it is kept in channel's
// hash slot, as a MULTI and a sharded subscription require.
func derived(sharded bool, channel, suffix string) string {
	if !sharded || hashTag(channel) {
		return channel + suffix
	}
	return "{" + channel + "}" + suffix
}

// ackChannel is the channel on which origin receives acknowledgements.
func (b *Bus) ackChannel(origin string) string {
	return derived(b.sharded, b.channel, ":acks:"+origin)
}

// publish sends payload on ch through c (a client or a pipeline) with the
// bus's transport.
func (b *Bus) publish(ctx context.Context, c redis.Cmdable, ch string, payload any) *redis.IntCmd {
	if b.sharded {
		return c.SPublish(ctx, ch, payload)
	}
	return c.Publish(ctx, ch, payload)
}

// subscription is the bus's current subscription. A sharded one is made
// again (subscribe) when the cluster drops or refuses it; only the receive
// goroutine replaces it.
type subscription struct {
	mu     sync.Mutex // guards the fields below
	ps     *redis.PubSub
	closed bool
	last   time.Time // when the subscription was last made
	remade int       // how many times resubscribe replaced it
}

// subscribe makes a new subscription to the bus's channels, with the bus's
// transport.
func (b *Bus) subscribe(ctx context.Context) *redis.PubSub {
	if b.sharded {
		return b.rdb.SSubscribe(ctx, b.channel, b.beat, b.ackCh)
	}
	return b.rdb.Subscribe(ctx, b.channel, b.beat, b.ackCh)
}

// sub returns the current subscription.
func (b *Bus) sub() *redis.PubSub {
	b.subs.mu.Lock()
	defer b.subs.mu.Unlock()
	return b.subs.ps
}

// closeSub closes the subscription for good.
func (b *Bus) closeSub() error {
	b.subs.mu.Lock()
	ps := b.subs.ps
	b.subs.closed = true
	b.subs.mu.Unlock()
	return ps.Close()
}

// resubscribeAfter is how long a sharded subscription may stay silent
// (while heartbeats are being published) before it is made again: the
// cluster may have moved the channel's slot without telling it.
func (b *Bus) resubscribeAfter() time.Duration {
	return max(10*b.opts.HealthWindow, time.Second)
}

// resubscribe replaces a sharded subscription that the cluster dropped
// (SUNSUBSCRIBE pushed by a node that lost the slot: slot migration,
// failover) or refused (MOVED on a node that is no longer the slot's
// primary): go-redis reconnects a broken subscription, but not one on a
// live connection to the wrong node. The slot map is reloaded in the
// background, so the new subscription may still go to the old node (after a
// failover, a replica now, which accepts it); its confirmation is handled
// as every (re)subscription is (subscribed): L1 off and the epoch re-read,
// then L1 flushed and served again once a heartbeat published after it has
// come back. Until then L1 is served only within HealthWindow of the last
// heartbeat received, which vouched only for what was published before it.
func (b *Bus) resubscribe() {
	if !b.sharded {
		return
	}
	if cc, ok := b.rdb.(*redis.ClusterClient); ok {
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.HealthWindow)
		cc.ReloadState(ctx) // asynchronous: a subscription routed by the old map meets MOVED and comes back here
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.HealthWindow)
	ps := b.subscribe(ctx)
	cancel()
	b.subs.mu.Lock()
	if b.subs.closed {
		b.subs.mu.Unlock()
		_ = ps.Close()
		return
	}
	old := b.subs.ps
	b.subs.ps, b.subs.last = ps, time.Now()
	b.subs.remade++
	b.subs.mu.Unlock()
	_ = old.Close()
}

// rerouted handles, for the sharded transport, a receive that failed with
// err: an error reply (MOVED, CLUSTERDOWN...) means the subscription is on
// a node that does not serve the slot, and a long silence that it may be;
// either way it is made again (at most once per resubscribeAfter for a
// silence).
func (b *Bus) rerouted(err error) {
	if !b.sharded {
		return
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		b.resubscribe()
		return
	}
	b.subs.mu.Lock()
	stale := time.Since(b.subs.last) > b.resubscribeAfter()
	b.subs.mu.Unlock()
	if stale && time.Since(time.Unix(0, b.heard.Load())) > b.resubscribeAfter() {
		b.resubscribe()
	}
}
