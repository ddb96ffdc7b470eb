package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/internal/failpoint"
)

// Lua helpers shared by the scripts. Versions are compared bytewise (the
// envelope stores them big-endian), which is exact for every uint64 and does
// not depend on Lua's number type or the server's locale.
const luaPrelude = `
local ZERO = '\0\0\0\0\0\0\0\0'
local function ver(s)
  if s and string.len(s) >= 42 and (string.byte(s, 1) == 201 or string.byte(s, 1) == 202) then
    return string.sub(s, 3, 10)
  end
  return nil
end
local function kind(s) return string.byte(s, 2) end
local function epoch(s) return string.sub(s, 27, 34) end
local function floor(s) return string.sub(s, 19, 26) end
local function schema(s) return string.sub(s, 19, 26) end
local function older(a, b)
  for i = 1, 8 do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return false
end
local function current(k)
  local ok, v = pcall(redis.call, 'GET', k)
  if not ok then redis.call('DEL', k) return nil end
  return v
end
`

// luaRead is the read of a key and, on a miss, its lease. A value or a
// not-found is returned as a candidate hit ('h'), judged by the reader (its
// schema, epoch, expiry), unless miss is '1': a reader that rejected the
// candidate asks again for the lease. Otherwise, when the reader asks for
// the lease (a non-empty token), it gets it ('l': token is the key's lease
// for ttl ms) unless another load holds it ('w': wait for its fill) or
// Redis refuses to store it ('n', also when no lease was asked). A key of
// another Redis type is deleted ('x'). The second result is what the key
// holds, if anything. The hit path is kept to one GET and two byte tests:
// it is the common case, and Lua is slow at string work.
const luaRead = `
local function read(k, l, token, ttl, miss)
  local ok, v = pcall(redis.call, 'GET', k)
  if not ok then redis.call('DEL', k) return 'x', false end
  if v and miss ~= '1' and ver(v) then
    local kd = kind(v)
    if kd == 1 or kd == 3 then return 'h', v end
  end
  if token == '' then return 'n', v or false end
  local okl, held = pcall(redis.call, 'GET', l)
  if okl and held then return 'w', v or false end
  if pcall(redis.call, 'SET', l, token, 'PX', ttl) then return 'l', v or false end
  return 'n', v or false
end
`

// readScript reads one key (KEYS[1], lease KEYS[2]; ARGV: token, lease TTL
// in ms, miss) and returns {status, entry}.
var readScript = redis.NewScript(luaPrelude + luaRead + `
local st, v = read(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
return {st, v}
`)

// readManyScript reads n keys, taking the leases of those that miss, in one
// call (KEYS: key, lease, key, lease...; ARGV: lease TTL, miss, then one
// token per key; miss '1' takes every lease, whatever is there) and
// returns {status, entry, status, entry...}. It serves clients whose keys
// all live on one server; cluster clients pipeline readScript instead.
var readManyScript = redis.NewScript(luaPrelude + luaRead + `
local out = {}
for i = 1, #KEYS / 2 do
  local st, v = read(KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 + i], ARGV[1], ARGV[2])
  out[2 * i - 1] = st
  out[2 * i] = v
end
return out
`)

// fillScript stores the envelope ARGV[1] under KEYS[1] with TTL ARGV[2] ms
// only while the lease KEYS[2] still holds the load's token ARGV[3] (an
// invalidation, an eviction, a restart or a failover voids it: the fill is
// then dropped), and only if it is not older than what is stored: a value of
// a newer version (or the same version from a newer epoch), or a tombstone
// whose floor is above it. ARGV[4] and ARGV[5] == '1' enable the lease and
// the version checks. The lease is consumed. Returns 1 if stored, 0 if not.
var fillScript = redis.NewScript(luaPrelude + `
if ARGV[4] == '1' then
  local ok, held = pcall(redis.call, 'GET', KEYS[2])
  if not ok or held ~= ARGV[3] then return 0 end
end
local stored = current(KEYS[1])
if ARGV[5] == '1' and ver(stored) then
  local new = string.sub(ARGV[1], 3, 10)
  if kind(stored) == 2 then
    if older(new, floor(stored)) then return 0 end
  elseif older(new, ver(stored)) or (new == ver(stored) and older(epoch(ARGV[1]), epoch(stored))) then
    return 0
  end
end
if not pcall(redis.call, 'SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) then return 0 end
redis.call('DEL', KEYS[2])
return 1
`)

