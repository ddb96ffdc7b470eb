package changefeed_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/changefeed"
	"github.com/gormcache/gormcache/internal/testenv"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

// doc is a versioned model; user an unversioned one with a unique column.
type doc struct {
	ID    int64 `gorm:"primaryKey"`
	Title string
	repository.Version
}

type user struct {
	ID    int64  `gorm:"primaryKey"`
	Token string `gorm:"uniqueIndex"`
	Name  string
}

// feedBound is how long the tests allow from an outside COMMIT to every
// instance serving the new row: generous for a loaded two-core machine
// (a quick run measures tens of milliseconds; see TestRawWrites' log).
const feedBound = 15 * time.Second

type inst struct {
	db    *gorm.DB
	c     *cache.Cache
	bus   *invalidation.Bus
	docs  *repository.Repository[doc, int64]
	users *repository.Repository[user, int64]
}

// env is n instances on tables unique to the test in the logical cluster,
// a plain GORM handle (base: no cache, the "other program"), and a slot and
// publication unique to the test, dropped when it ends.
type env struct {
	t      *testing.T
	dsn    string
	base   *gorm.DB
	rdb    *redis.Client
	ns     string
	prefix string
	slot   string
	pub    string
	in     []*inst
}

func (e *env) docsTable() string  { return e.prefix + "docs" }
func (e *env) usersTable() string { return e.prefix + "users" }

func newEnv(t *testing.T, n int) *env {
	t.Helper()
	dsn := testenv.LogicalPG(t)
	rdb := testenv.Redis(t)
	name := testenv.Name(t)
	e := &env{t: t, dsn: dsn, rdb: rdb, prefix: name + "_", slot: name, pub: name}
	e.ns = testenv.Namespace(t, rdb)
	open := func() *gorm.DB {
		db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard, NamingStrategy: schema.NamingStrategy{TablePrefix: e.prefix}})
		if err != nil {
			t.Fatal(err)
		}
		sqlDB, err := db.DB()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sqlDB.Close() })
		return db
	}
	e.base = open()
	// Runs last: the relays (registered later) are closed by then.
	t.Cleanup(func() {
		testenv.DropSlot(t, dsn, e.slot, "")
		e.base.Exec(`DROP PUBLICATION IF EXISTS "` + e.pub + `"`)
		var tables []string
		e.base.Raw(`SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND starts_with(tablename, ?)`, e.prefix).Scan(&tables)
		for _, tb := range tables {
			e.base.Exec(`DROP TABLE IF EXISTS "` + tb + `" CASCADE`)
		}
	})
	if err := e.base.AutoMigrate(&doc{}, &user{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range n {
		in := &inst{db: open()}
		var err error
		in.c, err = cache.New(ctx, cache.Options{Redis: testenv.Redis(t), Namespace: e.ns, L1MaxBytes: 4 << 20, L1Shards: 16})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { in.c.Close() })
		if in.bus, err = invalidation.New(ctx, in.c, invalidation.Options{InstanceID: fmt.Sprint("i", i)}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { in.bus.Close() })
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = in.bus.WaitHealthy(wctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if in.docs, err = repository.New[doc, int64](in.db, in.c, repository.Options{}); err != nil {
			t.Fatal(err)
		}
		if in.users, err = repository.New[user, int64](in.db, in.c, repository.Options{}); err != nil {
			t.Fatal(err)
		}
		e.in = append(e.in, in)
	}
	return e
}

// options are a relay's options on instance i, fast enough for tests.
func (e *env) options(i int) changefeed.Options {
	return changefeed.Options{
		ConnString:      e.dsn,
		Cache:           e.in[i].c,
		DB:              e.in[i].db,
		Tables:          []string{e.docsTable(), e.usersTable()},
		Slot:            e.slot,
		Publication:     e.pub,
		Redis:           e.rdb,
		LeaseKey:        e.ns + ":relay",
		LeaseTTL:        time.Second,
		InstanceID:      fmt.Sprint("relay", i),
		StandbyInterval: 100 * time.Millisecond,
		PollInterval:    200 * time.Millisecond,
		MinBackoff:      50 * time.Millisecond,
		MaxBackoff:      500 * time.Millisecond,
		OnError:         func(err error) { e.t.Logf("relay %d: %v", i, err) },
	}
}

// running is a relay and its Run goroutine.
type running struct {
	*changefeed.Relay
	done chan error
	once sync.Once
}

func (r *running) stop(t testing.TB) {
	r.once.Do(func() {
		r.Close()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return after Close")
		}
	})
}

