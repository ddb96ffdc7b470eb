package cache

import (
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
	"runtime/debug"
	"time"

	"github.com/gormcache/gormcache/internal/failpoint"
)

// Versioned is a value with the version its source holds it at.
type Versioned[T any] struct {
	Value   T
	Version uint64
}

// LoadManyFunc loads several keys at once (one query for all of them). It
// returns the found keys with their values and versions; keys absent from
// the map are not found, and are cached as such. Versions follow the rules of
// LoadFunc.
type LoadManyFunc[T any] func(ctx context.Context, keys []string) (map[string]Versioned[T], error)

// GetMany returns the values of keys that exist, keyed by key; keys that do
// not exist are absent from the map. It costs one L1 pass, one pipelined
// Redis round trip for the keys L1 lacks (split per node by cluster clients),
// and one call of load for the keys neither tier has, whose results are then
// filled under the same guards as Get. Duplicate keys are read once. Loaded
// values are returned as decoded from their entries, as on a hit.
//
// Unlike Get, GetMany does not coalesce with concurrent loads of the same
// keys: a batch is loaded by one query whatever else is in flight.
func GetMany[T any](ctx context.Context, c *Cache, keys []string, load LoadManyFunc[T], opts ...ReadOption) (map[string]T, error) {
	if c == nil {
		return nil, ErrNilCache
	}
	if load == nil {
		return nil, ErrNilLoader
	}
	schema, err := c.typeSchema(reflect.TypeFor[T]())
	if err != nil {
		return nil, err
	}
	raw := func(ctx context.Context, keys []string) (map[string]Encoded, error) {
		loaded, err := callLoadMany(ctx, load, keys)
		if err != nil {
			return nil, err
		}
		out := make(map[string]Encoded, len(loaded))
		for k, lv := range loaded {
			p, err := c.opts.Codec.Marshal(lv.Value)
			if err != nil {
				return nil, fmt.Errorf("%w: key %q: %v", ErrEncode, k, err)
			}
			out[k] = Encoded{Payload: p, Version: lv.Version}
		}
		return out, nil
	}
	ptrs, err := getMany(ctx, c, keys, codecDecoder[T]{c.opts.Codec}, schema, raw, opts)
	if err != nil {
		return nil, err
	}
	out := make(map[string]T, len(ptrs))
	for k, p := range ptrs {
		out[k] = *p
	}
	return out, nil
}

// Encoded is a loaded entry payload and the version of the value it holds,
// for GetManyEncoded.
type Encoded struct {
	Payload []byte
	Version uint64
}

// GetManyEncoded is GetMany for a loader that encodes its own payloads
// (see Format), each decoded by f on a hit and on a miss alike. Keys absent
// from the loader's map are not found, and are cached as such.
func GetManyEncoded[T any](ctx context.Context, c *Cache, keys []string, f *Format[T], load func(ctx context.Context, keys []string) (map[string]Encoded, error), opts ...ReadOption) (map[string]*T, error) {
	if c == nil {
		return nil, ErrNilCache
	}
	if load == nil {
		return nil, ErrNilLoader
	}
	if f == nil || f.Decode == nil || f.Fingerprint == 0 {
		return nil, fmt.Errorf("%w: nil Format, Decode or zero Fingerprint", ErrInvalidFormat)
	}
	return getMany(ctx, c, keys, formatDecoder[T]{f}, f.Fingerprint, func(ctx context.Context, keys []string) (m map[string]Encoded, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = &PanicError{Value: r, Stack: debug.Stack()}
			}
		}()
		return load(ctx, keys)
	}, opts)
}

// batch is the state of one GetMany: the keys still missing and, for each,
// its L1 fill token and Redis key.
type batch struct {
	missing  []string
	toks     []fillToken
	leases   []string // lease token per missing key ("" for none); nil when Redis is not used
	epoch    uint64   // the epoch this batch reads and fills under
	observed map[string]uint64
	orig     map[string]string // stored key → the caller's, for hashed keys only
}

// origOf is the caller's key of stored key sk.
func (b *batch) origOf(sk string) string {
	if o, ok := b.orig[sk]; ok {
		return o
	}
	return sk
}