// invalidateScript records a committed write of KEYS[1]: it voids the key's
// lease (KEYS[2]), so no load that began before the write can fill, and
// leaves the tombstone ARGV[1] for ARGV[2] ms. A tombstone carries a version
// (the highest write seen, ordering out-of-order invalidations) and a floor
// (the lowest version a fill may carry). ARGV[4] is the mode:
//
//   - 'v': versioned; version and floor are the tombstone's, raised to what
//     is stored (an invalidation never lowers either; ARGV[3] == '1'
//     enables that rule), and a stored value already at that version or
//     newer is kept;
//   - 's': stamped (unversioned rows): version and floor become
//     max(stored + 1, server time in µs);
//   - 'r': retire (a write made around the library, whose version may not
//     have moved): the version is stamped above everything stored, the floor
//     is the tombstone's.
//
// When Redis refuses to store the tombstone (maxmemory with noeviction), the
// entry is deleted instead (ARGV[5] == '1'): DEL frees memory, and with the
// lease voided no older load can bring the row back. The SET is the
// script's first write: once a script has written, Redis lets its later
// writes through whatever the memory, which is why nothing is written before
// it. Returns {version as 8 bytes, 1 if
// written, 0 if kept, 2 if deleted}.
var invalidateScript = redis.NewScript(luaPrelude + `
local tomb = ARGV[1]
local stored = current(KEYS[1])
local cur = ver(stored)
local v, f = string.sub(tomb, 3, 10), floor(tomb)
if ARGV[4] ~= 'v' then
  local c = 0
  if cur then for i = 1, 8 do c = c * 256 + string.byte(cur, i) end end
  local t = redis.call('TIME')
  local n = math.max(c + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
  local b = {}
  for i = 8, 1, -1 do b[i] = string.char(n % 256); n = math.floor(n / 256) end
  v = table.concat(b)
  if ARGV[4] == 's' then f = v end
elseif ARGV[3] == '1' and cur then
  if kind(stored) ~= 2 then
    if not older(cur, v) then redis.call('DEL', KEYS[2]) return {v, 0} end
  else
    local sf = floor(stored)
    if not older(cur, v) then v = cur end
    if not older(sf, f) then f = sf end
    if v == cur and f == sf then redis.call('DEL', KEYS[2]) return {v, 0} end
  end
end
tomb = string.sub(tomb, 1, 2) .. v .. string.sub(tomb, 11, 18) .. f .. string.sub(tomb, 27)
local res = {v, 1}
if not pcall(redis.call, 'SET', KEYS[1], tomb, 'PX', ARGV[2]) then
  res = {v, 2}
  if ARGV[5] == '1' then redis.call('DEL', KEYS[1]) end
end
redis.call('DEL', KEYS[2])
return res
`)

