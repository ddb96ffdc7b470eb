package cache

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gormcache/gormcache/internal/failpoint"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Cache is a two-tier, versioned read-through cache: an in-process tier (L1,
// bigcache) in front of a shared Redis tier (L2) in front of a loader. It is
// safe for concurrent use. Read with Get and GetMany; after a write to the
// source commits, call Invalidate.
type Cache struct {
	opts      Options
	l1        *l1 // nil when L1 is disabled
	l2        *l2 // nil when there is no Redis
	codecHash uint64
	types     sync.Map // reflect.Type → *typeInfo
	group     singleflight.Group
	st        stats

	// localUntil gates L1 (unix nanoseconds by Options.Clock): L1 is read
	// and filled only before it. Without an invalidation source it is
	// MaxInt64; the bus moves it forward on every sign of life from its
	// subscription and sets it to 0 when it cannot vouch for L1. Checked at
	// read time, it holds even when the bus's goroutines have not run for a
	// while (a paused process, a starved scheduler).
	localUntil atomic.Int64
	// sourced is set once an invalidation source controls the L1 gate
	// (SetLocalServing, VouchLocal). Before that, with Redis and without
	// Options.SingleInstance, L1 entries live at most DefaultStalenessBound
	// (capL1); capWarned makes the log line that says so appear once.
	sourced   atomic.Bool
	capWarned atomic.Bool

	// pendingBump counts invalidations that could not reach Redis;
	// bumpCovered is the count already covered by an epoch bump. While they
	// differ, L2 is not used at all: it may hold entries those invalidations
	// should have retired, and this instance must read its own writes.
	pendingBump atomic.Uint64
	bumpCovered atomic.Uint64
	// refreshWanted asks the maintenance loop to re-read the epoch soon: an
	// invalidation source was told of a bump it could not read yet.
	refreshWanted atomic.Bool

	pubMu sync.Mutex // serialises SetPublisher
	// epochMu serialises epoch adoption: the swap of l2.epoch and the L1
	// flush that goes with it, so that no caller returns from an adoption
	// before L1 holds nothing of the old epoch.
	epochMu sync.Mutex
	pub     atomic.Pointer[pubHolder] // read on every invalidation

	fillSlots chan struct{}  // bounds background Redis fills
	fillGate  sync.RWMutex   // held by Close while it stops new background fills
	fillsOff  bool           // protected by fillGate: Close has begun
	fills     sync.WaitGroup // background Redis fills in flight; Close waits
	pending   atomic.Int64   // background Redis fills in flight, for Settle

	srv      server       // the Redis server's identity (server.go)
	unhook   func()       // unregisters from the connection hook (connverify.go); nil without one
	warmth   atomic.Int32 // recent Redis reads: hits push it up, misses down (get.go, l2Warm)
	sus      suspects     // keys not read from Redis until confirmed (suspect.go)
	tokenPfx string       // random, this cache's lease tokens start with it
	leaseTTL string       // Options.LeaseTTL in ms, as the scripts take it
	tokenSeq atomic.Uint64

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}  // closed by Close
	kick      chan struct{}  // wakes the maintenance loop early (buffered, 1)
	bg        sync.WaitGroup // the maintenance and server-check loops
}

// Invalidation names a key and the version a committed write gave it. A zero
// Version means "unversioned": the cache stamps the tombstone with a version
// newer than anything stored (see Invalidate).
//
// Retire is for a write made around the library, whose version may not have
// moved (plain GORM, SQL) or may have gone back (a row deleted and inserted
// again): every cached entry of the key is retired whatever its version, and
// fills from loads that begin afterwards are accepted from Version (0: any)
// on.
type Invalidation struct {
	Key     string
	Version uint64
	Retire  bool
}

// Publisher receives every invalidation this Cache applied, after both tiers
// were updated, with the versions actually recorded. It is the seam where the
// invalidation package tells other instances. Publish owns delivery and
// retries; it must not block for long.
type Publisher interface {
	Publish(ctx context.Context, invs []Invalidation)
}

// UnconfirmedPublisher is implemented by a Publisher that can tell other
// instances that this instance committed writes to invs but Redis did not
// confirm their invalidation (yet): they evict the keys from L1 and stop
// reading them from Redis until a later Publish of the same keys from this
// instance confirms them, or the namespace epoch moves.
type UnconfirmedPublisher interface {
	PublishUnconfirmed(ctx context.Context, invs []Invalidation)
}

