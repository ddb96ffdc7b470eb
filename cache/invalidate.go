package cache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/gormcache/gormcache/internal/failpoint"
)

// ErrInvalidVersion is returned by Invalidate for a version above 2^53-1.
var ErrInvalidVersion = errors.New("gormcache: invalid version")

// Invalidate records that a write to key committed at version, and must be
// called after the write's transaction commits (never before: a reader could
// refill the old row in between). It:
//
//  1. voids the key's lease in Redis (no load that began before the write
//     can fill it) and leaves a versioned tombstone (a fill older than
//     version is rejected from then on; an older invalidation never lowers
//     it); if Redis refuses to store the tombstone (out of memory), the entry
//     is deleted instead;
//  2. evicts key from L1 and voids every L1 fill of key that began earlier;
//  3. forgets the key's singleflight, so callers arriving now start a new load
//     instead of joining one that may carry the old value;
//  4. hands the invalidation to the attached Publisher, if any.
//
// A zero version means the source has no version column: the tombstone is
// stamped max(stored+1, Redis server time in µs), which is newer than every
// version a reader could have observed before the write.
//
// The Redis step gets WriteTimeout, retried within it. If Redis does not
// confirm it in time, the key is still evicted locally, other instances are
// told the key is unconfirmed (they stop reading it from Redis), this
// instance stops reading Redis until the namespace epoch has been bumped
// (as soon as Redis answers; the bump retires every entry written before
// it), and Invalidate returns an error wrapping ErrInvalidationUnconfirmed:
// the write committed, but the caller should know. It runs to completion
// even if ctx is cancelled, since the write it reports has committed.
func (c *Cache) Invalidate(ctx context.Context, key string, version uint64) error {
	return c.InvalidateMany(ctx, []Invalidation{{Key: key, Version: version}})
}