// releaseScript gives up the lease KEYS[1] if it still holds ARGV[1]: a
// load that will not fill lets the others load at once.
var releaseScript = redis.NewScript(`
local ok, v = pcall(redis.call, 'GET', KEYS[1])
if ok and v == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// deleteIfScript deletes KEYS[1] only if it still holds ARGV[1]: corrupt bytes
// are removed without racing a concurrent tombstone.
var deleteIfScript = redis.NewScript(`
local ok, v = pcall(redis.call, 'GET', KEYS[1])
if (not ok) or v == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// epochScript returns the namespace epoch (KEYS[1]), creating it from the
// server clock (ms) if absent. ARGV[1] is the mode: 'read'; 'bump', which
// first raises it; or 'incarnation', which raises it unless the marker
// KEYS[2] of the server's current identity exists (and keeps the marker
// alive), and then sets it, so that
// every instance noticing one restart, failover or restore moves the
// namespace to one new epoch. A raised epoch is max(epoch + 1, now, ARGV[3]
// + 1), ARGV[3] being the highest epoch the caller has used: epochs are
// never reused, even after Redis restarts from an older snapshot. An epoch
// below ARGV[3] is raised in every mode (ARGV[4] == '1' enables that rule):
// the caller used a later epoch on another server (a client that left this
// server and came back, a restore the marker does not reveal), so this one
// lacks what the caller wrote since, and its entries must not be served,
// also when the incarnation's marker exists. The keys
// live ARGV[2] ms from their last use: longer than any entry of the epoch.
// The script writes first (PEXPIRE, which Redis allows when out of memory),
// because Redis then lets a script's later writes through: a bump must land
// even when maxmemory is reached.
var epochScript = redis.NewScript(`
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local e = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local raise = e == 0 or ARGV[1] == 'bump' or (ARGV[4] == '1' and e < (tonumber(ARGV[3]) or 0))
if ARGV[1] == 'incarnation' then
  if redis.call('PEXPIRE', KEYS[2], ARGV[2]) == 0 then
    raise = true
    redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  end
end
if raise then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  e = math.max(e + 1, now, (tonumber(ARGV[3]) or 0) + 1)
end
redis.call('SET', KEYS[1], string.format('%d', e), 'PX', ARGV[2])
return string.format('%d', e)
`)

// l2 is the Redis tier.
type l2 struct {
	rdb      redis.UniversalClient
	ns       string
	prefix   string // "<ns>:{"
	timeout  time.Duration
	epochTTL time.Duration // lifetime of the epoch key from its last read
	br       breaker
	epoch    atomic.Uint64 // the namespace epoch in use; 0 = not known yet
	maxEpoch atomic.Uint64 // the highest epoch seen, so that none is ever reused
	errors   *counter      // Stats.RedisErrors
}

// setEpoch makes n the epoch in use (Cache.adoptEpoch decides when).
func (l *l2) setEpoch(n uint64) {
	for {
		m := l.maxEpoch.Load()
		if n <= m || l.maxEpoch.CompareAndSwap(m, n) {
			break
		}
	}
	l.epoch.Store(n)
}

// key is the Redis key of a cache key. The braces make the key its own
// Redis Cluster hash tag. The epoch is not part of the key but of the
// entry: tombstones must stay visible across epochs, so that a writer
// that has not yet learnt of a bump still rejects stale fills.
func (l *l2) key(k string) string { return l.prefix + k + "}" }

// leaseKey is the key of k's lease: the token of the one load allowed to
// fill k. It shares k's hash tag, so scripts touch both in one slot.
func (l *l2) leaseKey(k string) string { return l.prefix + k + "}:lease" }

// epochKey and markerKey (the "this server identity has been seen" marker
// of incarnation) share a hash tag no cache key can have (cache keys start
// with "<ns>:{").
func (l *l2) epochKey() string            { return l.ns + ":epoch{e}" }
func (l *l2) markerKey(inc string) string { return l.ns + ":incarnation{e}:" + inc }

// call runs f with the per-call timeout and feeds the breaker. It returns
// errUnavailable without calling f while the breaker is open.
func (l *l2) call(ctx context.Context, f func(ctx context.Context) error) error {
	if !l.br.allow() {
		return errUnavailable
	}
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	err := f(cctx)
	cancel()
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		l.br.success()
	case ctx.Err() != nil: // the caller gave up; says nothing about Redis
		l.br.probing.Store(false)
		return ctx.Err()
	case isOutage(err):
		l.errors.add(1)
		l.br.failure()
	default: // an error reply about this key; Redis itself answered
		l.errors.add(1)
		l.br.success()
	}
	return err
}

// redisNil is go-redis's "no such key".
var redisNil = redis.Nil

// errUnavailable is returned while the breaker is open.
var errUnavailable = errors.New("gormcache: redis unavailable")

// isOutage tells errors that mean "Redis cannot serve us now" (network,
// timeout, loading, read-only replica, cluster down) from error replies about
// one key.
func isOutage(err error) bool {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true // network errors, timeouts, closed client
}

