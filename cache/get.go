package cache

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/gormcache/gormcache/internal/failpoint"
)

// LoadFunc loads key from the source of truth. It returns the value and the
// version the source holds it at (a row's version column), or an error
// wrapping ErrNotFound when the key does not exist, which is then cached for
// NotFoundTTL. Any other error is returned to every waiting caller and never
// cached.
//
// Version 0 means the source has no version: the entry then takes the
// version of the tombstone the read observed (see Invalidate), which is
// enough to reject it if a write commits while the load runs.
//
// The loader runs on a context that carries the first caller's values but
// not its cancellation or deadline: one caller giving up must not fail the
// others. Give database calls their own timeout (statement_timeout, say);
// LoadTimeout only stops new callers from joining a load that has run that
// long, and keeps a result that arrives later out of the cache.
type LoadFunc[T any] func(ctx context.Context, key string) (value T, version uint64, err error)

// ReadOption adjusts one read.
type ReadOption func(*readOptions)

type readOptions struct {
	ttl    time.Duration
	skipL1 bool
	served *Served // ReportServed; nil: nobody asked
}

// Served counts the keys of a read by the tier that answered them: L1, Redis
// (L2), or the loader (Loaded: a miss in both tiers, including reads that
// joined another caller's load). A Get counts one key; a GetMany each
// distinct key once.
type Served struct {
	L1, L2, Loaded int
}

// ReportServed adds to *s the tiers that answered the read. Reads without it
// pay nothing for the count.
func ReportServed(s *Served) ReadOption { return func(o *readOptions) { o.served = s } }

// add counts one key answered by src; a nil s counts nothing.
func (s *Served) add(src source) {
	if s == nil {
		return
	}
	switch src {
	case fromL1:
		s.L1++
	case fromL2:
		s.L2++
	default:
		s.Loaded++
	}
}

// WithTTL sets the L2 lifetime of an entry this read fills (L1 keeps it for
// at most L1TTL). It does not change entries already cached.
func WithTTL(d time.Duration) ReadOption { return func(o *readOptions) { o.ttl = d } }

// SkipL1 makes the read bypass the in-process tier: neither read nor filled.
func SkipL1() ReadOption { return func(o *readOptions) { o.skipL1 = true } }

func applyReadOptions(opts []ReadOption) readOptions {
	if len(opts) == 0 {
		return readOptions{} // the common case, without the escape below
	}
	ro := new(readOptions)
	for _, o := range opts {
		if o != nil {
			o(ro)
		}
	}
	return *ro
}

// source says where a flight found its entry.
type source uint8

const (
	fromL1 source = iota + 1
	fromL2
	fromLoader
)

// flightResult is what a load hands to every caller that waited on it: the
// entry's bytes (each caller decodes its own copy) and where they came from.
type flightResult struct {
	b   []byte
	src source
}

// rawLoad is a loader reduced to bytes: payload, version, found.
type rawLoad func(ctx context.Context) (payload []byte, version uint64, found bool, err error)

// Get returns the value of key: from L1, else from Redis, else from load,
// whose result is then filled into both tiers unless an invalidation of key
// happened while it ran. Concurrent misses of one key share a single load.
//
// The value returned is the caller's own copy, decoded from the entry's
// bytes on a miss as on a hit, so every path returns the same value. A
// cached or loaded absence is returned as an error wrapping ErrNotFound.
// Corrupt or foreign bytes in either tier are deleted and treated as a
// miss; a Redis outage is a miss (after at most RedisTimeout, and then
// immediately while it lasts). A type the codec cannot round-trip exactly is
// refused before load runs (ErrUnsupportedType).
func Get[T any](ctx context.Context, c *Cache, key string, load LoadFunc[T], opts ...ReadOption) (T, error) {
	var zero T
	if load == nil {
		return zero, ErrNilLoader
	}
	p, err := getTyped[T](ctx, c, key, load, plainLoader[T]{c}, opts)
	if p == nil {
		return zero, err
	}
	return *p, err
}

// loader calls a load function with its argument and returns the entry
// payload. get takes it as a type parameter so that the call is dispatched
// statically: neither Get nor Load allocates a closure on a hit.
type loader[A any] interface {
	load(ctx context.Context, key string, arg A) (payload []byte, version uint64, found bool, err error)
}

