// Command gormcache-relay runs the change-feed relay (package changefeed) as
// its own process, for teams that prefer it beside their instances rather
// than inside them: it follows a PostgreSQL database's logical replication
// stream and invalidates, in the instances' Redis and through their bus,
// every row other writers commit. Run one or several (one streams; the
// others take over when it dies).
//
//	gormcache-relay -dsn 'host=db user=relay dbname=app' -redis 127.0.0.1:6379 \
//		-namespace gormcache -table users::email -table docs:version
//
// Each -table is name[=namespace][:version[:unique,...]]: the table as
// PostgreSQL names it; the key namespace its repository uses (default: the
// name, as repository.Options.Namespace defaults to the table); the column
// of the model's repository.Version (empty for an unversioned model); the
// unique columns its repository looks rows up by (GetBy). Primary keys come
// from the catalog. -namespace must be the instances' cache.Options.Namespace.
// Flags default from the environment: GORMCACHE_RELAY_DSN,
// GORMCACHE_RELAY_REDIS, GORMCACHE_RELAY_NAMESPACE, GORMCACHE_RELAY_TABLES
// (specs separated by spaces).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/changefeed"
	"github.com/gormcache/gormcache/invalidation"
)

type tableFlags []changefeed.Table

func (t *tableFlags) String() string { return fmt.Sprint(*t) }

func (t *tableFlags) Set(s string) error {
	for _, spec := range strings.Fields(s) {
		tb, err := parseTable(spec)
		if err != nil {
			return err
		}
		*t = append(*t, tb)
	}
	return nil
}

// parseTable reads name[=namespace][:version[:unique,...]].
func parseTable(spec string) (changefeed.Table, error) {
	parts := strings.Split(spec, ":")
	if len(parts) > 3 || parts[0] == "" {
		return changefeed.Table{}, fmt.Errorf("table %q: want name[=namespace][:version[:unique,...]]", spec)
	}
	var t changefeed.Table
	t.Name, t.Namespace, _ = strings.Cut(parts[0], "=")
	if t.Name == "" {
		return changefeed.Table{}, fmt.Errorf("table %q: no name", spec)
	}
	if len(parts) > 1 {
		t.Version = parts[1]
	}
	if len(parts) > 2 && parts[2] != "" {
		t.Uniques = strings.Split(parts[2], ",")
	}
	return t, nil
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("gormcache-relay: ")
	var tables tableFlags
	dsn := flag.String("dsn", env("GORMCACHE_RELAY_DSN", ""), "PostgreSQL connection string of a role that may replicate")
	addr := flag.String("redis", env("GORMCACHE_RELAY_REDIS", "127.0.0.1:6379"), "Redis address of the instances' cache")
	ns := flag.String("namespace", env("GORMCACHE_RELAY_NAMESPACE", cache.DefaultNamespace), "the instances' cache namespace (cache.Options.Namespace)")
	flag.Var(&tables, "table", "table to follow: name[=namespace][:version[:unique,...]] (repeatable)")
	slot := flag.String("slot", changefeed.DefaultSlot, "replication slot")
	pub := flag.String("publication", changefeed.DefaultPublication, "publication")
	leaseTTL := flag.Duration("lease-ttl", changefeed.DefaultLeaseTTL, "leader lease lifetime")
	id := flag.String("id", "", "instance id in the lease (default: host, pid, random)")
	every := flag.Duration("stats", 30*time.Second, "how often to log the relay's stats (0: never)")
	flag.Parse()
	if v := os.Getenv("GORMCACHE_RELAY_TABLES"); v != "" && len(tables) == 0 {
		if err := tables.Set(v); err != nil {
			log.Fatal(err)
		}
	}
	if err := run(*dsn, *addr, *ns, *slot, *pub, *id, *leaseTTL, *every, tables); err != nil {
		log.Fatal(err)
	}
}

func run(dsn, addr, ns, slot, pub, id string, leaseTTL, every time.Duration, tables []changefeed.Table) error {
	if dsn == "" || len(tables) == 0 {
		return errors.New("-dsn and at least one -table are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)) // state changes of the cache, the bus and the relay
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	// The relay only writes: no L1.
	c, err := cache.New(ctx, cache.Options{Redis: rdb, Namespace: ns, L1MaxBytes: -1, Logger: logger})
	if err != nil {
		return err
	}
	defer c.Close()
	bus, err := invalidation.New(ctx, c, invalidation.Options{InstanceID: id, Logger: logger})
	if err != nil {
		return err
	}
	defer bus.Close()
	r, err := changefeed.New(changefeed.Options{
		ConnString: dsn, Cache: c, Describe: tables, Slot: slot, Publication: pub,
		Redis: rdb, LeaseTTL: leaseTTL, InstanceID: id, // the default lease key, shared with relays embedded in instances
		OnError: func(err error) { log.Print(err) },
		Logger:  logger,
	})
	if err != nil {
		return err
	}
	if err := r.Check(ctx); err != nil {
		log.Print(err) // reported, and again in the stats; the other tables are followed
	}
	if every > 0 {
		go func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					s := r.Stats()
					log.Printf("leader=%q is_leader=%v applied_txns=%d applied_rows=%d lag=%v retained_wal=%dB acked=%s reconnects=%d slot_lost=%d retired=%d unsupported=%q",
						s.Leader, s.IsLeader, s.AppliedTxns, s.AppliedRows, s.Lag, s.RetainedWALBytes, s.AckedLSN, s.Reconnects, s.SlotLost, s.Retired, s.Unsupported)
				}
			}
		}()
	}
	log.Printf("following %d table(s) of slot %s", len(tables), slot)
	err = r.Run(ctx)
	r.Close()
	return err
}