// hashedOrig is what entries of stored key sk carry: the caller's key if sk
// is its hash.
func (b *batch) hashedOrig(sk string) string { return b.orig[sk] }

func getMany[T any, D decoder[T]](ctx context.Context, c *Cache, keys []string, d D, schema uint64, load func(context.Context, []string) (map[string]Encoded, error), opts []ReadOption) (map[string]*T, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ro := applyReadOptions(opts)
	out := make(map[string]*T, len(keys))
	b := &batch{missing: make([]string, 0, len(keys)), observed: map[string]uint64{}}
	seen := make(map[string]struct{}, len(keys))
	useL1 := c.useL1(ro.skipL1, c.opts.Clock.Now().UnixNano())
	for _, key := range keys {
		if err := checkKey(key); err != nil {
			return nil, fmt.Errorf("key %q: %w", key, err)
		}
		k, orig := storeKey(key)
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		if orig != "" {
			if b.orig == nil {
				b.orig = map[string]string{}
			}
			b.orig[k] = orig
		}
		if useL1 {
			if v, err, ok := getL1(ctx, c, k, orig, d, schema, c.opts.Clock.Now().UnixNano()); ok {
				if err == nil {
					out[k] = v
				}
				continue
			}
		}
		b.missing = append(b.missing, k)
	}
	defer unhash(b, out)
	if ro.served != nil {
		ro.served.L1 += len(seen) - len(b.missing)
	}
	if len(b.missing) == 0 {
		return out, nil
	}
	started := c.opts.Clock.Now()
	b.toks = make([]fillToken, len(b.missing))
	if useL1 {
		for i, k := range b.missing {
			b.toks[i] = c.l1.begin(k)
		}
	}
	inL2 := len(b.missing)
	readManyL2(ctx, c, b, d, schema, useL1, out)
	if ro.served != nil {
		ro.served.L2 += inL2 - len(b.missing)
		ro.served.Loaded += len(b.missing)
	}
	if len(b.missing) == 0 {
		return out, nil
	}
	return out, loadMany(ctx, c, b, d, schema, ro, useL1, started, load, out)
}

// readManyL2 serves what it can of b.missing from Redis, filling L1 with
// it, takes the leases of the rest and leaves the rest in b. While most of
// the cache's Redis reads hit (l2Warm) it reads with one pipeline of plain
// GETs, then takes the leases of what missed (one more round trip, only
// then); otherwise it reads with the read script at once, and asks again
// for the leases of entries it could not serve. A batch does not wait for
// other loads' leases: it loads those keys itself, without filling them.
func readManyL2[T any, D decoder[T]](ctx context.Context, c *Cache, b *batch, d D, schema uint64, useL1 bool, out map[string]*T) {
	ok := false
	gen := c.l2Gen()
	if ok, b.epoch = c.l2Read(b.missing[0]); !ok {
		return
	}
	warm := c.l2Warm()
	if warm {
		raws, err := c.l2.getMany(ctx, b.missing)
		if err != nil || !c.l2Still(gen) {
			return
		}
		failpoint.Hit(ctx, failpoint.AfterL2Read, b.missing[0])
		var rest []int
		for i, raw := range raws {
			hit := raw != nil && readOneL2(ctx, c, b, i, raw, true, d, schema, useL1, out)
			c.l2Seen(hit)
			if !hit {
				rest = append(rest, i)
			}
		}
		b.missing, b.toks = pick(b.missing, rest), pick(b.toks, rest)
	}
	if len(b.missing) > 0 {
		b.leases = leaseManyL2(ctx, c, b, d, schema, useL1, out, gen, warm)
	}
}

