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
// filled under the same guards as Get. Duplicate keys are read once.
//
// Unlike Get, GetMany does not coalesce with concurrent loads of the same
// keys: a batch is loaded by one query whatever else is in flight.
func GetMany[T any](ctx context.Context, c *Cache, keys []string, load LoadManyFunc[T], opts ...ReadOption) (map[string]T, error) {
	if c == nil {
		return nil, ErrNilCache
	}
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if load == nil {
		return nil, ErrNilLoader
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ro := applyReadOptions(opts)
	out := make(map[string]T, len(keys))
	seen := make(map[string]struct{}, len(keys))
	missing := make([]string, 0, len(keys))
	schema := c.schemaFor(reflect.TypeFor[T]())
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
			if v, err, ok := getL1[T](c, k, schema, c.opts.Clock.Now().UnixNano()); ok {
				if err == nil {
					out[k] = *v
				}
				continue
			}
		}
		missing = append(missing, k)
	}
	if len(missing) == 0 {
		return out, nil
	}

	lctx := ctx
	started := c.opts.Clock.Now()
	var epoch uint64 // the epoch this batch reads and fills under
	toks := make([]fillToken, len(missing))
	if useL1 {
		for i, k := range missing {
			toks[i] = c.l1.begin(k)
		}
	}

	// L2: one pipeline.
	observed := make(map[string]uint64)
	var l2keys []string
	if _, epoch = c.l2Read(missing[0]); epoch != 0 {
		l2keys = make([]string, len(missing))
		for i, k := range missing {
			l2keys[i] = c.l2.key(k)
		}
		if raws, err := c.l2.getMany(lctx, l2keys); err != nil {
			l2keys = nil
		} else {
			failpoint.Hit(lctx, failpoint.AfterL2Read, missing[0])
			var rest []int
			for i, b := range raws {
				if b == nil {
					rest = append(rest, i)
					continue
				}
				e, derr := decodeEnvelope(b)
				hit := false
				switch {
				case derr != nil:
					c.st.decodeErrors.add(1)
					_ = c.l2.deleteIf(lctx, l2keys[i], b)
				case c.expired(e):
				case e.kind == KindTombstone, e.epoch < epoch:
					observed[missing[i]] = e.version
				case e.kind == KindNotFound:
					hit = true
					c.st.nfHits.add(1)
				case e.schema != schema:
					c.st.schemaMismatch.add(1)
					observed[missing[i]] = e.version
				default:
					var v T
					if err := c.opts.Codec.Unmarshal(e.payload, &v); err != nil {
						c.st.decodeErrors.add(1)
						_ = c.l2.deleteIf(lctx, l2keys[i], b)
						break
					}
					hit = true
					out[missing[i]] = v
				}
				if !hit {
					rest = append(rest, i)
					continue
				}
				c.st.l2Hits.add(1)
				if useL1 {
					c.fillL1(lctx, missing[i], toks[i], b, e.expiry, e.kind)
				}
			}
			missing, l2keys, toks = pick(missing, rest), pick(l2keys, rest), pick(toks, rest)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}

	// Loader: one call for the rest.
	failpoint.Hit(lctx, failpoint.InLoader, missing[0])
	loaded, err := callLoadMany(lctx, load, missing)
	c.st.loads.add(1)
	c.st.misses.add(uint64(len(missing)))
	if err != nil {
		c.st.loadErrors.add(1)
		return nil, err
	}
	failpoint.Hit(lctx, failpoint.AfterLoad, missing[0])

	now := c.opts.Clock.Now()
	entries := make([][]byte, len(missing))
	ttls := make([]time.Duration, len(missing))
	kinds := make([]Kind, len(missing))
	expiries := make([]int64, len(missing))
	for i, k := range missing {
		e := envelope{kind: KindNotFound, epoch: epoch}
		ttl := c.opts.NotFoundTTL
		if lv, ok := loaded[k]; ok {
			out[k] = lv.Value
			p, err := c.opts.Codec.Marshal(lv.Value)
			if err != nil {
				return nil, fmt.Errorf("%w: key %q: %v", ErrEncode, k, err)
			}
			e = envelope{kind: KindValue, version: lv.Version, schema: schema, epoch: epoch, payload: p}
			if e.version == 0 {
				e.version = observed[k]
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
	}
	if now.Sub(started) > c.opts.LoadTimeout {
		return out, nil // too slow to trust the tombstone window: do not fill
	}

	// Fills: drop the entries that must not be cached (negative caching
	// off, or older than the tombstone observed before loading: known
	// stale), then one pipeline.
	var fill []int
	for i, k := range missing {
		switch {
		case ttls[i] <= 0:
		case versionOf(entries[i]) < observed[k]:
			c.st.rejected.add(1)
		default:
			fill = append(fill, i)
		}
	}
	accepted := make([]bool, len(missing))
	for _, i := range fill {
		accepted[i] = true
	}
	if l2keys != nil && len(fill) > 0 {
		acc, err := c.l2.fillMany(lctx, pick(l2keys, fill), pick(entries, fill), pick(ttls, fill))
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
			if accepted[i] {
				c.fillL1(lctx, missing[i], toks[i], entries[i], expiries[i], kinds[i])
			}
		}
	}
	return out, nil
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
