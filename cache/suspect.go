package cache

import (
	"sync"
	"sync/atomic"

	"github.com/gormcache/gormcache/internal/failpoint"
)

// maxSuspects bounds the keys held individually; beyond it the whole
// namespace is suspect.
const maxSuspects = 10000

// suspects are keys whose latest invalidation another instance could not
// confirm in Redis (a timeout, a refused command): Redis may still hold
// entries that invalidation should have retired, so they are not read from
// Redis until the namespace epoch changes (the writer bumps it once Redis
// answers) or L2TTL has passed (every entry written before has expired).
type suspects struct {
	mu   sync.Mutex       // protects keys
	keys map[string]int64 // key → until (unix ns)
	n    atomic.Int64     // len(keys), read without mu
	all  atomic.Int64     // the whole namespace is suspect until then
}

// has reports whether key is suspect at now.
func (s *suspects) has(key string, now int64) bool {
	if now < s.all.Load() {
		return true
	}
	if s.n.Load() == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.keys[key]
	if ok && now >= until {
		delete(s.keys, key)
		s.n.Store(int64(len(s.keys)))
		return false
	}
	return ok
}

func (s *suspects) add(keys []string, until int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[string]int64{}
	}
	for _, k := range keys {
		s.keys[k] = until
	}
	if len(s.keys) > maxSuspects {
		clear(s.keys)
		s.all.Store(until)
	}
	s.n.Store(int64(len(s.keys)))
}

func (s *suspects) remove(keys []string) {
	if s.n.Load() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.keys, k)
	}
	s.n.Store(int64(len(s.keys)))
}

func (s *suspects) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.keys)
	s.n.Store(0)
	s.all.Store(0)
}

// SuspectRemote tells the cache that another instance committed writes to
// keys but could not confirm their invalidation in Redis: their entries
// there may be stale. They are evicted from L1 and not read from Redis until
// the namespace epoch changes or L2TTL has passed. Invalidation sources (the
// bus) call it for events marked unconfirmed.
func (c *Cache) SuspectRemote(keys []string) {
	if c == nil || len(keys) == 0 {
		return
	}
	for _, k := range keys {
		c.EvictLocal(k, 0)
	}
	if failpoint.Disabled(failpoint.GuardSuspect) {
		return
	}
	c.st.suspects.add(uint64(len(keys)))
	c.sus.add(keys, c.opts.Clock.Now().Add(c.opts.L2TTL).UnixNano())
	select { // the writer may have bumped the epoch already
	case c.kick <- struct{}{}:
	default:
	}
}
