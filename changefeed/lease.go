package changefeed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The leader lease: "<instance>|<fencing token>" under LeaseKey, set with
// NX and a PX lifetime; the token comes from INCR on LeaseKey+":fence", so
// a later leader always holds a larger one. Renewal and release check the
// whole value, so a relay whose lease expired and was taken never extends or
// deletes its successor's.

var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0`)

type lease struct {
	rdb redis.UniversalClient
	key string
	id  string
	ttl time.Duration

	mu     sync.Mutex
	value  string    // held value, "" when not held
	token  int64     // fencing token of the held lease
	until  time.Time // acknowledgements stop at this (monotonic) time without a renewal
	leader string    // instance holding the lease, as last read
	change chan struct{}
}

func newLease(rdb redis.UniversalClient, key, id string, ttl time.Duration) *lease {
	return &lease{rdb: rdb, key: key, id: id, ttl: ttl, change: make(chan struct{})}
}

// valid reports whether acknowledgements are allowed now.
func (l *lease) valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.value != "" && time.Now().Before(l.until)
}

// changed returns a channel closed at the next change of leadership.
func (l *lease) changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.change
}

func (l *lease) notify() { close(l.change); l.change = make(chan struct{}) }

func (l *lease) snapshot() (leader string, held bool, token int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leader, l.value != "" && time.Now().Before(l.until), l.token
}

// run acquires and renews the lease until ctx ends, then releases it.
func (l *lease) run(ctx context.Context, onErr func(error)) {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	defer l.release()
	for {
		l.step(ctx, onErr)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (l *lease) step(ctx context.Context, onErr func(error)) {
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, l.ttl/3)
	defer cancel()
	l.mu.Lock()
	value := l.value
	l.mu.Unlock()
	if value != "" {
		n, err := renewScript.Run(rctx, l.rdb, []string{l.key}, value, l.ttl.Milliseconds()).Int64()
		l.mu.Lock()
		defer l.mu.Unlock()
		switch {
		case err != nil:
			if onErr != nil && ctx.Err() == nil {
				onErr(err)
			}
			if !time.Now().Before(l.until) { // nothing acknowledged past until; try again from scratch
				l.value, l.token = "", 0
				l.notify()
			}
		case n == 1:
			l.until = start.Add(l.ttl * 4 / 5)
		default: // expired and taken, or deleted
			l.value, l.token = "", 0
			l.notify()
		}
		return
	}
	token, err := l.rdb.Incr(rctx, l.key+":fence").Result()
	if err != nil {
		if onErr != nil && ctx.Err() == nil {
			onErr(err)
		}
		return
	}
	v := l.id + "|" + strconv.FormatInt(token, 10)
	ok, err := l.rdb.SetNX(rctx, l.key, v, l.ttl).Result()
	if err != nil {
		if onErr != nil && ctx.Err() == nil {
			onErr(err)
		}
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok {
		l.value, l.token, l.leader = v, token, l.id
		l.until = start.Add(l.ttl * 4 / 5)
		l.notify()
		return
	}
	cur, err := l.rdb.Get(rctx, l.key).Result()
	if err == nil {
		leader, _, _ := strings.Cut(cur, "|")
		l.leader = leader
	} else if err == redis.Nil {
		l.leader = ""
	}
}

func (l *lease) release() {
	l.mu.Lock()
	v := l.value
	l.value, l.token = "", 0
	if v != "" {
		l.leader = ""
		l.notify()
	}
	l.mu.Unlock()
	if v == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.ttl)
	defer cancel()
	_ = releaseScript.Run(ctx, l.rdb, []string{l.key}, v).Err()
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
