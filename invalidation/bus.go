package invalidation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/failpoint"
)

// Sentinel errors.
var (
	// ErrInvalidOptions wraps every validation failure of Options.
	ErrInvalidOptions = errors.New("gormcache: invalid bus options")
	// ErrClosed is returned by operations on a closed Bus.
	ErrClosed = errors.New("gormcache: bus closed")
)

// Bus keeps one Cache coherent with every other instance using the same
// namespace: it publishes this instance's invalidations (attached to the
// cache as its Publisher) and applies everyone else's to L1.
//
// Redis pub/sub is at-most-once, so the bus never trusts it blindly: L1 is
// served only while the subscription is provably alive (it answers a PING
// within HealthWindow), it is flushed whenever the bus may have missed a
// message (every (re)subscription, every return to health, a gap in an
// origin's sequence numbers), and the epoch is re-read after reconnecting.
type Bus struct {
	c        *cache.Cache
	rdb      redis.UniversalClient // the subscription's client
	pub      redis.UniversalClient // publishes: the cache's client when it has one
	subs     subscription          // the current subscription (transport.go)
	sharded  bool                  // SPUBLISH/SSUBSCRIBE (Options.Transport)
	ns       string
	channel  string
	beat     string // this instance's heartbeat channel, on the same connection
	ackCh    string // this instance's channel for acknowledgements of its probes
	presence string // the hash of live instances, refreshed with each heartbeat
	id       string
	opts     Options

	mu     sync.Mutex // protects the fields below
	seq    uint64     // last sequence number assigned
	queue  []outgoing // encoded events waiting to be published, in order
	queued chan struct{}
	// dropping is set from the first event dropped from a full queue until
	// the queue drains (the drop is logged once).
	dropping bool

	strictTimingOut atomic.Bool // a strict wait timed out and none was acknowledged since (logged once)

	healthMu sync.Mutex  // serialises health transitions (receive and watchdog goroutines)
	healthy  atomic.Bool // written with healthMu held
	// subscribedAt is when the current subscription was confirmed (the
	// cache's clock, as heartbeats carry it); guarded by healthMu.
	subscribedAt time.Time
	heard        atomic.Int64 // unix nanoseconds of the last message received (heartbeats included)

	gaps *gaps // per-origin sequence numbers awaited
	acks *acks // acknowledgements of this instance's probes, probes awaiting ours

	suspectMu sync.Mutex        // protects suspects
	suspects  map[string]string // unconfirmed key → the origin that will confirm it

	// unsubscribedLogged is set once the bus logged that it could not make
	// its first subscription (logged once, until it subscribes).
	unsubscribedLogged atomic.Bool

	st   stats
	life context.Context    // cancelled by Close: ends a connection attempt in progress
	end  context.CancelFunc // cancels life
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// New subscribes to the namespace's channel, attaches the bus to c as its
// Publisher, and starts its goroutines. L1 is not served until the
// subscription is confirmed and healthy; WaitHealthy waits for that.
//
// New does not wait for Redis: a process that starts during a Redis outage
// starts, and serves from Redis and the database. If the first subscription
// cannot be established within SubscribeTimeout (or ctx's deadline, if
// sooner) — Redis refuses connections, or accepts them and never answers —
// New still returns the bus, with a nil error, and logs a warning
// (Options.Logger) once; the bus keeps retrying (backing off up to 1 s
// between attempts, each bounded by SubscribeTimeout) until it subscribes
// or is closed. Meanwhile L1 stays off, Healthy and Stats().Healthy are
// false and Stats().Subscribes is 0. A program that must not start without
// the bus calls WaitHealthy with a deadline after New, and closes the bus
// and fails if it returns an error.
func New(ctx context.Context, c *cache.Cache, opts Options) (*Bus, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil cache", ErrInvalidOptions)
	}
	o := opts
	if o.Redis == nil {
		o.Redis = c.Redis()
	}
	if o.Redis == nil {
		return nil, fmt.Errorf("%w: no Redis client (the cache has none either)", ErrInvalidOptions)
	}
	if o.Channel == "" {
		o.Channel = c.Namespace() + ":invalidations"
	}
	if o.InstanceID == "" {
		var b [8]byte
		rand.Read(b[:])
		o.InstanceID = hex.EncodeToString(b[:])
	}
	if o.PingInterval == 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.HealthWindow == 0 {
		o.HealthWindow = DefaultHealthWindow
	}
	if o.PublishTimeout == 0 {
		o.PublishTimeout = DefaultPublishTimeout
	}
	if o.QueueLen == 0 {
		o.QueueLen = DefaultQueueLen
	}
	if o.SubscribeTimeout == 0 {
		o.SubscribeTimeout = DefaultSubscribeTimeout
	}
	if o.Logger == nil {
		o.Logger = c.Logger()
	}
	switch {
	case len(o.InstanceID) > MaxOrigin:
		return nil, fmt.Errorf("%w: InstanceID longer than %d bytes", ErrInvalidOptions, MaxOrigin)
	case o.PingInterval < 0 || o.HealthWindow <= o.PingInterval:
		return nil, fmt.Errorf("%w: HealthWindow (%v) must exceed PingInterval (%v)", ErrInvalidOptions, o.HealthWindow, o.PingInterval)
	case o.PublishTimeout < 0 || o.QueueLen < 0 || o.SubscribeTimeout < 0:
		return nil, fmt.Errorf("%w: negative PublishTimeout, QueueLen or SubscribeTimeout", ErrInvalidOptions)
	case o.Transport < TransportAuto || o.Transport > TransportSharded:
		return nil, fmt.Errorf("%w: unknown Transport %v", ErrInvalidOptions, o.Transport)
	}
	pubc := o.Redis
	if c.Redis() != nil {
		pubc = c.Redis()
	}
	sharded := shardedFor(o.Transport, pubc)
	if sharded && !shardable(o.Channel) {
		return nil, fmt.Errorf("%w: Channel %q has braces but no hash tag: its derived names cannot share its slot", ErrInvalidOptions, o.Channel)
	}
	b := &Bus{
		c: c, rdb: o.Redis, pub: o.Redis, ns: c.Namespace(), channel: o.Channel, id: o.InstanceID, opts: o, sharded: sharded,
		beat:  derived(sharded, o.Channel, ":heartbeat:"+o.InstanceID),
		ackCh: derived(sharded, o.Channel, ":acks:"+o.InstanceID), presence: derived(sharded, o.Channel, ":presence"),
		queued: make(chan struct{}, 1), gaps: newGaps(), acks: newAcks(), stop: make(chan struct{}),
	}
	if c.Redis() != nil {
		// Events go out on the client that writes the tombstones, so that an
		// event fails only when its tombstone does (a case the cache covers
		// with an epoch bump), never on its own.
		b.pub = c.Redis()
	}
	c.SetLocalServing(false)
	if err := c.SetPublisher(b); err != nil {
		return nil, err
	}
	b.life, b.end = context.WithCancel(context.Background())
	b.subs.ps, b.subs.last = b.firstSubscription(ctx), time.Now()
	b.wg.Add(4)
	go b.receive()
	go b.ping()
	go b.watch()
	go b.send()
	return b, nil
}