func start(t *testing.T, o changefeed.Options) *running {
	t.Helper()
	rl, err := changefeed.New(o)
	if err != nil {
		t.Fatal(err)
	}
	r := &running{Relay: rl, done: make(chan error, 1)}
	go func() { r.done <- rl.Run(context.Background()) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// streaming waits until r leads and its slot is active.
func (e *env) streaming(r *running) {
	e.t.Helper()
	testenv.Eventually(e.t, feedBound, func() bool {
		if !r.Stats().IsLeader {
			return false
		}
		return e.walsender()
	}, "relay did not start streaming")
}

// exec runs raw SQL through base (no cache involved: an outside writer).
func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if err := e.base.Exec(sql, args...).Error; err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

func (e *env) truthDoc(id int64) *doc {
	var d doc
	err := e.base.Table(e.docsTable()).Select("id, title, version").Where("id = ?", id).Take(&d).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return &d
}

func (e *env) truthUser(id int64) *user {
	var u user
	err := e.base.Table(e.usersTable()).Select("id, token, name").Where("id = ?", id).Take(&u).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return &u
}

func get[T any](repo *repository.Repository[T, int64], id int64) (*T, error) {
	v, err := repo.Get(context.Background(), id)
	if errors.Is(err, repository.ErrNotFound) {
		return nil, nil
	}
	return v, err
}

// warm reads ids on every instance (filling L1 and Redis).
func (e *env) warm(ids ...int64) {
	e.t.Helper()
	for _, in := range e.in {
		for _, id := range ids {
			if _, err := get(in.docs, id); err != nil {
				e.t.Fatal(err)
			}
			if _, err := get(in.users, id); err != nil {
				e.t.Fatal(err)
			}
		}
	}
}

// fresh waits until every instance serves what the database holds for the
// docs and users ids, and returns the longest wait.
func (e *env) fresh(ids ...int64) time.Duration {
	e.t.Helper()
	start := time.Now()
	for _, id := range ids {
		wantD, wantU := e.truthDoc(id), e.truthUser(id)
		for i, in := range e.in {
			var gotD *doc
			var gotU *user
			ok := testenv.WaitFor(feedBound, func() bool {
				var err1, err2 error
				gotD, err1 = get(in.docs, id)
				gotU, err2 = get(in.users, id)
				return err1 == nil && err2 == nil && reflect.DeepEqual(gotD, wantD) && reflect.DeepEqual(gotU, wantU)
			})
			if !ok {
				e.t.Fatalf("instance %d still serves doc %+v, user %+v for %d after %v; the database has %+v, %+v", i, gotD, gotU, id, feedBound, wantD, wantU)
			}
		}
	}
	return time.Since(start)
}

// slotLSN is the slot's confirmed_flush_lsn (0 if none).
func (e *env) slotLSN() uint64 {
	var s string
	e.base.Raw(`SELECT COALESCE(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = ?`, e.slot).Scan(&s)
	var hi, lo uint64
	fmt.Sscanf(s, "%X/%X", &hi, &lo)
	return hi<<32 | lo
}

// walsender reports that a walsender streams the slot (a backend creating
// it shows as its active pid too, before anything streams).
func (e *env) walsender() bool {
	var n int
	e.base.Raw(`SELECT count(*) FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid
		WHERE s.slot_name = ? AND a.backend_type = 'walsender'`, e.slot).Scan(&n)
	return n > 0
}