// readStatus is what readScript found.
type readStatus byte

const (
	readHit   readStatus = 'h' // a usable entry
	readLease readStatus = 'l' // a miss, and this load holds the lease
	readWait  readStatus = 'w' // a miss, and another load holds the lease
	readNone  readStatus = 'n' // a miss without a lease (none asked, or Redis refused one)
	readWrong readStatus = 'x' // the key held another Redis type: deleted, read again
)

// read runs readScript for key, asking for the lease with token (if not
// ""), and treating any entry as a miss if miss is set: the status and the
// bytes key holds (nil if none).
func (l *l2) read(ctx context.Context, key, token, leaseTTL string, miss bool) (readStatus, []byte, error) {
	var st readStatus
	var b []byte
	m := "0"
	if miss {
		m = "1"
	}
	err := l.call(ctx, func(ctx context.Context) error {
		res, err := readScript.Run(ctx, l.rdb, []string{l.key(key), l.leaseKey(key)}, token, leaseTTL, m).Slice()
		if err != nil {
			return err
		}
		st, b, err = parseRead(res, 0)
		return err
	})
	return st, b, err
}

// get reads key's entry with a plain GET (nil if there is none).
func (l *l2) get(ctx context.Context, key string) ([]byte, error) {
	var b []byte
	err := l.call(ctx, func(ctx context.Context) error {
		v, err := l.rdb.Get(ctx, l.key(key)).Bytes()
		switch {
		case err == nil:
			b = v
		case errors.Is(err, redis.Nil), redis.HasErrorPrefix(err, "WRONGTYPE"):
		default:
			return err
		}
		return nil
	})
	return b, err
}

// parseRead reads the status and entry at res[i], res[i+1].
func parseRead(res []any, i int) (readStatus, []byte, error) {
	if len(res) < i+2 {
		return 0, nil, errBadReply
	}
	s, _ := res[i].(string)
	if len(s) != 1 {
		return 0, nil, errBadReply
	}
	var b []byte
	if v, ok := res[i+1].(string); ok {
		b = []byte(v)
	}
	return readStatus(s[0]), b, nil
}

// getMany reads keys' raw bytes in one round trip (an MGET on one server,
// a pipeline of GETs split per node for cluster clients); absent keys and
// keys of another Redis type yield nil.
func (l *l2) getMany(ctx context.Context, keys []string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	err := l.call(ctx, func(ctx context.Context) error {
		if l.ordered() { // one server: one MGET
			sk := make([]string, len(keys))
			for i, k := range keys {
				sk[i] = l.key(k)
			}
			vals, err := l.rdb.MGet(ctx, sk...).Result()
			if err != nil {
				return err
			}
			for i, v := range vals {
				if s, ok := v.(string); ok && i < len(out) {
					out[i] = []byte(s)
				}
			}
			return nil
		}
		pipe := l.rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.Get(ctx, l.key(k))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) && !redis.HasErrorPrefix(err, "WRONGTYPE") {
			return err
		}
		for i, c := range cmds {
			if b, err := c.Bytes(); err == nil {
				out[i] = b
			}
		}
		return nil
	})
	return out, err
}

// readMany reads keys with the read script, taking the leases of those that
// miss (of all of them when miss is set), in one round trip: one script call
// on a single server, else one pipeline split per node; tokens[i] is key
// i's lease token.
func (l *l2) readMany(ctx context.Context, keys []string, leaseTTL string, tokens []string, miss bool) ([]readStatus, [][]byte, error) {
	m := "0"
	if miss {
		m = "1"
	}
	sts, out := make([]readStatus, len(keys)), make([][]byte, len(keys))
	err := l.call(ctx, func(ctx context.Context) error {
		if l.ordered() {
			rk := make([]string, 0, 2*len(keys))
			args := make([]any, 0, 2+len(keys))
			args = append(args, leaseTTL, m)
			for i, k := range keys {
				rk = append(rk, l.key(k), l.leaseKey(k))
				args = append(args, tokens[i])
			}
			res, err := readManyScript.Run(ctx, l.rdb, rk, args...).Slice()
			if err != nil {
				return err
			}
			for i := range keys {
				if sts[i], out[i], err = parseRead(res, 2*i); err != nil {
					return err
				}
			}
			return nil
		}
		res, err := evalMany(ctx, l.rdb, readScript, len(keys), func(i int) []string { return []string{l.key(keys[i]), l.leaseKey(keys[i])} },
			func(i int) []any { return []any{tokens[i], leaseTTL, m} }, nil)
		if err != nil {
			return err
		}
		for i, r := range res {
			pair, _ := r.([]any)
			if sts[i], out[i], err = parseRead(pair, 0); err != nil {
				return err
			}
		}
		return nil
	})
	return sts, out, err
}