// plainLoader calls a LoadFunc passed as the argument (Get) and encodes its
// value with the cache's codec.
type plainLoader[T any] struct{ c *Cache }

func (l plainLoader[T]) load(ctx context.Context, key string, f LoadFunc[T]) ([]byte, uint64, bool, error) {
	v, ver, err := f(ctx, key)
	return encodeLoaded(l.c, v, ver, err)
}

// argLoader is a load function taking an argument (Load), encoded with the
// cache's codec.
type argLoader[T, A any] struct {
	c *Cache
	f func(ctx context.Context, key string, arg A) (T, uint64, error)
}

func (l argLoader[T, A]) load(ctx context.Context, key string, arg A) ([]byte, uint64, bool, error) {
	v, ver, err := l.f(ctx, key, arg)
	return encodeLoaded(l.c, v, ver, err)
}

// encodedLoader is a load function that returns the payload itself
// (LoadEncoded).
type encodedLoader[A any] func(ctx context.Context, key string, arg A) ([]byte, uint64, error)

func (f encodedLoader[A]) load(ctx context.Context, key string, arg A) ([]byte, uint64, bool, error) {
	p, ver, err := f(ctx, key, arg)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, 0, false, nil
		}
		return nil, 0, false, err
	}
	return p, ver, true, nil
}

// decoder turns an entry's payload into the caller's value.
type decoder[T any] interface {
	decode(ctx context.Context, payload []byte, v *T) error
}

// codecDecoder decodes with the cache's codec.
type codecDecoder[T any] struct{ c Codec }

//lint:ignore U1000 called through the decoder constraint of get
func (d codecDecoder[T]) decode(_ context.Context, b []byte, v *T) error { return d.c.Unmarshal(b, v) }

// formatDecoder decodes with a Format.
type formatDecoder[T any] struct{ f *Format[T] }

//lint:ignore U1000 called through the decoder constraint of get
func (d formatDecoder[T]) decode(ctx context.Context, b []byte, v *T) error {
	return d.f.Decode(ctx, b, v)
}

// Load is Get for loaders that take an argument, such as a primary key: the
// argument travels separately, so the loader can be a plain function and a
// hit allocates nothing for it, and the value comes back as a pointer to the
// caller's own copy (nil on error).
func Load[T, A any](ctx context.Context, c *Cache, key string, arg A, load func(ctx context.Context, key string, arg A) (T, uint64, error), opts ...ReadOption) (*T, error) {
	if load == nil {
		return nil, ErrNilLoader
	}
	return getTyped[T](ctx, c, key, arg, argLoader[T, A]{c, load}, opts)
}

// Format describes entries whose bytes are produced by the loader itself
// rather than by the cache's codec (LoadEncoded, GetManyEncoded): the
// repository package stores GORM rows column by column this way.
type Format[T any] struct {
	// Fingerprint identifies the payload layout. It is stored in every
	// entry; an entry with another fingerprint is a miss, never decoded.
	// It must not be 0.
	Fingerprint uint64
	// Decode rebuilds a value from a payload into v, which holds T's zero
	// value. The payload is private to the call and never modified
	// afterwards, so the value may alias it (strings, not byte slices: the
	// caller may modify those). An error from a cached payload makes the
	// entry a miss (it is deleted); from a fresh load it is returned,
	// wrapped in ErrDecode.
	Decode func(ctx context.Context, payload []byte, v *T) error
}

// LoadEncoded is Load for a loader that encodes its own payload, decoded by
// f on a hit and on a miss alike. The loader returns an error wrapping
// ErrNotFound for an absent key, which is then cached.
func LoadEncoded[T, A any](ctx context.Context, c *Cache, key string, arg A, f *Format[T], load func(ctx context.Context, key string, arg A) (payload []byte, version uint64, err error), opts ...ReadOption) (*T, error) {
	if load == nil {
		return nil, ErrNilLoader
	}
	if f == nil || f.Decode == nil || f.Fingerprint == 0 {
		return nil, fmt.Errorf("%w: nil Format, Decode or zero Fingerprint", ErrInvalidFormat)
	}
	return get(ctx, c, key, arg, encodedLoader[A](load), formatDecoder[T]{f}, f.Fingerprint, opts)
}

