package cache

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/internal/failpoint"
)

// A restart (from an older snapshot, or empty) or a failover always breaks
// the client's connections: every command after it runs on a connection
// dialled afterwards. The cache hooks the client's OnConnect and reads the
// identity of the server on each new connection, before any command of the
// caller is sent on it. A connection to an identity the cache has not
// adopted withdraws the server's vouch at once and moves the vouch
// generation, so that a read whose reply arrives on that connection is
// discarded (a miss) even if it began while the server was vouched; the
// watcher is woken to adopt the new incarnation (a new epoch). The periodic
// check stays for what does not break connections (a primary demoted to a
// replica that resynchronised from a new primary).

// connVerifier is the OnConnect hook of one go-redis options value, shared by
// every cache built on a client with those options.
type connVerifier struct {
	mu     sync.Mutex // guards caches
	caches []*Cache
}

// verifiers maps the *redis.Options or *redis.ClusterOptions of a client to
// its verifier; verifiersMu guards it and the installation of hooks.
var (
	verifiersMu sync.Mutex
	verifiers   = map[any]*connVerifier{}
)

// hookConnections registers c with the verifier of its client's options,
// installing the hook on the first registration. Clients other than
// *redis.Client (including failover clients) and *redis.ClusterClient keep
// only the periodic check. The hook is installed on the options value the
// client holds: create the client and pass it to New before it dials in
// other goroutines.
func (c *Cache) hookConnections() {
	var key any
	var install func(func(context.Context, *redis.Conn) error)
	switch r := c.opts.Redis.(type) {
	case *redis.Client:
		o := r.Options()
		key, install = o, func(f func(context.Context, *redis.Conn) error) { o.OnConnect = chain(o.OnConnect, f) }
	case *redis.ClusterClient:
		o := r.Options()
		key, install = o, func(f func(context.Context, *redis.Conn) error) { o.OnConnect = chain(o.OnConnect, f) }
	default:
		return
	}
	verifiersMu.Lock()
	defer verifiersMu.Unlock()
	v := verifiers[key]
	if v == nil {
		v = &connVerifier{}
		verifiers[key] = v
		install(v.onConnect)
	}
	v.mu.Lock()
	v.caches = append(v.caches, c)
	v.mu.Unlock()
	c.unhook = func() {
		v.mu.Lock()
		v.caches = slices.DeleteFunc(v.caches, func(x *Cache) bool { return x == c })
		v.mu.Unlock()
	}
}

// chain runs prev (the user's hook), then f.
func chain(prev, f func(context.Context, *redis.Conn) error) func(context.Context, *redis.Conn) error {
	if prev == nil {
		return f
	}
	return func(ctx context.Context, cn *redis.Conn) error {
		if err := prev(ctx, cn); err != nil {
			return err
		}
		return f(ctx, cn)
	}
}

// onConnect reads the identity of the server behind a new connection and
// tells every registered cache. It never fails the connection: a cache that
// sees a new identity stops reading Redis until its watcher adopted it, and
// the watcher needs a working connection for that.
func (v *connVerifier) onConnect(ctx context.Context, cn *redis.Conn) error {
	v.mu.Lock()
	caches := slices.Clone(v.caches)
	v.mu.Unlock()
	if len(caches) == 0 || failpoint.Disabled(failpoint.GuardConnIdentity) {
		return nil
	}
	s, err := cn.Info(ctx, "server", "replication").Result()
	id := ""
	if err == nil {
		id = infoField(s, "run_id") + "/" + infoField(s, "master_replid")
	}
	for _, c := range caches {
		c.connIdentity(id, err)
	}
	return nil
}

// connIdentity handles the identity id of the server behind a new
// connection (or the error reading it).
func (c *Cache) connIdentity(id string, err error) {
	if err == nil {
		c.srv.newest.Store(&id)
	}
	known := c.srv.known.Load()
	if known == nil || c.srv.noInfo.Load() || c.closed.Load() {
		return // nothing adopted yet (the first check adopts), or INFO refused
	}
	if err == nil && strings.Contains(","+*known+",", ","+id+",") {
		return
	}
	// A new server, or one that cannot say which it is: do not read Redis
	// until the watcher has checked it, and discard reads in flight.
	c.srv.vouchMu.Lock()
	c.srv.gen.Add(1)
	c.srv.until.Store(0)
	c.srv.vouchMu.Unlock()
	c.wakeWatcher()
}
