// Package failpoint lets tests force interleavings and switch off mitigations
// inside the library, so that every race the library closes has a
// deterministic test that fails when its guard is removed.
//
// Production code calls [Hit] at named points and asks [Disabled] whether a
// named guard is switched off. Both cost one atomic load when no failpoint is
// set, which is always the case outside tests.
//
// Failpoints are process-global. A hook is installed for one cache key, so
// parallel tests that use distinct keys do not see each other's hooks; guards
// switched off with [Disable] affect every key and are for sequential tests.
package failpoint

import (
	"context"
	"sync"
	"sync/atomic"
)

// Hook runs at a failpoint. It receives the caller's context and the cache key
// the operation is about, so that a test can act on its own key only.
type Hook func(ctx context.Context, key string)

// Names of the failpoints passed by the library.
const (
	// AfterL2Read runs in a load after the L2 read and before anything is
	// filled from it.
	AfterL2Read = "cache/after-l2-read"
	// AfterLoad runs after the loader returned and before the fills.
	AfterLoad = "cache/after-load"
	// BeforeL1Fill runs before a load's L1 fill.
	BeforeL1Fill = "cache/before-l1-fill"
	// BeforeL2Fill runs before a load's Redis fill (which runs in the
	// background after the load returns).
	BeforeL2Fill = "cache/before-l2-fill"
	// InLoader runs inside a flight just before the loader is called.
	InLoader = "cache/in-loader"
	// Abandoned runs when a flight has run for LoadTimeout and new callers
	// stop joining it.
	Abandoned = "cache/abandoned"
	// BeforeCommit runs in repository.Transaction after fn returned nil and
	// before COMMIT, and in the plugin's tracked transactions just before
	// COMMIT; its key is "".
	BeforeCommit = "repository/before-commit"
	// AfterCommitBeforeInvalidate runs once a write has committed (or
	// returned, for a write outside a transaction) and before its
	// invalidations are applied: in a repository's write outside a
	// transaction, in repository.Transaction after COMMIT, in the plugin's
	// tracked transactions after COMMIT and for its writes outside a
	// transaction. A process that dies here leaves the committed write to
	// the change feed; its key is "".
	AfterCommitBeforeInvalidate = "write/after-commit-before-invalidate"
	// BeforeApply runs in a bus's receive loop before it applies an event
	// from another instance; its key is the receiving instance's id.
	BeforeApply = "invalidation/before-apply"
	// AfterEpochRead runs in a cache after it read (or bumped) the
	// namespace epoch in Redis and before it adopts the answer; its key is
	// "<namespace>/<mode>" with mode "read", "bump" or "incarnation".
	AfterEpochRead = "cache/after-epoch-read"
	// BeforeEpochFlush runs when a cache has switched to a new epoch and
	// before it flushes L1; its key is the namespace.
	BeforeEpochFlush = "cache/before-epoch-flush"
	// Waiting runs once a caller with a cancellable context has started or
	// joined a flight, before it waits for the result.
	Waiting = "cache/waiting"
)