// firstSubscription makes the bus's subscription within SubscribeTimeout.
// When Redis does not take it, the subscription is returned all the same
// (the receive loop keeps making it) and the failure is logged.
func (b *Bus) firstSubscription(ctx context.Context) *redis.PubSub {
	ctx, cancel := context.WithTimeout(ctx, b.opts.SubscribeTimeout)
	defer cancel()
	ps := b.subscribe(ctx)
	// go-redis does not report a failed SUBSCRIBE: a PING on the same
	// connection does, and reconnects once more if the first attempt failed
	// fast (a refused connection). Its reply is read by the receive loop.
	if err := ps.Ping(ctx); err != nil {
		b.notSubscribed(err)
	}
	return ps
}

// notSubscribed logs, once, that the bus could not make its first
// subscription.
func (b *Bus) notSubscribed(err error) {
	if b.st.subscribes.Load() > 0 || !b.unsubscribedLogged.CompareAndSwap(false, true) {
		return
	}
	b.opts.Logger.Warn("gormcache: invalidation bus could not subscribe; L1 is not served until it does "+
		"(reads go to Redis and the source); retrying",
		"namespace", b.ns, "instance", b.id, "error", err, "subscribe_timeout", b.opts.SubscribeTimeout)
}

// InstanceID returns the id this instance publishes under.
func (b *Bus) InstanceID() string { return b.id }

// Healthy reports whether the subscription is confirmed and answered within
// HealthWindow, i.e. whether L1 is being served.
func (b *Bus) Healthy() bool { return b.healthy.Load() }

// WaitHealthy waits until the bus is healthy or ctx ends.
func (b *Bus) WaitHealthy(ctx context.Context) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for !b.healthy.Load() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.stop:
			return ErrClosed
		case <-t.C:
		}
	}
	return nil
}