// InvalidateMany is Invalidate for several keys, as for the writes of one
// transaction: one Redis round trip (pipelined) and one Publish call.
func (c *Cache) InvalidateMany(ctx context.Context, invs []Invalidation) error {
	if c == nil {
		return ErrNilCache
	}
	if c.closed.Load() {
		return ErrClosed
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if err := checkInvalidations(invs); err != nil {
		return err
	}
	if len(invs) == 0 {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	deadline := time.Now().Add(c.opts.WriteTimeout)
	applied := make([]Invalidation, len(invs))
	copy(applied, invs)
	for i := range applied {
		applied[i].Key, _ = storeKey(applied[i].Key)
	}
	c.st.invalidations.add(uint64(len(invs)))

	// 1. L2, and the publication to other instances in the same round trip
	// when the publisher and the client allow it.
	h := c.pub.Load()
	pub, done := c.preparePublish(h, applied)
	err := c.invalidateL2(ctx, applied, pub)
	// 2 and 3. L1 and singleflight.
	for _, inv := range applied {
		v := inv.Version
		if inv.Retire {
			v = 0 // whatever L1 holds
		}
		c.evictLocal(inv.Key, v)
	}
	// 4. Other instances: the write returns once its event is out.
	var delivered <-chan bool
	switch {
	case pub != nil:
		delivered = done(pub.sent, err == nil) // the publisher retries what was not sent
	case h != nil && err == nil: // also confirms keys announced unconfirmed on a retry
		if dp, ok := h.p.(DeliveryPublisher); ok && !failpoint.Disabled(failpoint.GuardDelivery) {
			delivered = dp.PublishDelivered(ctx, published(applied))
		} else {
			h.p.Publish(ctx, published(applied))
		}
	}
	if err == nil && delivered != nil && !failpoint.Disabled(failpoint.GuardDelivery) {
		err = c.awaitDelivery(delivered, len(invs), deadline)
	}
	return err
}

// awaitDelivery waits until the event of a write whose tombstones Redis
// confirmed has been published, up to deadline. An event that is not is a
// degraded write, as one whose tombstones were not confirmed: other
// instances may serve their L1 copies until the epoch bump this schedules
// (and the event's eventual delivery) retires them.
func (c *Cache) awaitDelivery(delivered <-chan bool, keys int, deadline time.Time) error {
	t := time.NewTimer(max(time.Until(deadline), time.Millisecond))
	defer t.Stop()
	select {
	case ok := <-delivered:
		if ok {
			return nil
		}
	case <-t.C:
	}
	c.st.unconfirmed.add(uint64(keys))
	c.pendingBump.Add(1)
	c.st.pendingBumps.add(1)
	select {
	case c.kick <- struct{}{}:
	default:
	}
	if keys == 0 {
		return fmt.Errorf("%w: the announcement of an epoch bump was not published within %v", ErrInvalidationUnconfirmed, c.opts.WriteTimeout)
	}
	return fmt.Errorf("%w: the announcement of %d key(s) was not published within %v", ErrInvalidationUnconfirmed, keys, c.opts.WriteTimeout)
}

func checkInvalidations(invs []Invalidation) error {
	for _, inv := range invs {
		// A key above MaxKeyLen is accepted: nothing can be cached under
		// it, and the invalidation of a committed write must not fail on
		// the length of a value it wrote.
		if err := checkKeyChars(inv.Key); err != nil {
			return fmt.Errorf("invalidate %q: %w", inv.Key, err)
		}
		if inv.Version > maxVersion {
			return fmt.Errorf("%w: %d is above 2^53-1", ErrInvalidVersion, inv.Version)
		}
	}
	return nil
}

// published is what other instances are told of invs: a retired key at
// version 0, which evicts it whatever their L1 holds.
func published(invs []Invalidation) []Invalidation {
	out := invs
	for i, inv := range invs {
		if inv.Retire {
			if &out[0] == &invs[0] {
				out = append([]Invalidation(nil), invs...)
			}
			out[i].Version = 0
		}
	}
	return out
}

// preparePublish asks a PipelinePublisher for the message to send in the
// same pipeline as the tombstones (single node and failover clients only).
func (c *Cache) preparePublish(h *pubHolder, invs []Invalidation) (*publication, func(sent, confirmed bool) <-chan bool) {
	pp, ok := publisherOf(h).(PipelinePublisher)
	if !ok || c.l2 == nil || !c.l2.ordered() {
		return nil, nil
	}
	ch, payload, done := pp.PreparePublish(published(invs))
	if done == nil {
		return nil, nil
	}
	return &publication{channel: ch, payload: payload}, done
}

func publisherOf(h *pubHolder) Publisher {
	if h == nil {
		return nil
	}
	return h.p
}

// PipelinePublisher is implemented by a Publisher that can have its message
// sent in the same round trip as the tombstones, right after them (single
// node and failover clients only). PreparePublish returns the channel and
// payload for invs, and a function the cache calls with whether the PUBLISH
// succeeded and whether Redis confirmed the tombstones; the publisher must
// retry what was not sent, unless the tombstones were not confirmed (the
// cache then tells it through UnconfirmedPublisher, and Publishes the keys
// again if a retry confirms them). A nil function means "use Publish
// instead". When it queues a retry, done returns a channel that reports the
// delivery, as PublishDelivered's.
type PipelinePublisher interface {
	Publisher
	PreparePublish(invs []Invalidation) (channel string, payload []byte, done func(sent, confirmed bool) (delivered <-chan bool))
}

// DeliveryPublisher is implemented by a Publisher that can report when the
// event of a Publish reached Redis: the channel receives true then, or
// false if the event was dropped. The cache waits for it before a write
// returns (within WriteTimeout): subscribers vouch for their L1 by
// heartbeats they publish themselves, which bounds how long they serve
// what a write retired only once the write's event was published before
// the write returned.
type DeliveryPublisher interface {
	Publisher
	PublishDelivered(ctx context.Context, invs []Invalidation) (delivered <-chan bool)
}

// invalidateL2 writes the tombstones (and pub, if set) within WriteTimeout,
// retrying, and replaces zero versions in invs by the stamped ones. After a
// first failed attempt other instances are told the keys are unconfirmed;
// if no attempt succeeds the error wraps ErrInvalidationUnconfirmed and an
// epoch bump is pending.
func (c *Cache) invalidateL2(ctx context.Context, invs []Invalidation, pub *publication) error {
	if c.l2 == nil {
		return nil
	}
	keys := make([]string, len(invs))
	tombs := make([][]byte, len(invs))
	modes := make([]string, len(invs))
	expiry := c.opts.Clock.Now().Add(c.opts.TombstoneTTL).UnixNano()
	for i, inv := range invs {
		keys[i] = inv.Key
		e := envelope{kind: KindTombstone, version: inv.Version, schema: inv.Version, expiry: expiry}
		switch {
		case inv.Retire && !failpoint.Disabled(failpoint.GuardRetire):
			modes[i] = "r"
		case inv.Version == 0:
			modes[i] = "s"
		default:
			modes[i] = "v"
		}
		tombs[i] = appendEnvelope(nil, e)
	}
	// The first attempt is bounded like a read, so that other instances
	// hear of a slow Redis within about a bus window; the retries get longer.
	deadline := time.Now().Add(c.opts.WriteTimeout)
	attempt := c.opts.RedisTimeout
	if failpoint.Disabled(failpoint.GuardWriteDeadline) {
		deadline = time.Now() // one attempt, as a read
	}
	var err error
	for n := 0; ; n++ {
		var versions []uint64
		var outcome []int
		versions, outcome, err = c.l2.invalidateMany(ctx, keys, tombs, modes, c.opts.TombstoneTTL, min(attempt, max(time.Until(deadline), time.Millisecond)), pub)
		if err == nil {
			c.recordTombstones(invs, versions, outcome)
			if n > 0 {
				c.sus.remove(keys) // the publication that follows confirms them elsewhere
			}
			return nil
		}
		if n == 0 {
			c.unconfirmed(ctx, invs)
		}
		pub = nil // the event went (or will go) out on its own
		if !time.Now().Before(deadline) {
			break
		}
		c.st.invRetries.add(1)
		time.Sleep(min(20*time.Millisecond, time.Until(deadline)))
		attempt = max(c.opts.WriteTimeout/4, c.opts.RedisTimeout)
	}
	c.st.unconfirmed.add(uint64(len(invs)))
	c.pendingBump.Add(1)
	c.st.pendingBumps.add(1)
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return fmt.Errorf("%w: %d key(s) after %v: %v", ErrInvalidationUnconfirmed, len(invs), c.opts.WriteTimeout, err)
}

// unconfirmed handles a first failed attempt: this instance stops reading
// the keys from Redis, and other instances are told to.
func (c *Cache) unconfirmed(ctx context.Context, invs []Invalidation) {
	keys := make([]string, len(invs))
	for i, inv := range invs {
		keys[i] = inv.Key
	}
	c.sus.add(keys, c.opts.Clock.Now().Add(c.opts.L2TTL).UnixNano())
	if up, ok := publisherOf(c.pub.Load()).(UnconfirmedPublisher); ok {
		up.PublishUnconfirmed(ctx, published(invs))
	}
}

// recordTombstones replaces zero versions in invs by the stamped ones and
// counts the outcomes.
func (c *Cache) recordTombstones(invs []Invalidation, versions []uint64, outcome []int) {
	for i := range invs {
		if !invs[i].Retire {
			invs[i].Version = versions[i]
		}
		switch outcome[i] {
		case tombWritten:
			c.st.tombstones.add(1)
		case tombDeleted:
			c.st.oomDeletes.add(1)
		}
	}
}

// EvictLocal applies an invalidation to this process only: it evicts key
// from L1 unless L1 already holds version or newer, voids L1 fills of key
// that began earlier, and forgets the key's singleflight. It is for
// invalidation sources (the pub/sub bus) applying other instances' writes;
// a version of 0 evicts unconditionally.
func (c *Cache) EvictLocal(key string, version uint64) {
	if c == nil || checkKey(key) != nil {
		return
	}
	key, _ = storeKey(key)
	c.st.localEvictions.add(1)
	c.evictLocal(key, version)
}

func (c *Cache) evictLocal(key string, version uint64) {
	if c.l1 != nil {
		c.l1.evict(key, version)
	}
	if !failpoint.Disabled(failpoint.GuardForget) {
		c.forget(key)
	}
}

// ConfirmRemote tells the cache that keys another instance had announced as
// unconfirmed are now invalidated in Redis: they may be read from Redis
// again.
func (c *Cache) ConfirmRemote(keys []string) {
	if c != nil {
		c.sus.remove(keys)
	}
}

// FlushLocal empties L1 and voids every L1 fill in progress; callers arriving
// afterwards never join a load that began before. The invalidation bus calls
// it when it may have missed messages (on every (re)subscribe).
func (c *Cache) FlushLocal() {
	if c == nil || c.l1 == nil {
		return
	}
	c.st.flushes.add(1)
	c.l1.flush()
}

// SetLocalServing turns serving from L1 on (with no time limit) or off.
// While off, reads skip L1 (going to Redis, then the loader), nothing is
// filled into it, and loads in flight are not joined. The invalidation bus
// turns it off while its subscription is unhealthy, which is what bounds
// staleness when messages may be lost; it flushes L1 before vouching again.
//
// Calling it (or VouchLocal) marks the cache as having an invalidation
// source: from then on L1 entries live up to L1TTL instead of
// DefaultStalenessBound (see Options.SingleInstance).
func (c *Cache) SetLocalServing(on bool) {
	if c == nil {
		return
	}
	c.sourced.Store(true)
	if on {
		c.localUntil.Store(math.MaxInt64)
	} else {
		c.localUntil.Store(0)
	}
}

// VouchLocal lets L1 be served until the given time (by Options.Clock; see
// Now), and no longer unless vouched for again; an earlier time than the
// one in force is ignored. An invalidation source calls it whenever it has
// proof that every invalidation published before some moment has been
// applied, so that if it stops hearing (or this process stops running), L1
// stops being served without anyone having to notice.
func (c *Cache) VouchLocal(until time.Time) {
	if c == nil {
		return
	}
	c.sourced.Store(true)
	u := until.UnixNano()
	for {
		cur := c.localUntil.Load()
		if cur == math.MaxInt64 || u <= cur || c.localUntil.CompareAndSwap(cur, u) {
			return
		}
	}
}

// Now is the cache's clock (Options.Clock), for invalidation sources that
// compute VouchLocal deadlines.
func (c *Cache) Now() time.Time { return c.opts.Clock.Now() }

// LocalServing reports whether L1 is being served now.
func (c *Cache) LocalServing() bool {
	return c != nil && c.l1 != nil && c.vouched(c.opts.Clock.Now().UnixNano())
}

// SetPublisher attaches the Publisher told about every invalidation. It
// returns ErrPublisherSet if one is attached already; pass nil to detach.
func (c *Cache) SetPublisher(p Publisher) error {
	if c == nil {
		return ErrNilCache
	}
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	if p == nil {
		c.pub.Store(nil)
		return nil
	}
	if c.pub.Load() != nil {
		return ErrPublisherSet
	}
	c.pub.Store(&pubHolder{p: p})
	return nil
}

// RetireAll retires every entry of the namespace, in both tiers and on every
// instance, for a committed write whose keys cannot be known (a multi-row
// UPDATE by condition, raw SQL). It bumps the namespace epoch in Redis
// (entries filled before it are never read again), flushes L1, and tells
// other instances through the attached EpochPublisher; they also find the
// new epoch at their next EpochInterval. If Redis does not take the bump
// within WriteTimeout, this instance stops reading Redis until a later bump
// succeeds, and RetireAll returns an error wrapping
// ErrInvalidationUnconfirmed, as Invalidate does.
func (c *Cache) RetireAll(ctx context.Context) error {
	if c == nil {
		return ErrNilCache
	}
	if c.closed.Load() {
		return ErrClosed
	}
	if c.l2 == nil {
		c.FlushLocal()
		return nil
	}
	deadline := time.Now().Add(c.opts.WriteTimeout)
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	var err error
	for {
		var delivered <-chan bool
		if delivered, err = c.refreshEpoch(ctx, true); err == nil {
			if delivered == nil || failpoint.Disabled(failpoint.GuardDelivery) {
				return nil
			}
			// Other instances serve L1 until they hear of the bump, or
			// until their vouch lapses: the write returns once it is out.
			return c.awaitDelivery(delivered, 0, deadline)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
			continue
		}
		break
	}
	c.FlushLocal()
	c.pendingBump.Add(1)
	c.st.pendingBumps.add(1)
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return fmt.Errorf("%w: the namespace epoch could not be bumped: %v", ErrInvalidationUnconfirmed, err)
}
