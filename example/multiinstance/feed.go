package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for the outside writer

	"github.com/gormcache/gormcache/changefeed"
	"github.com/gormcache/gormcache/example/internal/demoenv"
)

// The change-feed step: every instance runs a changefeed.Relay (one holds
// the lease and streams, the others stand by), and a plain SQL UPDATE made
// through a connection that knows nothing of gormcache shows up in every
// instance.

// feedHowTo says what the step needs, for the line printed when it is
// skipped.
const feedHowTo = "the change-feed step needs PostgreSQL with wal_level=logical; run it with " +
	"-redis 127.0.0.1:6379 -dsn 'host=127.0.0.1 port=5433 user=postgres dbname=test sslmode=disable'"

// feedTimeout bounds each wait of the step: a relay taking the lease and
// streaming, an instance seeing the update.
const feedTimeout = 30 * time.Second

// feedRow is the product the outside writer changes: outside the hot set
// of the load phase, so that nothing else writes it.
const feedRow = 42

// feedNames is the slot and publication of this run (namespace "demo-<hex>"
// gives "gormcache_demo_<hex>").
func feedNames(namespace string) string {
	return "gormcache_" + strings.ReplaceAll(namespace, "-", "_")
}

// walLevel returns the database's wal_level, read through db.
func walLevel(ctx context.Context, db *sql.DB) (string, error) {
	var level string
	err := db.QueryRowContext(ctx, "SHOW wal_level").Scan(&level)
	return level, err
}

// runFeed runs the step, or prints why it is skipped.
func runFeed(ctx context.Context, env *demoenv.Env, ps []*proc, namespace string) error {
	if env.Embedded {
		step("feed", "skipped on the embedded SQLite: %s", feedHowTo)
		return nil
	}
	// The outside writer: database/sql over pgx, a connection of its own,
	// no gormcache anywhere near it.
	outside, err := sql.Open("pgx", env.DSN)
	if err != nil {
		return err
	}
	defer outside.Close()
	level, err := walLevel(ctx, outside)
	if err != nil {
		return err
	}
	if level != "logical" {
		step("feed", "skipped: this PostgreSQL has wal_level=%s; %s", level, feedHowTo)
		return nil
	}
	name := feedNames(namespace)
	defer all(ps, func(*proc) request { return request{Cmd: "feed-stop"} })
	if _, err := all(ps, func(*proc) request { return request{Cmd: "feed-start", Slot: name} }); err != nil {
		return err
	}
	leader, err := waitLeader(ctx, ps, outside, name)
	if err != nil {
		return err
	}
	step("feed", "every instance runs a change-feed relay on slot %s; instance %d holds the lease (fencing token %d) and streams, the others stand by",
		name, leader.n, leader.token)

	return outsideUpdate(ctx, ps, outside)
}

// leaderInfo is the instance that holds the relay lease.
type leaderInfo struct {
	n     int
	token int64
}