type pubHolder struct{ p Publisher }

// maxVersion is the largest version Invalidate accepts: versions stay exact
// in the Lua number type used to stamp unversioned tombstones.
const maxVersion = 1<<53 - 1

// maxTime is a deadline that never passes.
const maxTime = math.MaxInt64

// New validates opts, applies defaults and returns a ready Cache. If Redis
// does not answer, New still succeeds: the cache serves from L1 and the
// loader, and starts using Redis once the namespace epoch can be read.
func New(ctx context.Context, opts Options) (*Cache, error) {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	var rnd [8]byte
	_, _ = crand.Read(rnd[:])
	c := &Cache{
		opts:      o,
		codecHash: hashString("codec:" + o.Codec.Name()),
		stop:      make(chan struct{}),
		kick:      make(chan struct{}, 1),
		fillSlots: make(chan struct{}, maxAsyncFills),
		tokenPfx:  hex.EncodeToString(rnd[:]),
		leaseTTL:  strconv.FormatInt(o.LeaseTTL.Milliseconds(), 10),
	}
	c.localUntil.Store(math.MaxInt64)
	c.warmth.Store(initialWarmth.Load())
	if o.L1MaxBytes > 0 {
		l, err := newL1(o)
		if err != nil {
			return nil, err
		}
		c.l1 = l
	}
	if o.Redis != nil {
		c.l2 = &l2{rdb: o.Redis, ns: o.Namespace, prefix: o.Namespace + ":{", timeout: o.RedisTimeout, errors: &c.st.redisErrors,
			epochTTL: 2 * max(o.L2TTL, o.TombstoneTTL, o.NotFoundTTL, o.L1TTL)}
		c.l2.br.clock, c.l2.br.retry = o.Clock, o.RedisRetryAfter
		c.srv.wake = make(chan struct{}, 1)
		c.hookConnections()
		c.l2.br.onChange = func(down bool) {
			if down {
				o.Logger.Warn("gormcache: Redis marked down; reads go to the source", "namespace", o.Namespace, "retry", o.RedisRetryAfter)
			} else {
				o.Logger.Info("gormcache: Redis answers again", "namespace", o.Namespace)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, o.RedisTimeout)
		_ = c.checkServer(cctx) // the first incarnation check adopts the epoch
		cancel()
		c.bg.Add(2)
		go c.maintain()
		go c.watchServer()
	}
	return c, nil
}

// Close stops the cache's goroutines and releases L1. It does not close the
// Redis client, which belongs to the caller. Close is idempotent; operations
// after it return ErrClosed.
//
// If some invalidation never reached Redis, Close first bumps the namespace
// epoch (which retires every entry written before it), within WriteTimeout;
// when that fails too it returns an error wrapping
// ErrInvalidationUnconfirmed: other instances may then serve what that
// invalidation should have retired until the entries' TTL (see README, "The
// guarantee").
func (c *Cache) Close() error {
	if c == nil {
		return nil
	}
	var err error
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.fillGate.Lock()
		c.fillsOff = true
		c.fillGate.Unlock()
		c.fills.Wait()
		err = c.flushPendingBump()
		close(c.stop)
		c.bg.Wait()
		if c.unhook != nil {
			c.unhook()
		}
		if c.l1 != nil {
			err = errors.Join(err, c.l1.close())
		}
	})
	return err
}

// flushPendingBump bumps the epoch if an invalidation that missed Redis is
// not covered by a bump yet.
func (c *Cache) flushPendingBump() error {
	p := c.pendingBump.Load()
	if c.l2 == nil || p == c.bumpCovered.Load() {
		return nil
	}
	deadline := time.Now().Add(c.opts.WriteTimeout)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		_, err = c.refreshEpoch(ctx, true)
		cancel()
		if err == nil {
			c.bumpCovered.Store(p)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%w: %d invalidation(s) never reached Redis and the epoch could not be bumped before closing: %v",
		ErrInvalidationUnconfirmed, p-c.bumpCovered.Load(), err)
}

// Redis returns the L2 client, or nil for a cache without Redis.
func (c *Cache) Redis() redis.UniversalClient { return c.opts.Redis }

// Namespace returns the namespace the cache was configured with.
func (c *Cache) Namespace() string { return c.opts.Namespace }

