package cache

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/internal/failpoint"
)

// The Redis server can lose what it acknowledged without this process
// seeing an error: a restart (from an older snapshot, or empty), a failover
// to a replica that had not received the last writes, a restore. Each is a
// new incarnation of the server, with a new identity (its run_id and
// replication id, from INFO). The cache verifies the identity every
// ServerCheckInterval; a new one moves the namespace to a new epoch (entries
// of older epochs are never served again) and flushes L1, and Redis is read
// only within three intervals of the last verification, so an instance that
// cannot verify (or has not run for a while) stops reading Redis by itself.

// server is what the cache knows of the Redis server.
type server struct {
	mu       sync.Mutex   // serialises checks
	identity string       // written with mu held; "" until the first check
	until    atomic.Int64 // Redis may be read before this time (unix ns, wall clock: a liveness deadline, not an expiry)
	policy   atomic.Pointer[string]
	noInfo   atomic.Bool // INFO is refused: identity cannot be tracked
	warned   atomic.Bool // an evicting policy was logged
	asked    atomic.Bool // CONFIG GET answered (a policy, or a refusal) for the identity in use

	known atomic.Pointer[string] // the adopted identity (stored with mu held), for the connection hook
	// newest is the identity of the server behind the newest connection
	// (nil until one reported it): a check that reads another one ran on
	// an older connection to another server, and vouches for nothing.
	newest atomic.Pointer[string]
	wake   chan struct{} // wakes the watcher: a connection saw another identity

	// vouchMu orders the vouch against the connection hook: gen moves and
	// until is cleared together, and a check vouches only if gen did not
	// move while it ran.
	vouchMu sync.Mutex
	gen     atomic.Uint64 // moves whenever the server may have changed; a read in flight across a move is discarded
}

// errNoInfo is the answer of a server that refuses INFO.
var errNoInfo = errors.New("gormcache: INFO refused")

// identity returns the identity of the server (or servers, for a cluster or
// ring: each primary's) behind rdb.
func identity(ctx context.Context, rdb redis.UniversalClient) (string, error) {
	one := func(ctx context.Context, c *redis.Client) (string, error) {
		s, err := c.Info(ctx, "server", "replication").Result()
		if err != nil {
			var rerr redis.Error
			if errors.As(err, &rerr) && !isOutage(err) {
				return "", errNoInfo
			}
			return "", err
		}
		return infoField(s, "run_id") + "/" + infoField(s, "master_replid"), nil
	}
	var (
		mu  sync.Mutex
		ids []string
	)
	collect := func(ctx context.Context, c *redis.Client) error {
		id, err := one(ctx, c)
		if err == nil {
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		}
		return err
	}
	var err error
	switch c := rdb.(type) {
	case *redis.Client:
		return one(ctx, c)
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, collect)
	case *redis.Ring:
		err = c.ForEachShard(ctx, collect)
	default:
		return "", errNoInfo
	}
	if err != nil {
		return "", err
	}
	sort.Strings(ids)
	return strings.Join(ids, ","), nil
}