// fill stores the envelope b under key while the lease still holds token,
// and if it is not older than what is there. It reports whether it was
// stored.
func (l *l2) fill(ctx context.Context, key, token string, b []byte, ttl time.Duration) (bool, error) {
	var ok int64
	err := l.call(ctx, func(ctx context.Context) error {
		var err error
		ok, err = fillScript.Run(ctx, l.rdb, []string{l.key(key), l.leaseKey(key)}, b, ttl.Milliseconds(), token,
			guardArg(failpoint.GuardLease), guardArg(failpoint.GuardL2Fill)).Int64()
		return err
	})
	return ok == 1, err
}

// release gives up key's lease if it still holds token.
func (l *l2) release(ctx context.Context, key, token string) error {
	return l.call(ctx, func(ctx context.Context) error {
		return releaseScript.Run(ctx, l.rdb, []string{l.leaseKey(key)}, token).Err()
	})
}

// deleteIf removes key's entry if it still holds b.
func (l *l2) deleteIf(ctx context.Context, key string, b []byte) error {
	return l.call(ctx, func(ctx context.Context) error {
		return deleteIfScript.Run(ctx, l.rdb, []string{l.key(key)}, b).Err()
	})
}

// Epoch modes of readEpoch.
const (
	epochRead        = "read"
	epochBump        = "bump"
	epochIncarnation = "incarnation"
)

// readEpoch returns the namespace epoch after mode (epochRead, epochBump, or
// epochIncarnation with the server identity inc).
func (l *l2) readEpoch(ctx context.Context, mode, inc string) (uint64, error) {
	var s string
	run := func(ctx context.Context) error {
		var err error
		s, err = epochScript.Run(ctx, l.rdb, []string{l.epochKey(), l.markerKey(inc)}, mode, l.epochTTL.Milliseconds(),
			strconv.FormatUint(l.maxEpoch.Load(), 10), guardArg(failpoint.GuardEpochRegress)).Text()
		return err
	}
	var err error
	if mode == epochBump { // a write's consequence: tried even while reads skip Redis
		err = run(ctx)
	} else {
		err = l.call(ctx, run)
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("gormcache: epoch key holds a non-number")
	}
	return n, nil
}

// fillMany runs the fill script for each key in one pipeline. accepted[i]
// reports whether entry i was stored.
func (l *l2) fillMany(ctx context.Context, keys, tokens []string, entries [][]byte, ttls []time.Duration) ([]bool, error) {
	lease, guard := guardArg(failpoint.GuardLease), guardArg(failpoint.GuardL2Fill)
	accepted := make([]bool, len(keys))
	err := l.call(ctx, func(ctx context.Context) error {
		res, err := evalMany(ctx, l.rdb, fillScript, len(keys), func(i int) []string { return []string{l.key(keys[i]), l.leaseKey(keys[i])} },
			func(i int) []any { return []any{entries[i], ttls[i].Milliseconds(), tokens[i], lease, guard} }, nil)
		for i, r := range res {
			accepted[i] = r == int64(1)
		}
		return err
	})
	return accepted, err
}

// publication is a message to PUBLISH in the same pipeline as the
// tombstones it announces, after them.
type publication struct {
	channel string
	payload []byte
	sent    bool // set by invalidateMany
}

