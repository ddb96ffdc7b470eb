package cache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"

	"github.com/gormcache/gormcache/internal/failpoint"
)

// l1Stripes is the number of per-key ordering stripes (a power of two).
const l1Stripes = 1024

// l1 is the in-process tier: bigcache (itself sharded) plus the ordering
// state that keeps a fill which started before an invalidation from landing
// after it.
//
// Ordering works by generations, not by stored versions: every invalidation of
// a key bumps its stripe's generation (under the stripe lock), and every flush
// bumps the global flush generation. A load captures both before it reads L2
// or calls the loader ([l1.begin]) and its fill is dropped if either moved
// ([l1.fill]). This survives bigcache evicting entries, which a tombstone kept
// in bigcache would not.
type l1 struct {
	bc       *bigcache.BigCache
	maxEntry int
	stripes  [l1Stripes]stripe
	flushGen atomic.Uint64 // bumped by flush before bigcache.Reset
}

type stripe struct {
	mu  sync.Mutex    // orders fills and invalidations of the stripe's keys
	gen atomic.Uint64 // written with mu held; read without it by begin
	_   [48]byte      // keep stripes on separate cache lines
}

// fillToken is what a load captured before reading its sources.
type fillToken struct {
	stripe   *stripe
	gen      uint64
	flushGen uint64
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

func newL1(o Options) (*l1, error) {
	life := o.L1TTL
	if o.NotFoundTTL > life {
		life = o.NotFoundTTL
	}
	clean := life / 2
	if clean < time.Second {
		clean = time.Second
	}
	bc, err := bigcache.New(context.Background(), bigcache.Config{
		Shards:             o.L1Shards,
		LifeWindow:         life,
		CleanWindow:        clean,
		MaxEntriesInWindow: 1024 * o.L1Shards,
		MaxEntrySize:       512,
		HardMaxCacheSize:   l1MiB(o.L1MaxBytes),
		Logger:             nopLogger{},
	})
	if err != nil {
		return nil, invalidOption("L1: %v", err)
	}
	return &l1{bc: bc, maxEntry: o.L1MaxEntryBytes}, nil
}

func (l *l1) stripeOf(key string) *stripe {
	return &l.stripes[fnv64a(key)&(l1Stripes-1)]
}

// get returns a copy of the bytes stored for key.
func (l *l1) get(key string) ([]byte, bool) {
	b, err := l.bc.Get(key)
	return b, err == nil
}

// begin captures the ordering state for a load of key.
func (l *l1) begin(key string) fillToken {
	s := l.stripeOf(key)
	return fillToken{stripe: s, gen: s.gen.Load(), flushGen: l.flushGen.Load()}
}

// fill stores b for key unless an invalidation or flush happened since t was
// taken, or b is larger than the entry limit. It reports whether b was stored.
func (l *l1) fill(ctx context.Context, key string, t fillToken, b []byte) bool {
	if len(b) > l.maxEntry {
		return false
	}
	failpoint.Hit(ctx, failpoint.BeforeL1Fill, key)
	guard := !failpoint.Disabled(failpoint.GuardL1Order)
	t.stripe.mu.Lock()
	defer t.stripe.mu.Unlock()
	if guard && (t.stripe.gen.Load() != t.gen || l.flushGen.Load() != t.flushGen) {
		return false
	}
	if l.bc.Set(key, b) != nil {
		return false
	}
	// A flush may have run between the check and Set: its Reset may have
	// preceded our Set. Re-check and undo (flush bumps flushGen first).
	if guard && l.flushGen.Load() != t.flushGen {
		l.bc.Delete(key)
		return false
	}
	return true
}

// evict removes key's entry unless it already holds version v or newer, and
// orders the removal after every load of key that began before it.
func (l *l1) evict(key string, v uint64) {
	s := l.stripeOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen.Add(1)
	if b, err := l.bc.Get(key); err == nil {
		if e, err := decodeEnvelope(b); err == nil && e.kind != KindTombstone && e.version >= v && v != 0 {
			return // already at or past the invalidated version
		}
		l.bc.Delete(key)
	}
}

// remove deletes key's entry without ordering (used for corrupt bytes).
func (l *l1) remove(key string) { l.bc.Delete(key) }

// flush empties the tier and voids every load in progress.
func (l *l1) flush() {
	l.flushGen.Add(1)
	l.bc.Reset()
}

func (l *l1) len() int { return l.bc.Len() }

func (l *l1) close() error {
	if err := l.bc.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// fnv64a is FNV-1a over a string without allocating.
func fnv64a(s string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}