// Close detaches the bus from the cache, closes the subscription and stops
// every goroutine. L1 stays off afterwards: without the bus this instance
// cannot know of other instances' writes. Close is idempotent. A connection
// attempt in progress (Redis down) is abandoned; Close waits for it at most
// SubscribeTimeout.
func (b *Bus) Close() error {
	var err error
	b.once.Do(func() {
		close(b.stop)
		b.end()
		b.c.SetPublisher(nil)
		b.c.SetLocalServing(false)
		b.healthy.Store(false)
		err = b.closeSub()
		b.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.PublishTimeout)
		_ = b.pub.HDel(ctx, b.presence, b.id).Err() // gone: nobody waits for its acknowledgements
		cancel()
		b.mu.Lock()
		for _, o := range b.queue {
			o.report(false) // never delivered: the writes waiting for them are degraded
		}
		b.queue = nil
		b.mu.Unlock()
	})
	return err
}

// setHealthy moves between healthy and unhealthy. Becoming healthy flushes
// L1 first: whatever was missed while unhealthy is gone before L1 serves.
// why says what turned it unhealthy, for the log.
func (b *Bus) setHealthy(ok bool, why string) {
	b.healthMu.Lock()
	defer b.healthMu.Unlock()
	b.setHealthyLocked(ok, why)
}

func (b *Bus) setHealthyLocked(ok bool, why string) {
	if ok == b.healthy.Load() {
		return
	}
	b.logHealth(ok, why)
	if ok {
		if !failpoint.Disabled(failpoint.GuardResubscribeFlush) {
			b.c.FlushLocal()
		}
		b.st.recoveries.Add(1)
		b.healthy.Store(true)
		b.vouchLocked(b.c.Now()) // just flushed: nothing older is left to miss
		return
	}
	b.healthy.Store(false)
	if !failpoint.Disabled(failpoint.GuardHealth) {
		b.c.SetLocalServing(false)
	}
	b.st.unhealthy.Add(1)
}

// vouchLocked lets the cache serve L1 until HealthWindow after since: every
// event published before since has been applied. If nothing more vouches
// (the subscription goes silent, or this process stops running), L1 stops
// being served by itself. b.healthMu must be held.
func (b *Bus) vouchLocked(since time.Time) {
	if failpoint.Disabled(failpoint.GuardHealth) {
		b.c.SetLocalServing(true) // test hook: no health gate at all
		return
	}
	b.c.VouchLocal(since.Add(b.opts.HealthWindow))
}

// heartbeat vouches after receiving this instance's heartbeat published at
// sent: Redis delivers a connection's messages in the order it executed the
// PUBLISHes, so every event published before it has been received. A
// heartbeat, unlike a PING, is a write: when Redis does not execute writes
// (CLIENT PAUSE WRITE, a read-only failover), heartbeats stop along with the
// events, and L1 stops being served. Only a heartbeat published after the
// current subscription was confirmed turns the bus healthy (subscribed).
func (b *Bus) heartbeat(sent time.Time) {
	b.healthMu.Lock()
	defer b.healthMu.Unlock()
	if sent.Before(b.subscribedAt) && !failpoint.Disabled(failpoint.GuardSubscribedBeat) {
		return // it proves nothing about the path to this subscription
	}
	if b.healthy.Load() {
		b.vouchLocked(sent)
		return
	}
	b.setHealthyLocked(true, "")
}

// watch turns L1 off when nothing has been heard for HealthWindow. It never
// touches the connection, so it keeps watching while the receive loop is
// stuck (go-redis reconnects inside Receive, and a reconnect to a hung
// server waits for the client's dial and read timeouts).
func (b *Bus) watch() {
	defer b.wg.Done()
	t := time.NewTicker(max(b.opts.PingInterval/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		b.healthMu.Lock()
		if b.healthy.Load() && time.Since(time.Unix(0, b.heard.Load())) > b.opts.HealthWindow {
			b.setHealthyLocked(false, reasonSilent)
		}
		b.healthMu.Unlock()
		if b.gaps.expired(time.Now(), b.opts.HealthWindow/2) {
			b.lostEvents() // an awaited event never came
		}
	}
}

// sleep waits d or until Close; it reports false when closed.
func (b *Bus) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-b.stop:
		return false
	case <-t.C:
		return true
	}
}

func (b *Bus) closed() bool {
	select {
	case <-b.stop:
		return true
	default:
		return false
	}
}