// getTyped is get with the cache's codec: the schema is the fingerprint of
// T, and a T the codec cannot round-trip is refused before anything runs.
func getTyped[T, A any, L loader[A]](ctx context.Context, c *Cache, key string, arg A, l L, opts []ReadOption) (*T, error) {
	if c == nil {
		return nil, ErrNilCache
	}
	schema, err := c.typeSchema(reflect.TypeFor[T]())
	if err != nil {
		return nil, err
	}
	return get(ctx, c, key, arg, l, codecDecoder[T]{c.opts.Codec}, schema, opts)
}

func get[T, A any, L loader[A], D decoder[T]](ctx context.Context, c *Cache, key string, arg A, l L, d D, schema uint64, opts []ReadOption) (*T, error) {
	if err := c.check(key); err != nil {
		return nil, err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ro := applyReadOptions(opts)
	sk, orig := storeKey(key)
	now := c.opts.Clock.Now().UnixNano()
	if c.useL1(ro.skipL1, now) {
		if v, err, ok := getL1(ctx, c, sk, orig, d, schema, now); ok {
			ro.served.add(fromL1)
			return v, err
		}
	}
	raw := func(ctx context.Context) ([]byte, uint64, bool, error) {
		return l.load(ctx, key, arg)
	}
	r, err := c.loadShared(ctx, sk, orig, schema, ro, raw, c.vouched(now))
	if err != nil {
		return nil, err
	}
	if v, err, ok := decodeResult(ctx, c, sk, orig, d, schema, r); ok {
		ro.served.add(r.src)
		return v, err
	}
	// The cached bytes did not decode into T; decodeResult removed them from
	// both tiers. Answer from the source, without caching: a later read
	// fills again.
	ro.served.add(fromLoader)
	p, _, found, err := l.load(context.WithoutCancel(ctx), key, arg)
	switch {
	case err != nil:
		return nil, err
	case !found:
		return nil, ErrNotFound
	}
	v := new(T)
	if err := d.decode(ctx, p, v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return v, nil
}

// getL1 serves key from L1. ok is false on a miss; corrupt entries are
// removed and counted.
func getL1[T any, D decoder[T]](ctx context.Context, c *Cache, key, orig string, d D, schema uint64, now int64) (v *T, err error, ok bool) {
	b, found := c.l1.get(key)
	if !found {
		return nil, nil, false
	}
	e, derr := decodeEnvelope(b)
	switch {
	case derr != nil:
		c.st.decodeErrors.add(1)
		c.l1.remove(key)
		return nil, nil, false
	case e.expired(now) && !failpoint.Disabled(failpoint.GuardExpiry):
		return nil, nil, false
	case e.kind == KindNotFound:
		c.st.l1Hits.add(1)
		c.st.nfHits.add(1)
		return nil, ErrNotFound, true
	case e.kind != KindValue || e.key != orig:
		return nil, nil, false
	case e.schema != schema:
		c.st.schemaMismatch.add(1)
		return nil, nil, false
	}
	v = new(T)
	if err := d.decode(ctx, e.payload, v); err != nil {
		c.st.decodeErrors.add(1)
		c.l1.remove(key)
		return nil, nil, false
	}
	c.st.l1Hits.add(1)
	return v, nil, true
}

// decodeResult turns a flight's bytes into the caller's copy of T. ok is false
// when cached bytes failed to decode; they have been removed from both tiers.
func decodeResult[T any, D decoder[T]](ctx context.Context, c *Cache, key, orig string, d D, schema uint64, r *flightResult) (v *T, err error, ok bool) {
	e, derr := decodeEnvelope(r.b)
	if derr == nil && e.kind == KindNotFound {
		return nil, ErrNotFound, true
	}
	if derr == nil && e.kind == KindValue && e.schema == schema && e.key == orig {
		v = new(T)
		if err := d.decode(ctx, e.payload, v); err == nil {
			return v, nil, true
		} else if r.src == fromLoader {
			return nil, fmt.Errorf("%w: %w", ErrDecode, err), true
		}
	}
	if r.src == fromLoader { // shared with a caller of another type
		return nil, fmt.Errorf("%w: key %q is loaded concurrently as another type", ErrDecode, key), true
	}
	c.st.decodeErrors.add(1)
	c.dropCorrupt(key, r.b)
	return nil, nil, false
}

// dropCorrupt removes bytes b of key from both tiers (L2 only if unchanged).
func (c *Cache) dropCorrupt(key string, b []byte) {
	if c.l1 != nil {
		c.l1.remove(key)
	}
	if c.l2 != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.RedisTimeout)
		defer cancel()
		_ = c.l2.deleteIf(ctx, key, b)
	}
	c.forget(key)
}