// Names of the guards that tests may switch off with [Disable].
const (
	// GuardL2Fill is the version check of the L2 fill script: a fill older
	// than the stored entry (a versioned tombstone) is rejected.
	GuardL2Fill = "guard/l2-fill"
	// GuardL2Max is the max rule of the L2 invalidate script: an older
	// invalidation never lowers the stored version.
	GuardL2Max = "guard/l2-max"
	// GuardL1Order is the per-key generation check of L1 fills.
	GuardL1Order = "guard/l1-order"
	// GuardForget is singleflight.Forget on invalidation.
	GuardForget = "guard/forget"
	// GuardExpiry is the expiry check of entries read from either tier.
	GuardExpiry = "guard/expiry"
	// GuardAfterCommit defers a transaction's invalidations until after
	// COMMIT (repository.Transaction and the plugin's tracked
	// transactions); switched off, they are applied just before it.
	GuardAfterCommit = "guard/after-commit"
	// GuardNoTxFill keeps reads inside a transaction away from the shared
	// tiers; switched off, they read and fill the cache like any read.
	GuardNoTxFill = "guard/no-tx-fill"
	// GuardResubscribeFlush is the invalidation bus's L1 flush on every
	// (re)subscription and return to health.
	GuardResubscribeFlush = "guard/resubscribe-flush"
	// GuardSubscribedBeat makes a (re)subscribed invalidation bus wait for
	// one of its heartbeats published after the subscription was confirmed
	// before it serves L1; switched off, the confirmation alone turns it
	// healthy.
	GuardSubscribedBeat = "guard/subscribed-beat"
	// GuardHealth is the invalidation bus's health gate: L1 is not served
	// while the subscription is silent or broken.
	GuardHealth = "guard/health"
	// GuardLease is the lease check of the L2 fill script: a fill lands only
	// while the token its load obtained with the L2 miss is intact.
	GuardLease = "guard/lease"
	// GuardIncarnation moves the cache to a new epoch (and flushes L1) when
	// the Redis server's identity changes: restart, failover, restore.
	GuardIncarnation = "guard/incarnation"
	// GuardServerVouch serves L2 only shortly after the server's identity was
	// last verified.
	GuardServerVouch = "guard/server-vouch"
	// GuardConnIdentity reads the server's identity on every new Redis
	// connection and discards reads that crossed a change.
	GuardConnIdentity = "guard/conn-identity"
	// GuardDelivery makes a write wait until its event has been published
	// (queued for a retry, or published by a queueing publisher) before it
	// returns.
	GuardDelivery = "guard/delivery"
	// GuardOOMDelete makes an invalidation that Redis refuses to store (out
	// of memory) delete the entry instead.
	GuardOOMDelete = "guard/oom-delete"
	// GuardWriteDeadline gives a write's invalidation its own deadline with
	// retries instead of a single attempt bounded by RedisTimeout.
	GuardWriteDeadline = "guard/write-deadline"
	// GuardSuspect makes an instance stop reading from L2 the keys of an
	// invalidation another instance could not confirm.
	GuardSuspect = "guard/suspect"
	// GuardStrict makes a strict write wait for every live instance to
	// apply its invalidation before it returns.
	GuardStrict = "guard/strict"
	// GuardEpochOrder keeps a cache from returning to an older epoch
	// (outside a new server incarnation) and serialises adoptions, so that
	// none returns before L1 is flushed.
	GuardEpochOrder = "guard/epoch-order"
	// GuardRetire stamps the tombstone of a retiring invalidation (a write
	// made around the library) above every version cached for the key.
	GuardRetire = "guard/retire"
	// GuardEpochRegress moves a server to a new epoch when its epoch is
	// below one the cache has used: the server has not seen what the cache
	// wrote since (it came back to a server it had left).
	GuardEpochRegress = "guard/epoch-regress"
	// GuardMixedServers vouches for the server only when the identity check
	// reads the server behind the newest connection: while the client's
	// connections reach two servers (a failover client's pool in the moment
	// a replica is promoted), a check answered by the old one vouches for
	// nothing.
	GuardMixedServers = "guard/mixed-servers"
)

type point struct{ name, key string }

type registry struct {
	hooks    map[point]Hook
	disabled map[string]bool
}

var (
	mu  sync.Mutex // serialises writers of cur
	cur atomic.Pointer[registry]
)

func update(f func(r *registry)) {
	mu.Lock()
	defer mu.Unlock()
	next := &registry{hooks: map[point]Hook{}, disabled: map[string]bool{}}
	if r := cur.Load(); r != nil {
		for k, v := range r.hooks {
			next.hooks[k] = v
		}
		for k, v := range r.disabled {
			next.disabled[k] = v
		}
	}
	f(next)
	if len(next.hooks) == 0 && len(next.disabled) == 0 {
		next = nil
	}
	cur.Store(next)
}

// Set installs h at the failpoint name for operations on key, and returns a
// function that removes it.
func Set(name, key string, h Hook) (restore func()) {
	p := point{name, key}
	update(func(r *registry) { r.hooks[p] = h })
	return func() { update(func(r *registry) { delete(r.hooks, p) }) }
}

// Disable switches the named guard off until the returned function is called.
func Disable(name string) (restore func()) {
	update(func(r *registry) { r.disabled[name] = true })
	return func() { update(func(r *registry) { delete(r.disabled, name) }) }
}

// Hit runs the hook installed at name, if any.
func Hit(ctx context.Context, name, key string) {
	if r := cur.Load(); r != nil {
		if h := r.hooks[point{name, key}]; h != nil {
			h(ctx, key)
		}
	}
}

// Disabled reports whether the named guard is switched off.
func Disabled(name string) bool {
	r := cur.Load()
	return r != nil && r.disabled[name]
}
