package gormcache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/testenv"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

// user is an unversioned model with a unique token and soft delete, as in
// most existing schemas.
type user struct {
	ID        int64  `gorm:"primaryKey"`
	Token     string `gorm:"uniqueIndex"`
	OrgID     int64  `gorm:"index"`
	Name      string
	DeletedAt gorm.DeletedAt `gorm:"index"`
}

// doc is a versioned model.
type doc struct {
	ID    int64 `gorm:"primaryKey"`
	Title string
	repository.Version
}

// inst is one instance of a fleet: its own connection pool, cache and bus
// on the shared PostgreSQL and Redis, with the plugin installed.
type inst struct {
	db    *gorm.DB
	c     *cache.Cache
	bus   *invalidation.Bus
	users *repository.Repository[user, int64]
	docs  *repository.Repository[doc, int64]
}

// fleet is n instances over tables unique to t, and base: a handle on the
// same tables without the plugin, the authority reads are compared to.
type fleet struct {
	base *gorm.DB
	in   []*inst
}

func newFleet(t testing.TB, n int, cfg func(*gorm.Config)) *fleet {
	t.Helper()
	testenv.Postgres(t) // skips without PostgreSQL
	dsn := os.Getenv(testenv.EnvPostgres)
	prefix := testenv.Name(t) + "_"
	rdb := testenv.Redis(t)
	ns := testenv.Namespace(t, rdb)
	open := func(plugin bool) *gorm.DB {
		gc := &gorm.Config{Logger: logger.Discard, NamingStrategy: schema.NamingStrategy{TablePrefix: prefix}}
		if plugin && cfg != nil {
			cfg(gc)
		}
		db, err := gorm.Open(postgres.Open(dsn), gc)
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
	f := &fleet{base: open(false)}
	if err := f.base.AutoMigrate(&user{}, &doc{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var tables []string
		f.base.Raw(`SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND starts_with(tablename, ?)`, prefix).Scan(&tables)
		for _, tb := range tables {
			f.base.Exec(`DROP TABLE IF EXISTS "` + tb + `" CASCADE`)
		}
	})
	ctx := context.Background()
	for i := range n {
		in := &inst{db: open(true)}
		var err error
		// A small L1: bigcache allocates it up front, and a run opens a
		// hundred fleets.
		o := cache.Options{Redis: testenv.Redis(t), Namespace: ns, L1MaxBytes: 4 << 20, L1Shards: 16}
		if in.c, err = cache.New(ctx, o); err != nil {
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
		if err := in.db.Use(&Plugin{Cache: in.c}); err != nil {
			t.Fatal(err)
		}
		if in.users, err = repository.New[user, int64](in.db, in.c, repository.Options{}); err != nil {
			t.Fatal(err)
		}
		if in.docs, err = repository.New[doc, int64](in.db, in.c, repository.Options{}); err != nil {
			t.Fatal(err)
		}
		f.in = append(f.in, in)
	}
	return f
}

// seed inserts users through base (not through the plugin).
func (f *fleet) seed(t testing.TB, us ...user) {
	t.Helper()
	if err := f.base.Create(&us).Error; err != nil {
		t.Fatal(err)
	}
}

// warm reads ids on every instance, so that each holds them in L1 and
// Redis (or holds "not found").
func (f *fleet) warm(t testing.TB, ids ...int64) {
	t.Helper()
	for _, in := range f.in {
		for _, id := range ids {
			if _, err := in.users.Get(context.Background(), id); err != nil && !errors.Is(err, repository.ErrNotFound) {
				t.Fatal(err)
			}
		}
	}
}

// truth is what GORM reads from the database for id (nil: no row).
func (f *fleet) truth(t testing.TB, id int64) *user {
	t.Helper()
	var u user
	err := f.base.First(&u, id).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return &u
}

// B is the staleness bound the tests hold other instances to after a write
// returned (the bus delivers in well under it on a loaded machine).
const B = 2 * time.Second

// check requires every instance to read what the database holds for ids:
// the writer (instance 0) at once, the others within B.
func (f *fleet) check(t *testing.T, ids ...int64) {
	t.Helper()
	for _, id := range ids {
		want := f.truth(t, id)
		read := func(in *inst) (*user, error) {
			u, err := in.users.Get(context.Background(), id)
			if errors.Is(err, repository.ErrNotFound) {
				return nil, nil
			}
			return u, err
		}
		same := func(got *user) bool {
			if got == nil || want == nil {
				return got == want
			}
			return *got == *want
		}
		got, err := read(f.in[0])
		if err != nil {
			t.Fatal(err)
		}
		if !same(got) {
			t.Fatalf("read-your-writes: the writer reads %+v for %d, the database has %+v", got, id, want)
		}
		for i, in := range f.in[1:] {
			deadline := time.Now().Add(B)
			for {
				got, err := read(in)
				if err != nil {
					t.Fatal(err)
				}
				if same(got) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("instance %d still reads %+v for %d %v after the write returned; the database has %+v", i+1, got, id, B, want)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
}

// epochs sums the epoch changes the fleet's caches saw.
func (f *fleet) epochs() uint64 {
	var n uint64
	for _, in := range f.in {
		n += in.c.Stats().EpochChanges
	}
	return n
}

func newUsers(db *gorm.DB, c *cache.Cache) (*repository.Repository[user, int64], error) {
	return repository.New[user, int64](db, c, repository.Options{})
}

// reopen opens another pool on like's database and naming, closed when t
// ends, without the plugin.
func reopen(t testing.TB, like *gorm.DB) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(like.Dialector, &gorm.Config{NamingStrategy: like.NamingStrategy, Logger: like.Logger})
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
