package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/example/internal/demoenv"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

// instance is one process of the application.
type instance struct {
	id        int
	db        *gorm.DB
	dsn       string
	namespace string
	rdb       *redis.Client // for the acknowledgement log the stale-read check uses, and the relay's lease
	acks      string        // its key
	feed      *feed         // the change-feed relay, once started
	c         *cache.Cache
	bus       *invalidation.Bus
	products  *repository.Repository[Product, int64]
	queries   atomic.Int64 // SELECTs this process ran on the products table

	reads, checked, stale, writes, conflicts atomic.Int64
	degraded                                 atomic.Int64           // writes committed whose invalidation Redis did not confirm in time
	staleExample                             atomic.Pointer[string] // the first stale read, described
}

// runChild serves the parent's requests until "quit" or EOF.
func runChild(id int, redisAddr, dsn, namespace string) error {
	ctx := context.Background()
	env, err := demoenv.Connect(redisAddr, dsn)
	if err != nil {
		return err
	}
	defer env.Close()
	in := &instance{id: id, db: env.DB, dsn: dsn, namespace: namespace, rdb: env.Redis, acks: namespace + ":demo-acks"}
	env.DB.Callback().Query().After("gorm:query").Register("demo:count", func(tx *gorm.DB) {
		if tx.Statement.Table == (Product{}).TableName() {
			in.queries.Add(1)
		}
	})
	if in.c, err = cache.New(ctx, cache.Options{Redis: env.Redis, Namespace: namespace}); err != nil {
		return err
	}
	defer in.c.Close()
	if in.bus, err = invalidation.New(ctx, in.c, invalidation.Options{InstanceID: fmt.Sprintf("instance-%d", id)}); err != nil {
		return err
	}
	defer in.bus.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := in.bus.WaitHealthy(wctx); err != nil {
		return fmt.Errorf("bus not healthy: %w", err)
	}
	if in.products, err = repository.New[Product, int64](env.DB, in.c, repository.Options{}); err != nil {
		return err
	}
	defer in.stopFeed()

	sc := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for sc.Scan() {
		var req request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			return err
		}
		if req.Cmd == "quit" {
			return out.Encode(response{})
		}
		resp, err := in.handle(ctx, req)
		if err != nil {
			resp.Err = err.Error()
		}
		if err := out.Encode(resp); err != nil {
			return err
		}
	}
	return sc.Err()
}

