package cache

import (
	"context"
	"fmt"
)

// genSchema marks generation entries: an entry of another kind under the
// same key is a miss.
const genSchema uint64 = 0x67656e3100000001

// Generation returns the generation of key: the version Redis records for
// its last invalidation (the tombstone's stamp), cached in both tiers like
// an entry, so that reading it is an L1 hit until the next invalidation of
// key evicts it here and on every instance. 0 means no invalidation is
// known (none yet, or Redis could not be read).
//
// A generation key is invalidated with every write to what it stands for
// (the plugin's per-table generation for cached queries): an entry keyed by
// the generation read before its load is never read again after a write.
func (c *Cache) Generation(ctx context.Context, key string) (uint64, error) {
	if err := c.check(key); err != nil {
		return 0, err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	sk, orig := storeKey(key)
	now := c.opts.Clock.Now().UnixNano()
	if c.useL1(false, now) {
		if b, ok := c.l1.get(sk); ok {
			if e, err := decodeEnvelope(b); err == nil && !c.expired(e) && e.kind == KindValue && e.schema == genSchema && e.key == orig {
				c.st.l1Hits.add(1)
				return e.version, nil
			}
		}
	}
	raw := func(context.Context) ([]byte, uint64, bool, error) {
		return []byte{}, 0, true, nil // version 0: the entry takes the tombstone's version
	}
	r, err := c.loadShared(ctx, sk, orig, genSchema, readOptions{}, raw, c.vouched(now))
	if err != nil {
		return 0, err
	}
	e, err := decodeEnvelope(r.b)
	if err != nil || e.kind != KindValue || e.schema != genSchema {
		return 0, fmt.Errorf("%w: key %q holds another kind of entry", ErrDecode, key)
	}
	return e.version, nil
}