// encodeLoaded converts a loader's result to a raw load result.
func encodeLoaded[T any](c *Cache, v T, ver uint64, err error) ([]byte, uint64, bool, error) {
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, 0, false, nil
		}
		return nil, 0, false, err
	}
	p, err := c.opts.Codec.Marshal(v)
	if err != nil {
		return nil, 0, false, fmt.Errorf("%w: %v", ErrEncode, err)
	}
	return p, ver, true, nil
}

// loadShared runs (or joins) the flight for key. The caller may give up
// through ctx; the flight goes on for the others. When the instance is not
// vouched for (join false), the caller runs a load of its own: a load in
// flight may have read the source before writes whose invalidations this
// instance has not applied yet.
func (c *Cache) loadShared(ctx context.Context, key, orig string, schema uint64, ro readOptions, raw rawLoad, join bool) (*flightResult, error) {
	if !join {
		r, err := c.flight(ctx, key, orig, schema, ro, raw, false)
		if err == nil {
			c.st.misses.add(1)
		}
		return r, err
	}
	led := false
	fn := func() (any, error) {
		led = true
		return c.flight(ctx, key, orig, schema, ro, raw, true)
	}
	var (
		v   any
		err error
	)
	if ctx.Done() == nil { // cannot be cancelled: run on this goroutine
		v, err, _ = c.group.Do(c.flightKey(key), fn)
	} else {
		ch := c.group.DoChan(c.flightKey(key), fn)
		failpoint.Hit(ctx, failpoint.Waiting, key)
		select {
		case r := <-ch:
			v, err = r.Val, r.Err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !led {
		c.st.coalesce.add(1)
	}
	if err != nil {
		return nil, err
	}
	r := v.(*flightResult)
	switch r.src {
	case fromL1:
		c.st.l1Hits.add(1)
	case fromL2:
		c.st.l2Hits.add(1)
	default:
		c.st.misses.add(1)
	}
	return r, nil
}

// flight is one load of key, shared by every caller that joined it:
// re-check L1, read L2 (taking the key's lease on a miss), call the loader,
// then fill L1 (generation-guarded) and, in the background, L2 (only while
// the lease holds, version-guarded).
func (c *Cache) flight(parent context.Context, key, orig string, schema uint64, ro readOptions, raw rawLoad, shared bool) (*flightResult, error) {
	// The load keeps the first caller's values but not its cancellation
	// (other callers may be waiting), and no deadline either: a deadline
	// makes database drivers watch the context on every query, which costs
	// more than the query here. LoadTimeout is enforced around it instead:
	// after it, new callers stop joining this flight, and a result that
	// arrives later is returned but not filled.
	ctx := context.WithoutCancel(parent)
	started := c.opts.Clock.Now()

	useL1 := c.useL1(ro.skipL1, started.UnixNano())
	var tok fillToken
	if useL1 {
		tok = c.l1.begin(key) // before any source is read
		if b, ok := c.l1.get(key); ok {
			if e, err := decodeEnvelope(b); err == nil && !c.expired(e) && (e.kind == KindNotFound || e.kind == KindValue && e.schema == schema && e.key == orig) {
				return &flightResult{b: b, src: fromL1}, nil
			}
		}
	}

	l := c.lookupL2(ctx, key, orig, schema)
	if l.hit != nil {
		if useL1 { // a copy: l.hit is handed to the callers as Redis holds it
			c.fillL1(ctx, key, tok, append([]byte(nil), l.hit...), l.expiry, l.kind)
		}
		return &flightResult{b: l.hit, src: fromL2}, nil
	}

	// Loader. Only it can hang (Redis calls are bounded by RedisTimeout):
	// after LoadTimeout, new callers stop joining this flight.
	if shared {
		fkey := c.flightKey(key)
		abandon := time.AfterFunc(c.opts.LoadTimeout-c.opts.Clock.Now().Sub(started), func() {
			c.group.Forget(fkey)
			failpoint.Hit(ctx, failpoint.Abandoned, key)
		})
		defer abandon.Stop()
	}
	failpoint.Hit(ctx, failpoint.InLoader, key)
	payload, version, found, err := callLoader(ctx, raw)
	c.st.loads.add(1)
	if err != nil {
		c.st.loadErrors.add(1)
		c.releaseLease(ctx, key, l.token)
		return nil, err
	}
	failpoint.Hit(ctx, failpoint.AfterLoad, key)
	b, ttl := c.loadedEntry(orig, schema, ro, l, payload, version, found)
	res := &flightResult{b: b, src: fromLoader}
	switch {
	case ttl <= 0 || c.opts.Clock.Now().Sub(started) > c.opts.LoadTimeout:
		// Negative caching off, or a load too slow to trust its lease.
		c.releaseLease(ctx, key, l.token)
		return res, nil
	case versionOf(b) < l.observed:
		// The source returned a version older than the tombstone read
		// before it (a lagging replica, or a write invalidated early): the
		// result is known stale. Return it to the callers, who overlapped
		// that write, but cache it nowhere.
		c.st.rejected.add(1)
		c.releaseLease(ctx, key, l.token)
		return res, nil
	}

	// L1 first, under its generation guard; then Redis, off the callers'
	// path: its fill lands only while the lease holds, and an L1 entry that
	// a remote write made stale in the meantime is evicted by that write's
	// event (or not served while the bus cannot vouch for L1).
	inL1 := useL1 && c.fillL1(ctx, key, tok, append([]byte(nil), b...), expiryOf(b), Kind(b[offKind]))
	if l.token != "" {
		// In the background only if L1 took the entry: otherwise a caller
		// arriving between now and the fill would miss everywhere and load
		// again.
		c.fillL2(ctx, key, l.token, b, ttl, inL1)
	}
	return res, nil
}

// loadedEntry encodes a load's result as an entry, and its L2 TTL (0: do not
// cache).
func (c *Cache) loadedEntry(orig string, schema uint64, ro readOptions, l l2Lookup, payload []byte, version uint64, found bool) ([]byte, time.Duration) {
	now := c.opts.Clock.Now()
	e := envelope{kind: KindNotFound, epoch: l.epoch}
	ttl := c.opts.NotFoundTTL
	if found {
		e = envelope{kind: KindValue, version: version, schema: schema, epoch: l.epoch, key: orig, payload: payload}
		if e.version == 0 {
			e.version = l.observed
		}
		ttl = c.opts.L2TTL
		if ro.ttl > 0 {
			ttl = ro.ttl
		}
	}
	ttl = c.jitter(ttl)
	if ttl > 0 {
		e.expiry = now.Add(ttl).UnixNano()
	}
	return appendEnvelope(make([]byte, 0, envHeaderLen+len(payload)), e), ttl
}

// l2Lookup is what a flight learnt from Redis.
type l2Lookup struct {
	hit      []byte // a usable entry, or nil
	expiry   int64  // of hit
	kind     Kind   // of hit
	epoch    uint64 // the epoch a load fills under (0: Redis not used)
	observed uint64 // the version of what Redis held (tombstone floor, older entry)
	token    string // the lease this load holds: only then may it fill Redis
	done     bool   // peekL2: final, no read script needed
}

// lookupL2 reads key from Redis, taking its lease on a miss. When another
// load holds the lease, it waits (up to LeaseWait) for that load's fill, so
// that a stampede across instances costs one load; after the wait it returns
// a miss without a lease (the caller loads, and does not fill Redis).
func (c *Cache) lookupL2(ctx context.Context, key, orig string, schema uint64) l2Lookup {
	gen := c.l2Gen()
	ok, epoch := c.l2Read(key)
	if !ok {
		return l2Lookup{}
	}
	miss := false
	if c.l2Warm() {
		var l l2Lookup
		if l, miss = c.peekL2(ctx, key, orig, schema, epoch, gen); l.done {
			return l
		}
	}
	return c.leaseL2(ctx, key, orig, schema, epoch, gen, miss)
}

// peekL2 reads key with a plain GET, the cheaper command while most reads
// hit. Unless the result is done, the caller goes on to the read script;
// rejected reports that Redis holds an entry that cannot be served (the
// script must then take the lease whatever is there).
func (c *Cache) peekL2(ctx context.Context, key, orig string, schema, epoch, gen uint64) (l l2Lookup, rejected bool) {
	b, err := c.l2.get(ctx, key)
	if err != nil || !c.l2Still(gen) {
		c.st.redisSkips.add(1)
		return l2Lookup{done: true}, false // do not fill a tier that just failed
	}
	l = l2Lookup{epoch: epoch}
	if b != nil && c.inspectL2(ctx, key, orig, schema, epoch, b, true, &l) {
		failpoint.Hit(ctx, failpoint.AfterL2Read, key)
		c.l2Seen(true)
		l.done = true
		return l, false
	}
	c.l2Seen(false)
	return l2Lookup{}, b != nil
}

// leaseL2 reads key with the read script, which takes the key's lease on a
// miss in the same round trip.
// miss is set when a candidate hit was rejected: the script takes the lease
// whatever Redis holds.
func (c *Cache) leaseL2(ctx context.Context, key, orig string, schema, epoch, gen uint64, miss bool) l2Lookup {
	token := c.newToken()
	var waited time.Duration
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 16*time.Millisecond) {
		st, b, err := c.l2.read(ctx, key, token, c.leaseTTL, miss)
		failpoint.Hit(ctx, failpoint.AfterL2Read, key)
		if err != nil {
			if errors.Is(err, errUnavailable) {
				c.st.redisSkips.add(1)
			}
			return l2Lookup{} // do not fill a tier that just failed
		}
		if !c.l2Still(gen) { // the reply may come from another server than the epoch's
			c.st.redisSkips.add(1)
			return l2Lookup{}
		}
		if st == readWrong {
			c.st.decodeErrors.add(1)
			continue
		}
		l := l2Lookup{epoch: epoch}
		if st == readLease {
			l.token = token
		}
		if b != nil {
			if c.inspectL2(ctx, key, orig, schema, epoch, b, st == readHit, &l) {
				c.l2Seen(true)
				return l
			}
			if st == readHit && !miss { // stale epoch, other schema, expired: a miss after all
				miss = true
				continue
			}
		}
		if waited == 0 {
			c.l2Seen(false)
		}
		if st != readWait || waited >= c.opts.LeaseWait {
			if st == readWait {
				c.st.leaseFallbacks.add(1)
			}
			return l
		}
		if waited == 0 {
			c.st.leaseWaits.add(1)
		}
		d := min(backoff, c.opts.LeaseWait-waited)
		time.Sleep(d)
		waited += d
	}
}

// The read script costs Redis more than a GET (here about twice a GET's
// round trip), and only a miss needs it. While most of this cache's Redis
// reads hit, a read tries a plain GET first and runs the script only on a
// miss; while most miss, it runs the script at once. warmth moves up one
// per hit and down one per miss (twice for a GET that missed and the script
// after it, so GET-first is left more readily than entered), between 0 and
// warmMax; GET first from warmMax/2. Either way the
// read is safe: a GET hit is judged as the script's, and a fill always needs
// the script's lease.
const warmMax = 32

// initialWarmth is the warmth of a new cache: 0 (reads start with the
// script); tests set warmMax to exercise the GET-first path.
var initialWarmth atomic.Int32

// l2Warm reports whether reads should try a plain GET first.
func (c *Cache) l2Warm() bool { return c.warmth.Load() >= warmMax/2 }

// l2Seen records whether a Redis read hit.
func (c *Cache) l2Seen(hit bool) {
	switch w := c.warmth.Load(); {
	case hit && w < warmMax:
		c.warmth.Add(1)
	case !hit && w > 0:
		c.warmth.Add(-1)
	}
}

// inspectL2 judges the bytes b Redis holds for key: a usable hit (recorded
// in l), or what a fill must not be older than.
func (c *Cache) inspectL2(ctx context.Context, key, orig string, schema, epoch uint64, b []byte, hit bool, l *l2Lookup) bool {
	e, derr := decodeEnvelope(b)
	switch {
	case derr != nil:
		c.st.decodeErrors.add(1)
		_ = c.l2.deleteIf(ctx, key, b)
	case c.expired(e):
	case e.kind == KindTombstone:
		l.observed = e.schema // the floor
	case e.epoch < epoch: // loaded before the last epoch bump: may have missed an invalidation
		l.observed = e.version
	case e.kind == KindValue && e.schema != schema:
		c.st.schemaMismatch.add(1)
		l.observed = e.version
	case e.key != orig: // another key with the same hash
		l.observed = e.version
	case hit:
		l.hit, l.expiry, l.kind = b, e.expiry, e.kind
		return true
	}
	return false
}

// releaseLease gives up a lease this load will not fill with, in the
// background, so that other loads need not wait for it to expire.
func (c *Cache) releaseLease(ctx context.Context, key, token string) {
	if token == "" {
		return
	}
	c.background(func() {
		rctx, cancel := context.WithTimeout(ctx, c.opts.RedisTimeout)
		defer cancel()
		_ = c.l2.release(rctx, key, token)
	}, true)
}

// maxAsyncFills bounds the Redis fills in flight in the background; beyond
// it, fills run on the caller's path (back-pressure when Redis is slow).
const maxAsyncFills = 1024

// fillL2 stores b under key while the lease token holds and no newer version
// is there, in the background when async is set and a slot is free. b must
// not be modified afterwards.
func (c *Cache) fillL2(ctx context.Context, key, token string, b []byte, ttl time.Duration, async bool) {
	c.background(func() {
		failpoint.Hit(ctx, failpoint.BeforeL2Fill, key)
		stored, err := c.l2.fill(ctx, key, token, b, ttl)
		if err == nil && !stored {
			c.st.rejected.add(1) // an invalidation overtook this load, or its lease was lost
		}
	}, async)
}

// background runs f on its own goroutine when async is set, a slot is free
// and Close has not begun; otherwise on the caller's.
func (c *Cache) background(f func(), async bool) {
	if !async {
		f()
		return
	}
	c.fillGate.RLock()
	defer c.fillGate.RUnlock()
	if c.fillsOff {
		f()
		return
	}
	select {
	case c.fillSlots <- struct{}{}:
		c.fills.Add(1)
		c.pending.Add(1)
		go func() {
			defer c.fills.Done()
			defer c.pending.Add(-1)
			defer func() { <-c.fillSlots }()
			f()
		}()
	default:
		f()
	}
}

// fillL1 stores entry b (owned by the callee) in L1 with an expiry no later
// than l2Expiry and within L1TTL (NotFoundTTL for not-found), or within
// DefaultStalenessBound while capL1, and reports whether it did.
func (c *Cache) fillL1(ctx context.Context, key string, tok fillToken, b []byte, l2Expiry int64, kind Kind) bool {
	if len(b) > c.l1.maxEntry {
		c.st.l1Skips.add(1)
		return false
	}
	ttl := c.opts.L1TTL
	if kind == KindNotFound && c.opts.NotFoundTTL < ttl {
		ttl = c.opts.NotFoundTTL
	}
	ttl = c.jitter(ttl)
	if c.capL1() {
		ttl = min(ttl, DefaultStalenessBound)
	}
	exp := c.opts.Clock.Now().Add(ttl).UnixNano()
	if l2Expiry != 0 && l2Expiry < exp {
		exp = l2Expiry
	}
	setExpiry(b, exp)
	if !c.l1.fill(ctx, key, tok, b) {
		c.st.rejected.add(1)
		return false
	}
	return true
}

func (c *Cache) expired(e envelope) bool {
	return e.expired(c.opts.Clock.Now().UnixNano()) && !failpoint.Disabled(failpoint.GuardExpiry)
}

// callLoader runs raw, turning a panic into an error for every waiter.
func callLoader(ctx context.Context, raw rawLoad) (payload []byte, version uint64, found bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return raw(ctx)
}