// waitLeader waits until one instance's relay holds the lease and a
// walsender streams the slot.
func waitLeader(ctx context.Context, ps []*proc, outside *sql.DB, slot string) (leaderInfo, error) {
	deadline := time.Now().Add(feedTimeout)
	var last []response
	for time.Now().Before(deadline) {
		rs, err := all(ps, func(*proc) request { return request{Cmd: "feed-status"} })
		if err != nil {
			return leaderInfo{}, err
		}
		last = rs
		var streaming int
		if err := outside.QueryRowContext(ctx, `SELECT count(*) FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid
			WHERE s.slot_name = $1 AND a.backend_type = 'walsender'`, slot).Scan(&streaming); err != nil {
			return leaderInfo{}, err
		}
		for i, r := range rs {
			if r.IsLeader && streaming > 0 {
				return leaderInfo{n: i + 1, token: r.Token}, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	var errs []string
	for i, r := range last {
		if r.FeedErr != "" {
			errs = append(errs, fmt.Sprintf("instance %d: %s", i+1, r.FeedErr))
		}
	}
	return leaderInfo{}, fmt.Errorf("no relay streamed within %v (the role needs REPLICATION, the database wal_level=logical): %s", feedTimeout, strings.Join(errs, "; "))
}

// outsideUpdate has every instance cache the row, changes it by plain SQL
// and reports when each instance serves the new value.
func outsideUpdate(ctx context.Context, ps []*proc, outside *sql.DB) error {
	if _, err := all(ps, func(*proc) request { return request{Cmd: "read", IDs: []int64{feedRow}} }); err != nil {
		return err
	}
	before, err := all(ps, func(*proc) request { return request{Cmd: "read", IDs: []int64{feedRow}} })
	if err != nil {
		return err
	}
	for i, r := range before {
		step("feed", "before: instance %d reads product %d: %s (version %d) from %s", i+1, feedRow, price(r.Prices[0]), r.Versions[0], r.Tiers[0])
	}
	var newPrice int64
	// A writer that knows nothing of the cache nor of the version column:
	// the version is left as it was, which the feed handles as well.
	err = outside.QueryRowContext(ctx, `UPDATE gormcache_demo_products SET price_cents = price_cents + 500, updated_at = now() WHERE id = $1 RETURNING price_cents`, feedRow).Scan(&newPrice)
	if err != nil {
		return err
	}
	at := time.Now()
	step("feed", "a plain SQL UPDATE on a separate database/sql connection (pgx, no gormcache) sets product %d to %s, version untouched (committed)", feedRow, price(newPrice))
	after, err := all(ps, func(*proc) request {
		return request{Cmd: "watch-price", ID: feedRow, Price: newPrice, Since: at.UnixNano()}
	})
	if err != nil {
		return err
	}
	var slowest time.Duration
	for i, r := range after {
		slowest = max(slowest, r.Took)
		step("feed", "after: instance %d reads product %d: %s (version %d) from %s, %v after the UPDATE committed",
			i+1, feedRow, price(r.Prices[0]), r.Version, r.Tiers[0], r.Took.Round(time.Microsecond))
	}
	step("feed", "every instance saw the outside update (slowest %v), though the writer told none of them", slowest.Round(time.Microsecond))
	return nil
}

func price(cents int64) string { return fmt.Sprintf("$%d.%02d", cents/100, cents%100) }

// dropFeed drops the run's slot and publication, if the step made them. It
// runs once the instances (and their relays) have stopped; a walsender
// still streaming the slot is ended first.
func dropFeed(env *demoenv.Env, namespace string) {
	if env.Embedded {
		return
	}
	name := feedNames(namespace)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := env.DB.WithContext(ctx)
	for ctx.Err() == nil {
		db.Exec(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = ? AND active_pid IS NOT NULL`, name)
		if db.Exec(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ?`, name).Error == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	db.Exec(`DROP PUBLICATION IF EXISTS "` + name + `"`)
}

// feed is an instance's relay.
type feed struct {
	relay   *changefeed.Relay
	done    chan error
	lastErr atomic.Pointer[string]
}

// startFeed starts the instance's relay on the products table; it leads
// or stands by.
func (in *instance) startFeed(id int, slot string) error {
	if in.feed != nil {
		return errors.New("the relay runs already")
	}
	f := &feed{done: make(chan error, 1)}
	r, err := changefeed.New(changefeed.Options{
		ConnString:  in.dsn,
		Cache:       in.c,
		DB:          in.db, // the repository's registration says how rows are keyed
		Tables:      []string{Product{}.TableName()},
		Slot:        slot,
		Publication: slot,
		Redis:       in.rdb,
		LeaseKey:    in.namespace + ":relay",
		InstanceID:  fmt.Sprintf("instance-%d", id),
		OnError:     func(err error) { s := err.Error(); f.lastErr.Store(&s) },
	})
	if err != nil {
		return err
	}
	f.relay = r
	go func() { f.done <- r.Run(context.Background()) }()
	in.feed = f
	return nil
}

// feedStatus reports whether the instance's relay holds the lease.
func (in *instance) feedStatus() (response, error) {
	if in.feed == nil {
		return response{}, errors.New("no relay")
	}
	st := in.feed.relay.Stats()
	r := response{IsLeader: st.IsLeader, Token: st.FencingToken}
	if s := in.feed.lastErr.Load(); s != nil {
		r.FeedErr = *s
	}
	return r, nil
}

// stopFeed stops the instance's relay (releasing the lease), if it runs.
func (in *instance) stopFeed() error {
	if in.feed == nil {
		return nil
	}
	in.feed.relay.Close()
	err := <-in.feed.done
	in.feed = nil
	return err
}

// watchPrice re-reads product id until it has the price, and reports the
// time since the outside writer's commit returned.
func (in *instance) watchPrice(ctx context.Context, req request) (response, error) {
	deadline := time.Now().Add(feedTimeout)
	for {
		tier, p, err := in.read(ctx, req.ID)
		if err != nil {
			return response{}, err
		}
		if p.PriceCents == req.Price {
			return response{Version: uint64(p.Version), Prices: []int64{p.PriceCents}, Tiers: []string{tier},
				Took: time.Duration(time.Now().UnixNano() - req.Since)}, nil
		}
		if time.Now().After(deadline) {
			return response{}, fmt.Errorf("product %d still at %s after %v", req.ID, price(p.PriceCents), feedTimeout)
		}
		time.Sleep(20 * time.Microsecond)
	}
}
