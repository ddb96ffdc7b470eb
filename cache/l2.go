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
local function ver(s)
  if s and string.len(s) >= 42 and string.byte(s, 1) == 201 then
    return string.sub(s, 3, 10)
  end
  return nil
end
local function epoch(s) return string.sub(s, 27, 34) end
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

// fillScript stores ARGV[1] (an envelope) under KEYS[1] with TTL ARGV[2] ms,
// unless the stored entry has a newer version, or the same version from a
// newer epoch (ARGV[3] == '1' enables the check). Tombstones carry epoch 0,
// so a fill at a tombstone's version always replaces it. Returns 1 if
// stored, 0 if rejected as stale.
var fillScript = redis.NewScript(luaPrelude + `
local stored = current(KEYS[1])
local cur = ver(stored)
if ARGV[3] == '1' and cur then
  local new = string.sub(ARGV[1], 3, 10)
  if older(new, cur) or (new == cur and older(epoch(ARGV[1]), epoch(stored))) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// invalidateScript leaves the tombstone ARGV[1] under KEYS[1] with TTL
// ARGV[2] ms. A zero version in the tombstone asks for a stamp: the version
// becomes max(stored + 1, server time in µs). Otherwise the stored entry is
// kept when it is already at that version or newer (ARGV[3] == '1' enables the
// check), so an invalidation never lowers the version. Returns {version as 8
// bytes, 1 if written else 0}.
var invalidateScript = redis.NewScript(luaPrelude + `
local tomb = ARGV[1]
local v = string.sub(tomb, 3, 10)
local cur = ver(current(KEYS[1]))
if v == '\0\0\0\0\0\0\0\0' then
  local c = 0
  if cur then for i = 1, 8 do c = c * 256 + string.byte(cur, i) end end
  local t = redis.call('TIME')
  local n = math.max(c + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
  local b = {}
  for i = 8, 1, -1 do b[i] = string.char(n % 256); n = math.floor(n / 256) end
  v = table.concat(b)
  tomb = string.sub(tomb, 1, 2) .. v .. string.sub(tomb, 11)
elseif ARGV[3] == '1' and cur and not older(cur, v) then
  return {v, 0}
end
redis.call('SET', KEYS[1], tomb, 'PX', ARGV[2])
return {v, 1}
`)

// deleteIfScript deletes KEYS[1] only if it still holds ARGV[1]: corrupt bytes
// are removed without racing a concurrent tombstone.
var deleteIfScript = redis.NewScript(`
local ok, v = pcall(redis.call, 'GET', KEYS[1])
if (not ok) or v == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// epochScript returns the namespace epoch, creating it from the server clock
// (ms) if absent; with ARGV[1] == 'bump' it first raises it to
// max(epoch + 1, now). Epochs are therefore never reused, even after Redis
// loses its data. The key lives ARGV[2] ms from its last read: longer than
// any entry of its epoch, so it only expires once they all have.
var epochScript = redis.NewScript(`
local e = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if e == 0 or ARGV[1] == 'bump' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  e = math.max(e + 1, now)
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
	errors   *counter      // Stats.RedisErrors
}

// setEpoch adopts epoch n and reports whether it changed.
func (l *l2) setEpoch(n uint64) (changed bool) { return l.epoch.Swap(n) != n }

// key is the Redis key of a cache key. The braces make the key its own
// Redis Cluster hash tag. The epoch is not part of the key but of the
// entry: tombstones must stay visible across epochs, so that a writer
// that has not yet learnt of a bump still rejects stale fills.
func (l *l2) key(k string) string { return l.prefix + k + "}" }

func (l *l2) epochKey() string { return l.ns + ":epoch" }

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

// get reads key's raw bytes; (nil, nil) means absent. A key holding
// another Redis type is reported as errWrongType: foreign data, not an outage.
func (l *l2) get(ctx context.Context, key string) ([]byte, error) {
	var b []byte
	wrongType := false
	err := l.call(ctx, func(ctx context.Context) error {
		var err error
		b, err = l.rdb.Get(ctx, key).Bytes()
		if redis.HasErrorPrefix(err, "WRONGTYPE") {
			wrongType = true
			return nil
		}
		return err
	})
	switch {
	case wrongType:
		return nil, errWrongType
	case errors.Is(err, redis.Nil):
		return nil, nil
	}
	return b, err
}

var errWrongType = errors.New("gormcache: key holds another Redis type")

// fill stores the envelope b under key if it is not older than what is
// there. It reports whether it was stored.
func (l *l2) fill(ctx context.Context, key string, b []byte, ttl time.Duration) (bool, error) {
	var ok int64
	err := l.call(ctx, func(ctx context.Context) error {
		var err error
		ok, err = fillScript.Run(ctx, l.rdb, []string{key}, b, ttl.Milliseconds(), guardArg(failpoint.GuardL2Fill)).Int64()
		return err
	})
	return ok == 1, err
}

// deleteIf removes key if it still holds b.
func (l *l2) deleteIf(ctx context.Context, key string, b []byte) error {
	return l.call(ctx, func(ctx context.Context) error {
		return deleteIfScript.Run(ctx, l.rdb, []string{key}, b).Err()
	})
}

// readEpoch returns the namespace epoch, bumping it first if bump is set.
func (l *l2) readEpoch(ctx context.Context, bump bool) (uint64, error) {
	arg := "read"
	if bump {
		arg = "bump"
	}
	var s string
	err := l.call(ctx, func(ctx context.Context) error {
		var err error
		s, err = epochScript.Run(ctx, l.rdb, []string{l.epochKey()}, arg, l.epochTTL.Milliseconds()).Text()
		return err
	})
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("gormcache: epoch key holds a non-number")
	}
	return n, nil
}

// getMany reads keys in one pipeline (split per node by cluster clients).
// Absent keys yield nil. A failed pipeline reports its error for all.
func (l *l2) getMany(ctx context.Context, keys []string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	err := l.call(ctx, func(ctx context.Context) error {
		pipe := l.rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.Get(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
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

// fillMany runs the fill script for each key in one pipeline. accepted[i]
// reports whether entry i was stored.
func (l *l2) fillMany(ctx context.Context, keys []string, entries [][]byte, ttls []time.Duration) ([]bool, error) {
	guard := guardArg(failpoint.GuardL2Fill)
	accepted := make([]bool, len(keys))
	err := l.call(ctx, func(ctx context.Context) error {
		res, err := evalMany(ctx, l.rdb, fillScript, keys, func(i int) []any {
			return []any{entries[i], ttls[i].Milliseconds(), guard}
		}, nil)
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

// invalidateMany runs the invalidate script for each key in one pipeline and
// returns the version each tombstone stands for and whether it was written.
// If pub is set, its PUBLISH follows the scripts in the same pipeline; when a
// script has to be re-sent (NOSCRIPT), so is the PUBLISH, after it, so no
// subscriber can act on the message before the tombstone exists.
func (l *l2) invalidateMany(ctx context.Context, keys []string, tombs [][]byte, ttl time.Duration, pub *publication) ([]uint64, []bool, error) {
	guard := guardArg(failpoint.GuardL2Max)
	versions, written := make([]uint64, len(keys)), make([]bool, len(keys))
	var after func(redis.Pipeliner) func()
	if pub != nil {
		after = func(pipe redis.Pipeliner) func() {
			cmd := pipe.Publish(ctx, pub.channel, pub.payload)
			return func() { pub.sent = cmd.Err() == nil } // the publisher retries if not
		}
	}
	err := l.call(ctx, func(ctx context.Context) error {
		res, err := evalMany(ctx, l.rdb, invalidateScript, keys, func(i int) []any {
			return []any{tombs[i], ttl.Milliseconds(), guard}
		}, after)
		if err != nil {
			return err
		}
		for i, r := range res {
			pair, _ := r.([]any)
			if len(pair) != 2 {
				return errBadReply
			}
			vs, _ := pair[0].(string)
			if len(vs) != 8 {
				return errBadReply
			}
			versions[i] = binary.BigEndian.Uint64([]byte(vs))
			written[i] = pair[1] == int64(1)
		}
		return nil
	})
	return versions, written, err
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

// evalMany runs s once per key in one pipeline (split per node by cluster
// clients) and retries with EVAL the commands that met NOSCRIPT, as after a
// Redis restart or failover. res[i] is the reply for keys[i]. after, if not
// nil, appends a command to every pipeline sent (after the scripts) and
// returns what to run once the pipeline has been executed.
func evalMany(ctx context.Context, rdb redis.UniversalClient, s *redis.Script, keys []string, args func(i int) []any, after func(redis.Pipeliner) func()) ([]any, error) {
	res := make([]any, len(keys))
	idx := make([]int, len(keys))
	for i := range idx {
		idx[i] = i
	}
	for _, sha := range []bool{true, false} {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(idx))
		for j, i := range idx {
			if sha {
				cmds[j] = s.EvalSha(ctx, pipe, []string{keys[i]}, args(i)...)
			} else {
				cmds[j] = s.Eval(ctx, pipe, []string{keys[i]}, args(i)...)
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
