package cache

import (
	"context"
	"errors"
)

// TierEntry describes what one tier holds for a key.
type TierEntry struct {
	Present bool   // an entry in this tier's format is stored
	Kind    Kind   // value, tombstone or not-found
	Version uint64 // the row version it carries
	Epoch   uint64 // the epoch a value or not-found was loaded under
	Expired bool   // past its expiry (a miss for readers)
	Stale   bool   // L2 only: from an epoch before the one in use (a miss for readers)
	Corrupt bool   // bytes that are not a valid entry
}

// Peek reports what L1 and Redis hold for key, without loading, filling,
// counting or changing anything. It is for tests, debugging and consistency
// checkers. With no L1 or no Redis the corresponding entry is not Present.
func (c *Cache) Peek(ctx context.Context, key string) (l1, l2 TierEntry, err error) {
	if err := c.check(key); err != nil {
		return l1, l2, err
	}
	key, _ = storeKey(key)
	now := c.opts.Clock.Now().UnixNano()
	describe := func(b []byte) TierEntry {
		e, err := decodeEnvelope(b)
		if err != nil {
			return TierEntry{Present: true, Corrupt: true}
		}
		return TierEntry{Present: true, Kind: e.kind, Version: e.version, Epoch: e.epoch, Expired: e.expired(now)}
	}
	if c.l1 != nil {
		if b, ok := c.l1.get(key); ok {
			l1 = describe(b)
		}
	}
	if c.l2 != nil {
		var b []byte
		err = c.l2.call(ctx, func(ctx context.Context) error {
			var err error
			b, err = c.l2.rdb.Get(ctx, c.l2.key(key)).Bytes()
			return err
		})
		switch {
		case err == nil:
			l2 = describe(b)
			l2.Stale = l2.Kind != KindTombstone && !l2.Corrupt && l2.Epoch < c.l2.epoch.Load()
		case isNil(err):
			err = nil
		}
	}
	return l1, l2, err
}

func isNil(err error) bool { return err != nil && errors.Is(err, redisNil) }