// infoField returns the value of field in an INFO reply.
func infoField(info, field string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// serverVouched reports whether Redis may be read now.
func (c *Cache) serverVouched() bool {
	return time.Now().UnixNano() < c.srv.until.Load() || failpoint.Disabled(failpoint.GuardServerVouch)
}

// checkServer verifies the server's identity. On a new one it adopts the
// epoch of the new incarnation and flushes L1 before vouching again.
func (c *Cache) checkServer(ctx context.Context) error {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	gen := c.srv.gen.Load()
	var id string
	err := c.l2.call(ctx, func(ctx context.Context) error {
		var err error
		id, err = identity(ctx, c.l2.rdb)
		if errors.Is(err, errNoInfo) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if id == "" { // INFO refused: run without identity checks (reported)
		if !c.srv.noInfo.Swap(true) {
			c.opts.Logger.Warn("gormcache: Redis refuses INFO; restarts and failovers that lose data cannot be detected", "namespace", c.opts.Namespace)
		}
		c.vouch(gen, maxTime)
		return nil
	}
	if c.mixedServers(id) {
		return errMixedServers
	}
	if id != c.srv.identity && (c.srv.identity == "" || !failpoint.Disabled(failpoint.GuardIncarnation)) {
		c.srv.vouchMu.Lock()
		c.srv.gen.Add(1)
		c.srv.until.Store(0) // nothing from Redis until the new epoch is in use
		c.srv.vouchMu.Unlock()
		gen = c.srv.gen.Load()
		n, err := c.l2.readEpoch(ctx, epochIncarnation, id)
		if err != nil {
			return err
		}
		if c.srv.identity != "" {
			c.st.incarnations.add(1)
			c.opts.Logger.Warn("gormcache: Redis server identity changed (restart, failover or restore): new epoch, L1 flushed",
				"namespace", c.opts.Namespace, "identity", id, "epoch", n)
			c.FlushLocal()
		}
		c.adoptEpoch(n, true)
		c.srv.identity = id
		c.srv.known.Store(&id)
		c.srv.asked.Store(false)
	}
	if !c.srv.asked.Load() { // until the server answers: the first try may time out
		c.checkPolicy(ctx)
	}
	c.vouch(gen, time.Now().Add(3*c.opts.ServerCheckInterval).UnixNano())
	return nil
}

// errMixedServers is a check answered by another server than the one behind
// the client's newest connection.
var errMixedServers = errors.New("gormcache: the client's connections reach more than one Redis server")

// mixedServers reports whether the identity id, read by a check, is not the
// one a new connection reported last: the client's connections then reach
// two servers (a failover client dials the promoted replica while its older
// connections still reach the old primary, which takes writes until it is
// demoted and loses them when it resynchronises). A check answered by the
// old server must not vouch for replies that may come from the new one (or
// the reverse): Redis is not read, and replies in flight are discarded,
// until a check reads the newest server's identity (and adopts it).
func (c *Cache) mixedServers(id string) bool {
	if _, single := c.opts.Redis.(*redis.Client); !single {
		return false // a cluster's or ring's connections reach many servers by design
	}
	n := c.srv.newest.Load()
	if n == nil || strings.Contains(","+id+",", ","+*n+",") || failpoint.Disabled(failpoint.GuardMixedServers) {
		return false
	}
	c.srv.vouchMu.Lock()
	c.srv.gen.Add(1)
	c.srv.until.Store(0)
	c.srv.vouchMu.Unlock()
	return true
}

// vouch lets Redis be read until the wall-clock time until, unless the
// vouch generation moved from gen since the check began (a connection saw
// another server): then the watcher checks again at once.
func (c *Cache) vouch(gen uint64, until int64) {
	c.srv.vouchMu.Lock()
	ok := c.srv.gen.Load() == gen
	if ok {
		c.srv.until.Store(until)
	}
	c.srv.vouchMu.Unlock()
	if !ok {
		c.wakeWatcher()
	}
}

// wakeWatcher makes the watcher check the server now.
func (c *Cache) wakeWatcher() {
	select {
	case c.srv.wake <- struct{}{}:
	default:
	}
}

// l2Gen returns the vouch generation, read before a read of Redis.
func (c *Cache) l2Gen() uint64 { return c.srv.gen.Load() }

// l2Still reports whether a reply to a read of Redis that began at vouch
// generation gen may be used: the server is still vouched for and no new
// connection saw another server since.
func (c *Cache) l2Still(gen uint64) bool {
	return (c.srv.gen.Load() == gen && c.serverVouched()) || failpoint.Disabled(failpoint.GuardConnIdentity)
}

// checkPolicy reads maxmemory-policy (where CONFIG GET is allowed) and
// reports an evicting one once. Eviction is safe (a lost tombstone or lease
// costs a miss) but makes the cache less effective under memory pressure.
func (c *Cache) checkPolicy(ctx context.Context) {
	var policy string
	_ = c.l2.call(ctx, func(ctx context.Context) error {
		m, err := c.l2.rdb.ConfigGet(ctx, "maxmemory-policy").Result()
		if err == nil {
			policy = m["maxmemory-policy"]
		}
		if err != nil && !isOutage(err) {
			c.srv.asked.Store(true)
			return nil // CONFIG refused: unknown
		}
		return err
	})
	if policy == "" {
		return
	}
	c.srv.asked.Store(true)
	c.srv.policy.Store(&policy)
	if policy != "noeviction" && !c.srv.warned.Swap(true) {
		c.opts.Logger.Warn("gormcache: Redis evicts keys under memory pressure (maxmemory-policy "+policy+
			"): evicted tombstones and leases cost misses, never stale rows; noeviction is recommended",
			"namespace", c.opts.Namespace)
	}
}

// watchServer verifies the server's identity every ServerCheckInterval
// until Close.
func (c *Cache) watchServer() {
	defer c.bg.Done()
	t := time.NewTicker(c.opts.ServerCheckInterval)
	defer t.Stop()
	var again <-chan time.Time // a sooner check while the connections reach two servers
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.srv.wake:
		case <-again:
		}
		again = nil
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.RedisTimeout)
		if errors.Is(c.checkServer(ctx), errMixedServers) {
			again = time.After(c.opts.ServerCheckInterval / 10)
		}
		cancel()
	}
}