// leaseManyL2 reads b.missing with the read script and returns the lease
// tokens it obtained (one per key left in b.missing; "" where none). With
// miss set every entry there is known unusable: the script takes the
// leases whatever is there. Otherwise it serves the hits, and asks again,
// with miss set, for the entries it could not serve.
func leaseManyL2[T any, D decoder[T]](ctx context.Context, c *Cache, b *batch, d D, schema uint64, useL1 bool, out map[string]*T, gen uint64, miss bool) []string {
	tokens := make([]string, len(b.missing))
	for i := range tokens {
		tokens[i] = c.newToken()
	}
	sts, raws, err := c.l2.readMany(ctx, b.missing, c.leaseTTL, tokens, miss)
	if err != nil || !c.l2Still(gen) {
		return make([]string, len(b.missing)) // no leases: load without filling Redis
	}
	if !miss {
		failpoint.Hit(ctx, failpoint.AfterL2Read, b.missing[0])
	}
	var rest, rejected []int
	for i, raw := range raws {
		switch sts[i] {
		case readHit:
			if readOneL2(ctx, c, b, i, raw, true, d, schema, useL1, out) {
				c.l2Seen(true)
				continue
			}
			rejected = append(rejected, len(rest))
			tokens[i] = ""
		case readLease:
		case readWrong:
			c.st.decodeErrors.add(1)
			tokens[i] = ""
		default:
			tokens[i] = ""
		}
		if !miss {
			c.l2Seen(false)
		}
		if raw != nil && sts[i] != readHit {
			readOneL2(ctx, c, b, i, raw, false, d, schema, useL1, out) // records what a fill must not be older than
		}
		rest = append(rest, i)
	}
	b.missing, b.toks, tokens = pick(b.missing, rest), pick(b.toks, rest), pick(tokens, rest)
	if len(rejected) > 0 && !miss { // old epoch, other schema, expired: ask for their leases
		sub := &batch{missing: pick(b.missing, rejected), toks: pick(b.toks, rejected), observed: b.observed, epoch: b.epoch, orig: b.orig}
		again := leaseManyL2(ctx, c, sub, d, schema, useL1, out, gen, true)
		for j, i := range rejected {
			tokens[i] = again[j]
		}
	}
	return tokens
}

// readOneL2 serves key i of b from its Redis bytes raw if they are a hit
// and reports whether it did; otherwise it records the version raw stands
// for, if any.
func readOneL2[T any, D decoder[T]](ctx context.Context, c *Cache, b *batch, i int, raw []byte, hit bool, d D, schema uint64, useL1 bool, out map[string]*T) bool {
	k := b.missing[i]
	var l l2Lookup
	if !c.inspectL2(ctx, k, b.hashedOrig(k), schema, b.epoch, raw, hit, &l) {
		if l.observed != 0 {
			b.observed[k] = l.observed
		}
		return false
	}
	e, _ := decodeEnvelope(raw)
	if e.kind == KindNotFound {
		c.st.nfHits.add(1)
	} else {
		v := new(T)
		if err := d.decode(ctx, e.payload, v); err != nil {
			c.st.decodeErrors.add(1)
			_ = c.l2.deleteIf(ctx, k, raw)
			return false
		}
		out[k] = v
	}
	c.st.l2Hits.add(1)
	if useL1 { // fillL1 rewrites only the header; decoded strings alias the payload
		c.fillL1(ctx, k, b.toks[i], raw, e.expiry, e.kind)
	}
	return true
}