// RedisHealthy reports whether Redis is in use: the epoch is known, the
// server's identity was verified recently and Redis is not marked down. It
// is true for a cache without Redis.
func (c *Cache) RedisHealthy() bool {
	return c.l2 == nil || (c.l2.epoch.Load() != 0 && c.l2.br.healthy() && c.serverVouched())
}

// Settle waits until the Redis fills running in the background have
// finished. Reads never need it; tests and benchmarks that inspect Redis do.
func (c *Cache) Settle() {
	for c != nil && c.pending.Load() > 0 {
		time.Sleep(50 * time.Microsecond)
	}
}

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() Stats {
	s := Stats{
		L1Hits: c.st.l1Hits.load(), L2Hits: c.st.l2Hits.load(), Misses: c.st.misses.load(),
		Loads: c.st.loads.load(), Coalesce: c.st.coalesce.load(), NotFoundHits: c.st.nfHits.load(),
		LoadErrors: c.st.loadErrors.load(), RejectedFills: c.st.rejected.load(),
		TombstonesWritten: c.st.tombstones.load(), Invalidations: c.st.invalidations.load(),
		LocalEvictions: c.st.localEvictions.load(), Flushes: c.st.flushes.load(),
		DecodeErrors: c.st.decodeErrors.load(), SchemaMismatches: c.st.schemaMismatch.load(),
		L1Skips: c.st.l1Skips.load(), RedisErrors: c.st.redisErrors.load(), RedisSkips: c.st.redisSkips.load(),
		PendingEpochBumps: c.st.pendingBumps.load(), EpochChanges: c.st.epochChanges.load(),
	}
	s.Incarnations, s.LeaseWaits, s.LeaseFallbacks = c.st.incarnations.load(), c.st.leaseWaits.load(), c.st.leaseFallbacks.load()
	s.OOMDeletes, s.InvalidationRetries, s.UnconfirmedInvalidations = c.st.oomDeletes.load(), c.st.invRetries.load(), c.st.unconfirmed.load()
	s.Suspects = c.st.suspects.load()
	if c.l2 != nil {
		s.BreakerTrips = c.l2.br.trips.Load()
		s.Epoch = c.l2.epoch.Load()
		if p := c.srv.policy.Load(); p != nil {
			s.MaxmemoryPolicy = *p
		}
		c.srv.mu.Lock()
		s.ServerIdentity = c.srv.identity
		c.srv.mu.Unlock()
	}
	if c.l1 != nil {
		s.L1Entries = c.l1.len()
		s.L1Bytes = c.l1.bc.Capacity()
	}
	return s
}

// check validates the receiver and a key.
func (c *Cache) check(key string) error {
	if c == nil {
		return ErrNilCache
	}
	if c.closed.Load() {
		return ErrClosed
	}
	return checkKey(key)
}

// storeKey returns the key that key is stored under in both tiers, in
// events and in singleflight: key itself, or for a key longer than
// MaxStoredKeyLen "#" and its SHA-256, with key as orig (the entries of a
// hashed key carry it, so a collision is a miss).
func storeKey(key string) (stored, orig string) {
	if len(key) <= MaxStoredKeyLen {
		return key, ""
	}
	sum := sha256.Sum256([]byte(key))
	return "#" + hex.EncodeToString(sum[:]), key
}

func checkKey(key string) error {
	if len(key) > MaxKeyLen {
		return errors.Join(ErrInvalidKey, errors.New("gormcache: key longer than MaxKeyLen"))
	}
	return checkKeyChars(key)
}

// checkKeyChars validates a key whatever its length (invalidations).
func checkKeyChars(key string) error {
	if key == "" {
		return ErrInvalidKey
	}
	if strings.ContainsAny(key, "{}") {
		return errors.Join(ErrInvalidKey, errors.New("gormcache: key contains '{' or '}'"))
	}
	return nil
}

// typeSchema returns the schema fingerprint of entries of type t under the
// cache's codec, or ErrUnsupportedType if the codec reports (TypeChecker)
// that it cannot round-trip t exactly. The answer is computed once per type.
func (c *Cache) typeSchema(t reflect.Type) (uint64, error) {
	if v, ok := c.types.Load(t); ok {
		ti := v.(*typeInfo)
		return ti.schema, ti.err
	}
	ti := &typeInfo{schema: schemaOf(t, c.codecHash)}
	if tc, ok := c.opts.Codec.(TypeChecker); ok {
		if err := tc.Check(t); err != nil {
			ti.err = fmt.Errorf("%w: %v with codec %s: %w", ErrUnsupportedType, t, c.opts.Codec.Name(), err)
		}
	}
	v, _ := c.types.LoadOrStore(t, ti)
	ti = v.(*typeInfo)
	return ti.schema, ti.err
}

