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
//  1. leaves a versioned tombstone in Redis (a fill older than version is
//     rejected from then on; an older invalidation never lowers it);
//  2. evicts key from L1 and voids every L1 fill of key that began earlier;
//  3. forgets the key's singleflight, so callers arriving now start a new load
//     instead of joining one that may carry the old value;
//  4. hands the invalidation to the attached Publisher, if any.
//
// A zero version means the source has no version column: the tombstone is
// stamped max(stored+1, Redis server time in µs), which is newer than every
// version a reader could have observed before the write.
//
// Invalidate does not fail because Redis is down: the key is evicted locally
// and the cache bumps the namespace epoch as soon as Redis answers again,
// which retires every L2 entry written before. It runs to completion even if
// ctx is cancelled, since the write it reports has committed. It returns an
// error only for bad arguments or a closed cache.
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
	for _, inv := range invs {
		if err := checkKey(inv.Key); err != nil {
			return fmt.Errorf("invalidate %q: %w", inv.Key, err)
		}
		if inv.Version > maxVersion {
			return fmt.Errorf("%w: %d is above 2^53-1", ErrInvalidVersion, inv.Version)
		}
	}
	if len(invs) == 0 {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	applied := make([]Invalidation, len(invs))
	copy(applied, invs)
	c.st.invalidations.add(uint64(len(invs)))

	// 1. L2 tombstones, and the publication to other instances in the same
	// round trip when the publisher and the client allow it.
	var pub *publication
	var done func(sent bool)
	h := c.pub.Load()
	if pp, ok := publisherOf(h).(PipelinePublisher); ok && c.l2 != nil && c.l2.ordered() {
		var ch string
		var payload []byte
		ch, payload, done = pp.PreparePublish(applied)
		if done != nil {
			pub = &publication{channel: ch, payload: payload}
		}
	}
	if !c.invalidateL2(ctx, applied, pub) && c.l2 != nil {
		c.pendingBump.Add(1)
		c.st.pendingBumps.add(1)
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	// 2 and 3. L1 and singleflight.
	for _, inv := range applied {
		c.evictLocal(inv.Key, inv.Version)
	}
	// 4. Other instances.
	switch {
	case pub != nil:
		done(pub.sent) // the publisher retries what was not sent
	case h != nil:
		h.p.Publish(ctx, applied)
	}
	return nil
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
// succeeded; the publisher must retry what was not sent. A nil function
// means "use Publish instead".
type PipelinePublisher interface {
	Publisher
	PreparePublish(invs []Invalidation) (channel string, payload []byte, done func(sent bool))
}

// invalidateL2 writes the tombstones (and pub, if set) and replaces zero
// versions in invs by the stamped ones. It reports whether every tombstone
// reached Redis.
func (c *Cache) invalidateL2(ctx context.Context, invs []Invalidation, pub *publication) bool {
	if c.l2 == nil {
		return true
	}
	keys := make([]string, len(invs))
	tombs := make([][]byte, len(invs))
	expiry := c.opts.Clock.Now().Add(c.opts.TombstoneTTL).UnixNano()
	for i, inv := range invs {
		keys[i] = c.l2.key(inv.Key)
		tombs[i] = appendEnvelope(nil, envelope{kind: KindTombstone, version: inv.Version, expiry: expiry})
	}
	versions, written, err := c.l2.invalidateMany(ctx, keys, tombs, c.opts.TombstoneTTL, pub)
	if err != nil {
		return false
	}
	for i := range invs {
		invs[i].Version = versions[i]
		if written[i] {
			c.st.tombstones.add(1)
		}
	}
	return true
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
func (c *Cache) SetLocalServing(on bool) {
	if c == nil {
		return
	}
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