// loadMany loads what neither tier had in one loader call, decodes it for
// the caller and fills both tiers with it (the guarded fills of Get).
func loadMany[T any, D decoder[T]](ctx context.Context, c *Cache, b *batch, d D, schema uint64, ro readOptions, useL1 bool, started time.Time, load func(context.Context, []string) (map[string]Encoded, error), out map[string]*T) error {
	failpoint.Hit(ctx, failpoint.InLoader, b.missing[0])
	callerKeys := b.missing
	if b.orig != nil {
		callerKeys = make([]string, len(b.missing))
		for i, k := range b.missing {
			callerKeys[i] = b.origOf(k)
		}
	}
	loaded, err := load(ctx, callerKeys)
	c.st.loads.add(1)
	c.st.misses.add(uint64(len(b.missing)))
	if err != nil {
		c.st.loadErrors.add(1)
		releaseAll(ctx, c, b)
		return err
	}
	failpoint.Hit(ctx, failpoint.AfterLoad, b.missing[0])

	now := c.opts.Clock.Now()
	n := len(b.missing)
	entries, ttls, kinds, expiries := make([][]byte, n), make([]time.Duration, n), make([]Kind, n), make([]int64, n)
	for i, k := range b.missing {
		e := envelope{kind: KindNotFound, epoch: b.epoch}
		ttl := c.opts.NotFoundTTL
		if lv, ok := loaded[callerKeys[i]]; ok {
			e = envelope{kind: KindValue, version: lv.Version, schema: schema, epoch: b.epoch, key: b.hashedOrig(k), payload: lv.Payload}
			if e.version == 0 {
				e.version = b.observed[k]
			}
			ttl = c.opts.L2TTL
			if ro.ttl > 0 {
				ttl = ro.ttl
			}
		}
		ttls[i] = c.jitter(ttl)
		if ttls[i] > 0 {
			e.expiry = now.Add(ttls[i]).UnixNano()
		}
		kinds[i], expiries[i] = e.kind, e.expiry
		entries[i] = appendEnvelope(nil, e)
		if e.kind == KindValue {
			v := new(T)
			if err := d.decode(ctx, e.payload, v); err != nil {
				releaseAll(ctx, c, b)
				return fmt.Errorf("%w: key %q: %w", ErrDecode, k, err)
			}
			out[k] = v
		}
	}
	if now.Sub(started) > c.opts.LoadTimeout {
		releaseAll(ctx, c, b)
		return nil // too slow to trust the tombstone window: do not fill
	}
	fillMany(ctx, c, b, useL1, entries, ttls, kinds, expiries)
	return nil
}

// unhash rekeys out by the caller's keys.
func unhash[T any](b *batch, out map[string]*T) {
	for sk, orig := range b.orig {
		if v, ok := out[sk]; ok {
			delete(out, sk)
			out[orig] = v
		}
	}
}

// releaseAll gives up the leases of a batch that will not fill.
func releaseAll(ctx context.Context, c *Cache, b *batch) {
	for i, tok := range b.leases {
		c.releaseLease(ctx, b.missing[i], tok)
	}
}

// fillMany drops the entries that must not be cached (negative caching off,
// or older than the tombstone observed before loading: known stale), then
// fills Redis in one pipeline with those whose lease this batch holds, and
// L1 with what Redis did not refuse.
func fillMany(ctx context.Context, c *Cache, b *batch, useL1 bool, entries [][]byte, ttls []time.Duration, kinds []Kind, expiries []int64) {
	var fill, toRedis, release []int
	for i, k := range b.missing {
		switch {
		case ttls[i] <= 0:
		case versionOf(entries[i]) < b.observed[k]:
			c.st.rejected.add(1)
		default:
			fill = append(fill, i)
			if b.leases != nil && b.leases[i] != "" {
				toRedis = append(toRedis, i)
			}
			continue
		}
		if b.leases != nil && b.leases[i] != "" {
			release = append(release, i)
		}
	}
	for _, i := range release {
		c.releaseLease(ctx, b.missing[i], b.leases[i])
	}
	accepted := make([]bool, len(b.missing))
	for _, i := range fill {
		accepted[i] = true
	}
	if len(toRedis) > 0 {
		acc, err := c.l2.fillMany(ctx, pick(b.missing, toRedis), pick(b.leases, toRedis), pick(entries, toRedis), pick(ttls, toRedis))
		if err == nil {
			for j, i := range toRedis {
				if !acc[j] {
					accepted[i] = false
					c.st.rejected.add(1)
				}
			}
		}
	}
	if useL1 {
		for _, i := range fill {
			if accepted[i] { // fillL1 rewrites only the header; decoded strings alias the payload
				c.fillL1(ctx, b.missing[i], b.toks[i], entries[i], expiries[i], kinds[i])
			}
		}
	}
}

// versionOf reads the version of an encoded envelope.
func versionOf(b []byte) uint64 { return binary.BigEndian.Uint64(b[offVersion:]) }

// pick returns the elements of s at the indexes idx.
func pick[E any](s []E, idx []int) []E {
	out := make([]E, len(idx))
	for j, i := range idx {
		out[j] = s[i]
	}
	return out
}

// callLoadMany runs load, turning a panic into an error.
func callLoadMany[T any](ctx context.Context, load LoadManyFunc[T], keys []string) (m map[string]Versioned[T], err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return load(ctx, keys)
}