// typeInfo is what typeSchema knows of a type.
type typeInfo struct {
	schema uint64
	err    error
}

// CheckType reports whether c's codec can cache values of type T exactly:
// nil, or an error wrapping ErrUnsupportedType that names the field and the
// reason. Get, Load and GetMany make the same check before calling their
// loader; call it at construction time to fail earlier.
func CheckType[T any](c *Cache) error {
	if c == nil {
		return ErrNilCache
	}
	_, err := c.typeSchema(reflect.TypeFor[T]())
	return err
}

// useL1 reports whether L1 may be read and filled now.
func (c *Cache) useL1(skip bool, now int64) bool {
	return c.l1 != nil && !skip && c.vouched(now)
}

// capL1 reports whether L1 entries must live at most DefaultStalenessBound:
// the cache shares Redis with possible other instances and nothing tells it
// of their writes. The first time it does, it logs so.
func (c *Cache) capL1() bool {
	if c.l2 == nil || c.opts.SingleInstance || c.sourced.Load() {
		return false
	}
	if !c.capWarned.Load() && c.capWarned.CompareAndSwap(false, true) {
		c.opts.Logger.Warn("gormcache: cache with Redis and no invalidation source attached: L1 entries are capped at "+
			"DefaultStalenessBound, not L1TTL, so that other instances' writes are not served stale for longer; "+
			"attach an invalidation bus (invalidation.New) or set Options.SingleInstance if this process is the only one using the namespace",
			"namespace", c.opts.Namespace, "l1_cap", DefaultStalenessBound, "l1_ttl", c.opts.L1TTL)
	}
	return true
}

// vouched reports whether, at now, this instance can trust that it has
// applied every invalidation published more than one bus window ago: L1 may
// be served and in-flight loads joined.
func (c *Cache) vouched(now int64) bool { return now < c.localUntil.Load() }

// l2Read reports whether Redis may be read for key now, and the epoch in
// use. It may not when there is no Redis, the epoch is not known yet, the
// server's identity has not been verified recently, one of this instance's
// invalidations failed to reach Redis and the epoch bump that retires what
// it missed has not happened yet (so this instance still reads its own
// writes), or another instance announced an invalidation of key that Redis
// may not have recorded.
func (c *Cache) l2Read(key string) (bool, uint64) {
	if c.l2 == nil {
		return false, 0
	}
	e := c.l2.epoch.Load()
	now := c.opts.Clock.Now().UnixNano()
	if e == 0 || c.pendingBump.Load() != c.bumpCovered.Load() || !c.serverVouched() || c.sus.has(key, now) {
		c.st.redisSkips.add(1)
		return false, 0
	}
	return true, e
}

// newToken returns a lease token unique to this load.
func (c *Cache) newToken() string {
	return c.tokenPfx + strconv.FormatUint(c.tokenSeq.Add(1), 36)
}

// jitter shortens d by a random fraction below TTLJitter.
func (c *Cache) jitter(d time.Duration) time.Duration {
	if c.opts.TTLJitter == 0 || d <= 0 {
		return d
	}
	return d - time.Duration(rand.Float64()*c.opts.TTLJitter*float64(d))
}

// flightKey is the singleflight key of key: it includes the L1 flush
// generation, so callers arriving after a flush never join a load that
// began before it.
func (c *Cache) flightKey(key string) string {
	if c.l1 == nil {
		return key
	}
	return key + "\x00" + strconv.FormatUint(c.l1.flushGen.Load(), 36)
}

func (c *Cache) forget(key string) {
	c.group.Forget(c.flightKey(key))
}

// maintain re-reads the namespace epoch every EpochInterval (keeping the
// current incarnation's marker alive) and bumps it while invalidations that
// failed to reach Redis are not yet covered by a bump. It stops when Close
// is called.
func (c *Cache) maintain() {
	defer c.bg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t := time.NewTicker(c.opts.EpochInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.kick:
		}
		p := c.pendingBump.Load()
		if _, err := c.refreshEpoch(ctx, p != c.bumpCovered.Load()); err == nil {
			c.bumpCovered.Store(p)
			c.refreshWanted.Store(false)
		} else if c.refreshWanted.Load() || p != c.bumpCovered.Load() {
			// Urgent: retry soon instead of at the next tick.
			go func() {
				select {
				case <-c.stop:
				case <-time.After(min(c.opts.EpochInterval, 50*time.Millisecond)):
					select {
					case c.kick <- struct{}{}:
					default:
					}
				}
			}()
		}
	}
}