// Outcomes of one key's invalidation in Redis.
const (
	tombKept    = 0 // a newer tombstone or value was there already
	tombWritten = 1
	tombDeleted = 2 // Redis refused the tombstone (out of memory): the entry was deleted
)

// invalidateMany runs the invalidate script for each key in one pipeline,
// bounded by timeout and outside the breaker (a write's invalidation is
// tried even while reads skip Redis), and returns the version each
// tombstone stands for and its outcome. If pub is set, its PUBLISH follows
// the scripts in the same pipeline; when a script has to be re-sent
// (NOSCRIPT), so is the PUBLISH, after it, so no subscriber can act on the
// message before the tombstone exists.
func (l *l2) invalidateMany(ctx context.Context, keys []string, tombs [][]byte, modes []string, ttl, timeout time.Duration, pub *publication) ([]uint64, []int, error) {
	guard, oom := guardArg(failpoint.GuardL2Max), guardArg(failpoint.GuardOOMDelete)
	versions, outcome := make([]uint64, len(keys)), make([]int, len(keys))
	var after func(redis.Pipeliner) func()
	if pub != nil {
		after = func(pipe redis.Pipeliner) func() {
			cmd := pipe.Publish(ctx, pub.channel, pub.payload)
			return func() { pub.sent = cmd.Err() == nil } // the publisher retries if not
		}
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := evalMany(cctx, l.rdb, invalidateScript, len(keys), func(i int) []string { return []string{l.key(keys[i]), l.leaseKey(keys[i])} },
		func(i int) []any { return []any{tombs[i], ttl.Milliseconds(), guard, modes[i], oom} }, after)
	if err != nil {
		l.errors.add(1)
		if isOutage(err) {
			l.br.failure()
		}
		return nil, nil, err
	}
	l.br.success()
	for i, r := range res {
		pair, _ := r.([]any)
		if len(pair) != 2 {
			return nil, nil, errBadReply
		}
		vs, _ := pair[0].(string)
		n, _ := pair[1].(int64)
		if len(vs) != 8 {
			return nil, nil, errBadReply
		}
		versions[i] = binary.BigEndian.Uint64([]byte(vs))
		outcome[i] = int(n)
	}
	return versions, outcome, nil
}

// ordered reports whether one pipeline's commands run in order on one
// server (a single node or a failover client), so a PUBLISH can follow the
// tombstones it announces in the same round trip. Cluster and ring clients
// split pipelines across nodes.
func (l *l2) ordered() bool {
	_, ok := l.rdb.(*redis.Client)
	return ok
}

var errBadReply = errors.New("gormcache: unexpected reply from a cache script")

// evalMany runs s n times in one pipeline (split per node by cluster
// clients), with the keys and args of call i, and retries with EVAL the
// commands that met NOSCRIPT, as after a Redis restart or failover. res[i]
// is the reply of call i. after, if not nil, appends a command to every
// pipeline sent (after the scripts) and returns what to run once the
// pipeline has been executed.
func evalMany(ctx context.Context, rdb redis.UniversalClient, s *redis.Script, n int, keys func(i int) []string, args func(i int) []any, after func(redis.Pipeliner) func()) ([]any, error) {
	res := make([]any, n)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	for _, sha := range []bool{true, false} {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(idx))
		for j, i := range idx {
			if sha {
				cmds[j] = s.EvalSha(ctx, pipe, keys(i), args(i)...)
			} else {
				cmds[j] = s.Eval(ctx, pipe, keys(i), args(i)...)
			}
		}
		var check func()
		if after != nil {
			check = after(pipe)
		}
		_, _ = pipe.Exec(ctx) // errors are read per command below
		if check != nil {
			check()
		}
		var retry []int
		for j, c := range cmds {
			v, err := c.Result()
			switch {
			case err == nil:
				res[idx[j]] = v
			case sha && redis.HasErrorPrefix(err, "NOSCRIPT"):
				retry = append(retry, idx[j])
			default:
				return res, err
			}
		}
		if len(retry) == 0 {
			break
		}
		idx = retry
	}
	return res, nil
}

func guardArg(name string) string {
	if failpoint.Disabled(name) {
		return "0"
	}
	return "1"
}
