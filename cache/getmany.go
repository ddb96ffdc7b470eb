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
	l2keys   []string // nil when Redis is not used for this batch
	epoch    uint64   // the epoch this batch reads and fills under
	observed map[string]uint64
}

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
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		if useL1 {
			if v, err, ok := getL1(ctx, c, k, d, schema, c.opts.Clock.Now().UnixNano()); ok {
				if err == nil {
					out[k] = v
				}
				continue
			}
		}
		b.missing = append(b.missing, k)
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
	readManyL2(ctx, c, b, d, schema, useL1, out)
	if len(b.missing) == 0 {
		return out, nil
	}
	return out, loadMany(ctx, c, b, d, schema, ro, useL1, started, load, out)
}

// readManyL2 serves what it can of b.missing from Redis in one pipeline,
// filling L1 with it, and leaves the rest in b.
func readManyL2[T any, D decoder[T]](ctx context.Context, c *Cache, b *batch, d D, schema uint64, useL1 bool, out map[string]*T) {
	if _, b.epoch = c.l2Read(b.missing[0]); b.epoch == 0 {
		return
	}
	b.l2keys = make([]string, len(b.missing))
	for i, k := range b.missing {
		b.l2keys[i] = c.l2.key(k)
	}
	raws, err := c.l2.getMany(ctx, b.l2keys)
	if err != nil {
		b.l2keys = nil
		return
	}
	failpoint.Hit(ctx, failpoint.AfterL2Read, b.missing[0])
	var rest []int
	for i, raw := range raws {
		if raw == nil || !readOneL2(ctx, c, b, i, raw, d, schema, useL1, out) {
			rest = append(rest, i)
		}
	}
	b.missing, b.l2keys, b.toks = pick(b.missing, rest), pick(b.l2keys, rest), pick(b.toks, rest)
}

// readOneL2 serves key i of b from its Redis bytes raw and reports whether it
// did; otherwise it records the version raw stands for, if any.
func readOneL2[T any, D decoder[T]](ctx context.Context, c *Cache, b *batch, i int, raw []byte, d D, schema uint64, useL1 bool, out map[string]*T) bool {
	k := b.missing[i]
	e, derr := decodeEnvelope(raw)
	switch {
	case derr != nil:
		c.st.decodeErrors.add(1)
		_ = c.l2.deleteIf(ctx, b.l2keys[i], raw)
		return false
	case c.expired(e):
		return false
	case e.kind == KindTombstone, e.epoch < b.epoch:
		b.observed[k] = e.version
		return false
	case e.kind == KindNotFound:
		c.st.nfHits.add(1)
	case e.schema != schema:
		c.st.schemaMismatch.add(1)
		b.observed[k] = e.version
		return false
	default:
		v := new(T)
		if err := d.decode(ctx, e.payload, v); err != nil {
			c.st.decodeErrors.add(1)
			_ = c.l2.deleteIf(ctx, b.l2keys[i], raw)
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
	loaded, err := load(ctx, b.missing)
	c.st.loads.add(1)
	c.st.misses.add(uint64(len(b.missing)))
	if err != nil {
		c.st.loadErrors.add(1)
		return err
	}
	failpoint.Hit(ctx, failpoint.AfterLoad, b.missing[0])

	now := c.opts.Clock.Now()
	n := len(b.missing)
	entries, ttls, kinds, expiries := make([][]byte, n), make([]time.Duration, n), make([]Kind, n), make([]int64, n)
	for i, k := range b.missing {
		e := envelope{kind: KindNotFound, epoch: b.epoch}
		ttl := c.opts.NotFoundTTL
		if lv, ok := loaded[k]; ok {
			e = envelope{kind: KindValue, version: lv.Version, schema: schema, epoch: b.epoch, payload: lv.Payload}
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
			if err := d.decode(ctx, entries[i][envHeaderLen:], v); err != nil {
				return fmt.Errorf("%w: key %q: %w", ErrDecode, k, err)
			}
			out[k] = v
		}
	}
	if now.Sub(started) > c.opts.LoadTimeout {
		return nil // too slow to trust the tombstone window: do not fill
	}
	fillMany(ctx, c, b, useL1, entries, ttls, kinds, expiries)
	return nil
}

// fillMany drops the entries that must not be cached (negative caching off,
// or older than the tombstone observed before loading: known stale), then
// fills Redis in one pipeline and L1 with what Redis accepted.
func fillMany(ctx context.Context, c *Cache, b *batch, useL1 bool, entries [][]byte, ttls []time.Duration, kinds []Kind, expiries []int64) {
	var fill []int
	for i, k := range b.missing {
		switch {
		case ttls[i] <= 0:
		case versionOf(entries[i]) < b.observed[k]:
			c.st.rejected.add(1)
		default:
			fill = append(fill, i)
		}
	}
	accepted := make([]bool, len(b.missing))
	for _, i := range fill {
		accepted[i] = true
	}
	if b.l2keys != nil && len(fill) > 0 {
		acc, err := c.l2.fillMany(ctx, pick(b.l2keys, fill), pick(entries, fill), pick(ttls, fill))
		if err == nil {
			for j, i := range fill {
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