// refreshEpoch reads the namespace epoch (raising it first if bump is set)
// and adopts it. After a bump, an attached EpochPublisher is told; delivered
// reports when that announcement reached Redis (nil if nobody is told).
func (c *Cache) refreshEpoch(ctx context.Context, bump bool) (delivered <-chan bool, err error) {
	mode, id := epochRead, ""
	c.srv.mu.Lock()
	if c.srv.identity != "" {
		mode, id = epochIncarnation, c.srv.identity
	}
	c.srv.mu.Unlock()
	if bump {
		mode = epochBump
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.RedisTimeout)
	n, err := c.l2.readEpoch(cctx, mode, id)
	cancel()
	if err != nil {
		return nil, err
	}
	failpoint.Hit(ctx, failpoint.AfterEpochRead, c.opts.Namespace+"/"+mode)
	c.adoptEpoch(n, false)
	if !bump {
		return nil, nil
	}
	c.opts.Logger.Info("gormcache: namespace epoch bumped", "namespace", c.opts.Namespace, "epoch", n)
	h := c.pub.Load()
	if h == nil {
		return nil, nil
	}
	switch ep := h.p.(type) {
	case EpochDeliveryPublisher:
		return ep.PublishEpochDelivered(ctx, n), nil
	case EpochPublisher:
		ep.PublishEpoch(ctx, n)
	}
	return nil, nil
}

// RefreshEpoch verifies the Redis server's identity, then re-reads the
// namespace epoch and adopts it, flushing L1 if it changed. Invalidation sources call it when told that
// another instance bumped the epoch, and after resubscribing (Redis may have
// restarted empty). It is a no-op for a cache without Redis.
func (c *Cache) RefreshEpoch(ctx context.Context) error {
	if c == nil {
		return ErrNilCache
	}
	if c.l2 == nil {
		return nil
	}
	// After a reconnection the server may be another one (a failover, a
	// restart): verify its identity first.
	cctx, cancel := context.WithTimeout(ctx, c.opts.RedisTimeout)
	_ = c.checkServer(cctx)
	cancel()
	_, err := c.refreshEpoch(ctx, false)
	if err != nil {
		// Told that the epoch moved, but Redis did not answer: keep trying
		// at once from the maintenance loop rather than at its next tick.
		c.refreshWanted.Store(true)
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return err
}

// EpochPublisher is implemented by a Publisher that also tells other
// instances when this cache bumped the namespace epoch, so they re-read it
// at once instead of at their next EpochInterval.
type EpochPublisher interface {
	PublishEpoch(ctx context.Context, epoch uint64)
}

// EpochDeliveryPublisher is an EpochPublisher that reports when the
// announcement of a bump reached Redis: the channel receives true then, or
// false if it was dropped. RetireAll waits for it, as a write waits for the
// delivery of its invalidations (see DeliveryPublisher).
type EpochDeliveryPublisher interface {
	EpochPublisher
	PublishEpochDelivered(ctx context.Context, epoch uint64) (delivered <-chan bool)
}

// adoptEpoch switches to epoch n. Entries of other epochs are never read
// again; L1, filled from the old epoch, is flushed before it returns, also
// when another caller adopted n first. A lower epoch than the one in use is
// adopted only for a new server incarnation: outside one, it is the answer
// to a read that began before a bump and arrived after it.
func (c *Cache) adoptEpoch(n uint64, incarnation bool) {
	guarded := !failpoint.Disabled(failpoint.GuardEpochOrder)
	if guarded {
		c.epochMu.Lock()
		defer c.epochMu.Unlock()
	}
	cur := c.l2.epoch.Load()
	if n == cur || (guarded && n < cur && !incarnation) {
		return
	}
	c.l2.setEpoch(n)
	if cur != 0 {
		c.st.epochChanges.add(1)
	}
	c.sus.clear() // what they stood for is retired with the old epoch
	failpoint.Hit(context.Background(), failpoint.BeforeEpochFlush, c.opts.Namespace)
	c.FlushLocal()
}