func (in *instance) handle(ctx context.Context, req request) (response, error) {
	switch req.Cmd {
	case "read":
		var r response
		for _, id := range req.IDs {
			tier, p, err := in.read(ctx, id)
			if err != nil {
				return r, err
			}
			r.Tiers = append(r.Tiers, tier)
			r.Versions = append(r.Versions, uint64(p.Version))
			r.Prices = append(r.Prices, p.PriceCents)
		}
		return r, nil
	case "update":
		for {
			p, err := in.products.Get(ctx, req.ID)
			if err != nil {
				return response{}, err
			}
			p.PriceCents++
			err = in.products.Update(ctx, p)
			if errors.Is(err, repository.ErrConflict) {
				continue
			}
			return response{Version: uint64(p.Version), At: time.Now().UnixNano()}, err
		}
	case "watch":
		// Re-read until the new version shows; report the time since the
		// writer's commit returned.
		for {
			tier, p, err := in.read(ctx, req.ID)
			if err != nil {
				return response{}, err
			}
			if uint64(p.Version) >= req.Version {
				return response{Version: uint64(p.Version), Took: time.Duration(time.Now().UnixNano() - req.Since), Tiers: []string{tier}}, nil
			}
			time.Sleep(20 * time.Microsecond)
		}
	case "stampede":
		before := in.queries.Load()
		var start, done sync.WaitGroup
		start.Add(1)
		errs := make(chan error, req.N)
		for i := 0; i < req.N; i++ {
			done.Add(1)
			go func() {
				defer done.Done()
				start.Wait()
				if _, err := in.products.Get(ctx, req.ID); err != nil {
					errs <- err
				}
			}()
		}
		start.Done()
		done.Wait()
		close(errs)
		return response{Queries: in.queries.Load() - before}, <-errs
	case "wait-recovery":
		// The parent killed the subscriptions: wait for the bus to resubscribe.
		t0 := time.Now()
		for in.bus.Stats().Subscribes < uint64(req.N) {
			if time.Since(t0) > 10*time.Second {
				return response{}, errors.New("no resubscription within 10s")
			}
			time.Sleep(time.Millisecond)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := in.bus.WaitHealthy(wctx)
		return response{Took: time.Since(t0)}, err
	case "load":
		return response{}, in.load(ctx, req)
	case "feed-start":
		return response{}, in.startFeed(in.id, req.Slot)
	case "feed-status":
		return in.feedStatus()
	case "feed-stop":
		return response{}, in.stopFeed()
	case "watch-price":
		return in.watchPrice(ctx, req)
	case "stats":
		cs, bs := in.c.Stats(), in.bus.Stats()
		return response{Stats: &summary{
			L1: cs.L1Hits, L2: cs.L2Hits, DBReads: cs.Misses, Queries: in.queries.Load(),
			Sent: bs.Sent, Received: bs.Received - bs.OwnEvents, Applied: bs.KeysApplied,
			Subscribes: bs.Subscribes, Recoveries: bs.Recoveries, Gaps: bs.Gaps,
			LagP50: bs.LagP50, LagP99: bs.LagP99,
			Reads: in.reads.Load(), Checked: in.checked.Load(), Stale: in.stale.Load(),
			Writes: in.writes.Load(), Conflicts: in.conflicts.Load(), Degraded: in.degraded.Load(), StaleExample: deref(in.staleExample.Load()),
		}}, nil
	}
	return response{}, fmt.Errorf("unknown command %q", req.Cmd)
}

// read reads one product and says which tier served it.
func (in *instance) read(ctx context.Context, id int64) (string, *Product, error) {
	before := in.c.Stats()
	p, err := in.products.Get(ctx, id)
	after := in.c.Stats()
	tier := "database"
	switch {
	case after.L1Hits > before.L1Hits:
		tier = "L1"
	case after.L2Hits > before.L2Hits:
		tier = "L2"
	}
	return tier, p, err
}

func parseAck(s string) (version uint64, at int64, ok bool) {
	v, t, found := strings.Cut(s, ":")
	if !found {
		return 0, 0, false
	}
	version, err1 := strconv.ParseUint(v, 10, 64)
	at, err2 := strconv.ParseInt(t, 10, 64)
	return version, at, err1 == nil && err2 == nil
}

// staleBound is the bound B the demo checks against: the bus's health
// window plus slack for a busy machine.
const staleBound = invalidation.DefaultHealthWindow + 100*time.Millisecond

// load runs mixed traffic for req.Duration: readers on every instance, and
// on the writer instance a stream of versioned updates. Every read is
// checked against the database: a version older than one committed more
// than staleBound before the read began is a stale read.
func (in *instance) load(ctx context.Context, req request) error {
	deadline := time.Now().Add(req.Duration)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				id := 1 + rand.Int64N(20) // a hot set, so that writes meet cached rows
				start := time.Now()
				p, err := in.products.Get(ctx, id)
				if err != nil {
					errs <- err
					return
				}
				in.reads.Add(1)
				// The check: the writer logs "version:acknowledged-at" per row
				// after each Update returns. If the last acknowledged version
				// is newer than what we read and was acknowledged more than
				// the bound before our read began, we read stale.
				ack, err := in.rdb.HGet(ctx, in.acks, strconv.FormatInt(id, 10)).Result()
				if err != nil && !errors.Is(err, redis.Nil) {
					errs <- err
					return
				}
				in.checked.Add(1)
				if v, at, ok := parseAck(ack); ok && v > uint64(p.Version) && time.Unix(0, at).Before(start.Add(-staleBound)) {
					in.stale.Add(1)
					ex := fmt.Sprintf("row %d: read v%d (the read took %v) although v%d was acknowledged %v before the read began",
						id, p.Version, time.Since(start).Round(time.Microsecond), v, start.Sub(time.Unix(0, at)).Round(time.Microsecond))
					in.staleExample.CompareAndSwap(nil, &ex)
				}
			}
		}()
	}
	if req.Writer {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				id := 1 + rand.Int64N(20)
				p, err := in.products.Get(ctx, id)
				if err == nil {
					p.PriceCents++
					err = in.products.Update(ctx, p)
				}
				switch {
				case errors.Is(err, repository.ErrConflict):
					in.conflicts.Add(1)
				case errors.Is(err, cache.ErrInvalidationUnconfirmed):
					// Committed, but not acknowledged as invalidated: the
					// library bounds it from the epoch bump that follows, so
					// the check does not count it as acknowledged.
					in.degraded.Add(1)
				case err != nil:
					errs <- err
					return
				default:
					in.writes.Add(1)
					ack := fmt.Sprintf("%d:%d", p.Version, time.Now().UnixNano()) // acknowledged now
					if err := in.rdb.HSet(ctx, in.acks, strconv.FormatInt(id, 10), ack).Err(); err != nil {
						errs <- err
						return
					}
				}
				time.Sleep(staleBound + 50*time.Millisecond) // 20 rows: each is rewritten every few seconds
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
