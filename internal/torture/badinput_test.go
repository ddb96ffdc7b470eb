package torture

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/testenv"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

// badEnv is one instance (cache, bus, repository of Row) on the shared
// Redis and PostgreSQL, with rows 1..3 seeded.
type badEnv struct {
	db   *gorm.DB
	rdb  *redis.Client
	ns   string
	c    *cache.Cache
	bus  *invalidation.Bus
	repo *repository.Repository[Row, int64]
}

func newBadEnv(t *testing.T) *badEnv {
	t.Helper()
	e := &badEnv{db: testenv.PostgresPrefixed(t), rdb: testenv.Redis(t)}
	e.ns = testenv.Namespace(t, e.rdb)
	if err := e.db.AutoMigrate(&Row{}); err != nil {
		t.Fatal(err)
	}
	for id := int64(1); id <= 3; id++ {
		if err := e.db.Create(&Row{ID: id, Token: 1000 + id, Note: "seed", Version: 1}).Error; err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	var err error
	if e.c, err = cache.New(ctx, cache.Options{Redis: e.rdb, Namespace: e.ns}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.c.Close() })
	if e.bus, err = invalidation.New(ctx, e.c, invalidation.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.bus.Close() })
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.bus.WaitHealthy(wctx); err != nil {
		t.Fatal(err)
	}
	if e.repo, err = repository.New[Row, int64](e.db, e.c, repository.Options{Namespace: RowNamespace}); err != nil {
		t.Fatal(err)
	}
	return e
}

// redisKey is the cache's Redis key for a cache key: "<namespace>:{<key>}".
func (e *badEnv) redisKey(key string) string { return e.ns + ":{" + key + "}" }

// truth reads row id from the database.
func (e *badEnv) truth(t *testing.T, id int64) Row {
	t.Helper()
	var r Row
	if err := e.db.Take(&r, id).Error; err != nil {
		t.Fatal(err)
	}
	return r
}

// readProblem reads row id through the repository and describes how the
// answer differs from the database's row ("" if it does not).
func (e *badEnv) readProblem(t *testing.T, id int64) string {
	t.Helper()
	got, err := e.repo.Get(context.Background(), id)
	want := e.truth(t, id)
	switch {
	case err != nil:
		return fmt.Sprintf("Get(%d): %v", id, err)
	case got == nil:
		return fmt.Sprintf("Get(%d) returned a nil row and a nil error", id)
	case *got != want:
		return fmt.Sprintf("Get(%d) = %+v, database holds %+v: a wrong answer", id, *got, want)
	}
	return ""
}

// mustBeTruth reads row id through the repository and requires exactly the
// database's row.
func (e *badEnv) mustBeTruth(t *testing.T, id int64) {
	t.Helper()
	if p := e.readProblem(t, id); p != "" {
		t.Fatal(p)
	}
}

// noPanic runs f and fails t if it panics.
func noPanic(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	f()
}

type errCase struct {
	name string
	want error // errors.Is target
	run  func() error
}

func runErrCases(t *testing.T, cases []errCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			noPanic(t, func() { err = tc.run() })
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want errors.Is(err, %v)", err, tc.want)
			}
		})
	}
}

// fixedTable names every model's table table: other shapes of Row map to
// the same rows.
type fixedTable struct {
	schema.NamingStrategy
	table string
}

func (f fixedTable) TableName(string) string { return f.table }

// composite has a two-column primary key, which the repository refuses.
type composite struct {
	A int64 `gorm:"primaryKey"`
	B int64 `gorm:"primaryKey"`
}

// TestBadInputErrors calls every public entry point with bad arguments: each
// returns an error that errors.Is recognises, never panics.
func TestBadInputErrors(t *testing.T) {
	e := newBadEnv(t)
	ctx := context.Background()
	var nilCache *cache.Cache
	var nilCtx context.Context
	load := func(context.Context, string) (int, uint64, error) { return 1, 1, nil }
	loadMany := func(context.Context, []string) (map[string]cache.Versioned[int], error) { return nil, nil }
	noDeadlines := redis.NewClient(&redis.Options{Addr: e.rdb.Options().Addr})
	defer noDeadlines.Close()
	closed, err := cache.New(ctx, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	local, err := cache.New(ctx, cache.Options{}) // no Redis
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	wrapped, err := repository.Wrap(e.c, "wrapped", func(_ context.Context, k string) (string, error) { return "v:" + k, nil }, repository.WrapOptions[string]{})
	if err != nil {
		t.Fatal(err)
	}
	var txDB *gorm.DB // a transaction-bound handle, valid inside the test below
	tx := e.db.Begin()
	defer tx.Rollback()
	txDB = tx

	runErrCases(t, []errCase{
		// cache.New
		{"cache.New namespace with a space", cache.ErrInvalidOptions, func() error { _, err := cache.New(ctx, cache.Options{Namespace: "a b"}); return err }},
		{"cache.New namespace with a brace", cache.ErrInvalidOptions, func() error { _, err := cache.New(ctx, cache.Options{Namespace: "a{"}); return err }},
		{"cache.New oversize namespace", cache.ErrInvalidOptions, func() error {
			_, err := cache.New(ctx, cache.Options{Namespace: strings.Repeat("n", 200)})
			return err
		}},
		{"cache.New shards not a power of two", cache.ErrInvalidOptions, func() error { _, err := cache.New(ctx, cache.Options{L1Shards: 3}); return err }},
		{"cache.New negative TTL", cache.ErrInvalidOptions, func() error { _, err := cache.New(ctx, cache.Options{L2TTL: -time.Second}); return err }},
		{"cache.New tombstone shorter than load timeout", cache.ErrInvalidOptions, func() error {
			_, err := cache.New(ctx, cache.Options{TombstoneTTL: time.Second, LoadTimeout: 2 * time.Second})
			return err
		}},
		{"cache.New jitter ≥ 1", cache.ErrInvalidOptions, func() error { _, err := cache.New(ctx, cache.Options{TTLJitter: 1.5}); return err }},
		{"cache.New client ignoring deadlines", cache.ErrInvalidOptions, func() error { _, err := cache.New(ctx, cache.Options{Redis: noDeadlines}); return err }},
		// cache reads
		{"cache.Get nil cache", cache.ErrNilCache, func() error { _, err := cache.Get(ctx, nilCache, "k", load); return err }},
		{"cache.Get nil loader", cache.ErrNilLoader, func() error { _, err := cache.Get[int](ctx, e.c, "k", nil); return err }},
		{"cache.Get empty key", cache.ErrInvalidKey, func() error { _, err := cache.Get(ctx, e.c, "", load); return err }},
		{"cache.Get key with a hash tag", cache.ErrInvalidKey, func() error { _, err := cache.Get(ctx, e.c, "a{b}", load); return err }},
		{"cache.Get oversize key", cache.ErrInvalidKey, func() error {
			_, err := cache.Get(ctx, e.c, strings.Repeat("k", cache.MaxKeyLen+1), load)
			return err
		}},
		{"cache.Get closed cache", cache.ErrClosed, func() error { _, err := cache.Get(ctx, closed, "k", load); return err }},
		{"cache.Get loader panics", cache.ErrLoaderPanic, func() error {
			_, err := cache.Get(ctx, e.c, "panics", func(context.Context, string) (int, uint64, error) { panic("boom") })
			return err
		}},
		{"cache.Get value the codec cannot encode", cache.ErrUnsupportedType, func() error {
			_, err := cache.Get(ctx, e.c, "unencodable", func(context.Context, string) (struct{ F func() }, uint64, error) {
				return struct{ F func() }{func() {}}, 1, nil
			})
			return err
		}},
		{"cache.Load nil loader", cache.ErrNilLoader, func() error {
			_, err := cache.Load[int, int](ctx, e.c, "k", 1, nil)
			return err
		}},
		{"cache.GetMany nil cache", cache.ErrNilCache, func() error { _, err := cache.GetMany(ctx, nilCache, []string{"k"}, loadMany); return err }},
		{"cache.GetMany nil loader", cache.ErrNilLoader, func() error { _, err := cache.GetMany[int](ctx, e.c, []string{"k"}, nil); return err }},
		{"cache.GetMany bad key", cache.ErrInvalidKey, func() error { _, err := cache.GetMany(ctx, e.c, []string{"ok", ""}, loadMany); return err }},
		// cache invalidation and inspection
		{"Invalidate nil cache", cache.ErrNilCache, func() error { return nilCache.Invalidate(ctx, "k", 1) }},
		{"Invalidate bad key", cache.ErrInvalidKey, func() error { return e.c.Invalidate(ctx, "}", 1) }},
		{"Invalidate version above 2^53", cache.ErrInvalidVersion, func() error { return e.c.Invalidate(ctx, "k", 1<<60) }},
		{"Invalidate closed cache", cache.ErrClosed, func() error { return closed.Invalidate(ctx, "k", 1) }},
		{"InvalidateMany one bad key", cache.ErrInvalidKey, func() error {
			return e.c.InvalidateMany(ctx, []cache.Invalidation{{Key: "ok", Version: 1}, {Key: ""}})
		}},
		{"Peek bad key", cache.ErrInvalidKey, func() error { _, _, err := e.c.Peek(ctx, ""); return err }},
		{"Peek nil cache", cache.ErrNilCache, func() error { _, _, err := nilCache.Peek(ctx, "k"); return err }},
		{"RefreshEpoch nil cache", cache.ErrNilCache, func() error { return nilCache.RefreshEpoch(ctx) }},
		{"SetPublisher nil cache", cache.ErrNilCache, func() error { return nilCache.SetPublisher(e.bus) }},
		{"SetPublisher twice", cache.ErrPublisherSet, func() error { return e.c.SetPublisher(e.bus) }},
		// invalidation
		{"invalidation.New nil cache", invalidation.ErrInvalidOptions, func() error { _, err := invalidation.New(ctx, nil, invalidation.Options{}); return err }},
		{"invalidation.New cache without Redis", invalidation.ErrInvalidOptions, func() error {
			_, err := invalidation.New(ctx, local, invalidation.Options{})
			return err
		}},
		{"invalidation.New window under ping interval", invalidation.ErrInvalidOptions, func() error {
			_, err := invalidation.New(ctx, local, invalidation.Options{Redis: e.rdb, PingInterval: time.Second, HealthWindow: time.Millisecond})
			return err
		}},
		{"invalidation.New oversize instance id", invalidation.ErrInvalidOptions, func() error {
			_, err := invalidation.New(ctx, local, invalidation.Options{Redis: e.rdb, InstanceID: strings.Repeat("i", 100)})
			return err
		}},
		{"invalidation.Encode invalid event", invalidation.ErrBadEvent, func() error { _, err := invalidation.Encode(nil, invalidation.Event{}); return err }},
		{"invalidation.Decode garbage", invalidation.ErrBadEvent, func() error { _, err := invalidation.Decode([]byte("garbage")); return err }},
		{"invalidation.Decode nil", invalidation.ErrBadEvent, func() error { _, err := invalidation.Decode(nil); return err }},
		// repository.New
		{"repository.New nil db", repository.ErrInvalidArgument, func() error {
			_, err := repository.New[Row, int64](nil, e.c, repository.Options{})
			return err
		}},
		{"repository.New nil cache", repository.ErrInvalidArgument, func() error {
			_, err := repository.New[Row, int64](e.db, nil, repository.Options{})
			return err
		}},
		{"repository.New transaction-bound db", repository.ErrTxBound, func() error {
			_, err := repository.New[Row, int64](txDB, e.c, repository.Options{})
			return err
		}},
		{"repository.New not a struct", repository.ErrUnsupportedModel, func() error {
			_, err := repository.New[int, int64](e.db, e.c, repository.Options{})
			return err
		}},
		{"repository.New id type mismatch", repository.ErrUnsupportedModel, func() error {
			_, err := repository.New[Row, string](e.db, e.c, repository.Options{})
			return err
		}},
		{"repository.New composite key", repository.ErrUnsupportedModel, func() error {
			_, err := repository.New[composite, int64](e.db, e.c, repository.Options{})
			return err
		}},
		{"repository.New namespace with a brace", repository.ErrInvalidArgument, func() error {
			_, err := repository.New[Row, int64](e.db, e.c, repository.Options{Namespace: "a}"})
			return err
		}},
		{"repository.New unknown unique column", repository.ErrUnknownColumn, func() error {
			_, err := repository.New[Row, int64](e.db, e.c, repository.Options{UniqueColumns: []string{"nope"}})
			return err
		}},
		// repository reads
		{"Get zero id", repository.ErrInvalidID, func() error { _, err := e.repo.Get(ctx, 0); return err }},
		{"Get missing row", repository.ErrNotFound, func() error { _, err := e.repo.Get(ctx, 999999); return err }},
		{"Get missing row is gorm's not-found", gorm.ErrRecordNotFound, func() error { _, err := e.repo.Get(ctx, 999998); return err }},
		{"Get nil context", nil, func() error { _, err := e.repo.Get(nilCtx, 1); return err }},
		{"GetMany a zero id", repository.ErrInvalidID, func() error { _, err := e.repo.GetMany(ctx, []int64{1, 0}); return err }},
		{"GetMany a missing row", repository.ErrNotFound, func() error { _, err := e.repo.GetMany(ctx, []int64{1, 999999}); return err }},
		{"GetBy unknown column", repository.ErrUnknownColumn, func() error { _, err := e.repo.GetBy(ctx, "nope", 1); return err }},
		{"GetBy column that is not unique", repository.ErrNotUnique, func() error { _, err := e.repo.GetBy(ctx, "note", "seed"); return err }},
		{"GetBy nil value", repository.ErrInvalidArgument, func() error {
			r, err := repository.New[Row, int64](e.db, e.c, repository.Options{Namespace: RowNamespace, UniqueColumns: []string{"token"}})
			if err != nil {
				return err
			}
			_, err = r.GetBy(ctx, "token", nil)
			return err
		}},
		// repository writes
		{"Create nil", repository.ErrNilModel, func() error { return e.repo.Create(ctx, nil) }},
		{"Update nil", repository.ErrNilModel, func() error { return e.repo.Update(ctx, nil) }},
		{"Update zero id", repository.ErrInvalidID, func() error { return e.repo.Update(ctx, &Row{}) }},
		{"Update stale version", repository.ErrConflict, func() error { return e.repo.Update(ctx, &Row{ID: 3, Version: 99}) }},
		{"Updates no fields", repository.ErrInvalidArgument, func() error { return e.repo.Updates(ctx, &Row{ID: 3, Version: 1}, nil) }},
		{"Updates unknown column", repository.ErrUnknownColumn, func() error {
			return e.repo.Updates(ctx, &Row{ID: 3, Version: 1}, map[string]any{"nope": 1})
		}},
		{"Updates the version column", repository.ErrInvalidArgument, func() error {
			return e.repo.Updates(ctx, &Row{ID: 3, Version: 1}, map[string]any{"version": 7})
		}},
		{"Updates the primary key", repository.ErrInvalidArgument, func() error {
			return e.repo.Updates(ctx, &Row{ID: 3, Version: 1}, map[string]any{"id": 7})
		}},
		{"Delete nil", repository.ErrNilModel, func() error { return e.repo.Delete(ctx, nil) }},
		{"Delete zero id", repository.ErrInvalidID, func() error { return e.repo.Delete(ctx, &Row{}) }},
		{"Invalidate zero id", repository.ErrInvalidID, func() error { return e.repo.Invalidate(ctx, 0) }},
		// transactions
		{"Transaction nil db", repository.ErrInvalidArgument, func() error {
			return repository.Transaction(ctx, nil, func(*repository.Tx) error { return nil })
		}},
		{"Transaction nil function", repository.ErrInvalidArgument, func() error { return repository.Transaction(ctx, e.db, nil) }},
		{"Transaction on a transaction-bound db", repository.ErrTxBound, func() error {
			return repository.Transaction(ctx, txDB, func(*repository.Tx) error { return nil })
		}},
		{"nested Transaction nil function", repository.ErrInvalidArgument, func() error {
			return repository.Transaction(ctx, e.db, func(tx *repository.Tx) error { return tx.Transaction(nil) })
		}},
		{"RollbackTo unknown savepoint", repository.ErrInvalidArgument, func() error {
			return repository.Transaction(ctx, e.db, func(tx *repository.Tx) error { return tx.RollbackTo("nope") })
		}},
		{"transaction-bound Get zero id", repository.ErrInvalidID, func() error {
			return repository.Transaction(ctx, e.db, func(tx *repository.Tx) error { _, err := e.repo.WithTx(tx).Get(ctx, 0); return err })
		}},
		// Wrap
		{"Wrap nil cache", repository.ErrInvalidArgument, func() error {
			_, err := repository.Wrap(nil, "w", func(context.Context, int) (int, error) { return 0, nil }, repository.WrapOptions[int]{})
			return err
		}},
		{"Wrap nil function", repository.ErrInvalidArgument, func() error {
			_, err := repository.Wrap[int, int](e.c, "w", nil, repository.WrapOptions[int]{})
			return err
		}},
		{"Wrap empty namespace", repository.ErrInvalidArgument, func() error {
			_, err := repository.Wrap(e.c, "", func(context.Context, int) (int, error) { return 0, nil }, repository.WrapOptions[int]{})
			return err
		}},
		{"Wrap namespace with a brace", repository.ErrInvalidArgument, func() error {
			_, err := repository.Wrap(e.c, "w{", func(context.Context, int) (int, error) { return 0, nil }, repository.WrapOptions[int]{})
			return err
		}},
		{"Cached.Get zero key", repository.ErrInvalidID, func() error { _, err := wrapped.Get(ctx, ""); return err }},
		{"Cached.Get oversize key", cache.ErrInvalidKey, func() error { _, err := wrapped.Get(ctx, strings.Repeat("k", cache.MaxKeyLen)); return err }},
		{"Cached.Get 2 KB key is hashed", nil, func() error {
			k := strings.Repeat("k", 2000)
			v, err := wrapped.Get(ctx, k)
			if err == nil && v != "v:"+k {
				return fmt.Errorf("got %q", v)
			}
			return err
		}},
		{"Cached.Get key with braces is escaped", nil, func() error {
			v, err := wrapped.Get(ctx, "{x}")
			if err == nil && v != "v:{x}" {
				return fmt.Errorf("got %q", v)
			}
			return err
		}},
		{"Cached.Invalidate zero key", repository.ErrInvalidID, func() error { return wrapped.Invalidate(ctx, "") }},
	})

	// Nil receivers and nil contexts of the remaining methods must not panic.
	t.Run("nil receivers", func(t *testing.T) {
		noPanic(t, func() { nilCache.Close() })
		noPanic(t, func() { nilCache.EvictLocal("k", 1) })
		noPanic(t, func() { nilCache.FlushLocal() })
		noPanic(t, func() { nilCache.SetLocalServing(true) })
		noPanic(t, func() { _ = nilCache.LocalServing() })
		noPanic(t, func() { nilCache.Settle() })
		noPanic(t, func() { _, _ = cache.Get(nilCtx, e.c, "nilctx", load) })
		noPanic(t, func() { _ = e.c.Invalidate(nilCtx, "nilctx", 0) })
	})
}

// TestBadInputData plants bad bytes where the library reads them: in Redis
// under a row's key, through Redis into L1, on the invalidation channel, and
// entries of another shape of the cached struct. Every read must return the
// database's row (a miss), never a wrong answer, never a panic.
func TestBadInputData(t *testing.T) {
	e := newBadEnv(t)
	ctx := context.Background()
	key := RowKey(1)
	rk := e.redisKey(key)

	// A genuine entry, for planting variants of it.
	e.mustBeTruth(t, 1)
	e.c.Settle()
	genuine, err := e.rdb.Get(ctx, rk).Bytes()
	if err != nil {
		t.Fatalf("no entry in Redis under %s: %v", rk, err)
	}
	const header = 38 // the envelope header (cache/envelope.go)
	if len(genuine) <= header {
		t.Fatalf("entry of %d bytes", len(genuine))
	}
	withPayload := func(p []byte) []byte {
		b := append(append([]byte(nil), genuine[:header]...), p...)
		binary.BigEndian.PutUint32(b[34:], uint32(len(p)))
		return b
	}
	flipped := append([]byte(nil), genuine...)
	flipped[len(flipped)-1] ^= 0x01

	for _, tc := range []struct {
		name  string
		plant func() error
		known bool // a library issue found here and fixed: only logged with -torture.strict=false
	}{
		{"garbage", func() error { return e.rdb.Set(ctx, rk, "\x00\xffgarbage", 0).Err() }, false},
		{"empty", func() error { return e.rdb.Set(ctx, rk, "", 0).Err() }, false},
		{"foreign JSON", func() error { return e.rdb.Set(ctx, rk, `{"ID":1,"Token":666,"Version":99}`, 0).Err() }, false},
		{"truncated entry", func() error { return e.rdb.Set(ctx, rk, genuine[:len(genuine)-2], 0).Err() }, false},
		{"header only", func() error { return e.rdb.Set(ctx, rk, genuine[:header], 0).Err() }, false},
		{"valid header, garbage payload", func() error {
			return e.rdb.Set(ctx, rk, withPayload([]byte("\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5")), 0).Err()
		}, true},
		{"valid header, empty payload", func() error { return e.rdb.Set(ctx, rk, withPayload(nil), 0).Err() }, true},
		{"valid header, oversize payload", func() error {
			return e.rdb.Set(ctx, rk, withPayload([]byte(strings.Repeat("\xff", 1<<20))), 0).Err()
		}, false},
		{"another Redis type", func() error { return e.rdb.RPush(ctx, rk, "a", "b").Err() }, false},
		{"a hash", func() error { return e.rdb.HSet(ctx, rk, "f", "v").Err() }, false},
		// Planted in L1 too: the flight fills L1 from Redis before the
		// payload is decoded.
		{"valid header, short payload (reaches L1 before it is decoded)", func() error {
			return e.rdb.Set(ctx, rk, withPayload([]byte{0x01, 0x02, 0x03}), 0).Err()
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.c.FlushLocal()
			if err := e.rdb.Del(ctx, rk).Err(); err != nil {
				t.Fatal(err)
			}
			if err := tc.plant(); err != nil {
				t.Fatal(err)
			}
			planted, _ := e.rdb.Get(ctx, rk).Bytes() // nil for other Redis types
			before := e.c.Stats().DecodeErrors
			var problems []string
			for i := 0; i < 2; i++ { // again: from whatever tier now holds it
				noPanic(t, func() {
					if p := e.readProblem(t, 1); p != "" {
						problems = append(problems, p)
					}
				})
			}
			e.c.Settle()
			if now, _ := e.rdb.Get(ctx, rk).Bytes(); planted != nil && string(now) == string(planted) {
				problems = append(problems, "the bad bytes are still in Redis after the reads (never deleted)")
			}
			if e.c.Stats().DecodeErrors == before {
				problems = append(problems, "the bad bytes were not counted")
			}
			if len(problems) == 0 {
				return
			}
			msg := strings.Join(problems, "; ")
			if tc.known && !*strict {
				t.Logf("KNOWN LIBRARY ISSUE (see TestCorruptPayloadNilNil; -torture.strict fails here): %s", msg)
				return
			}
			t.Error(msg)
		})
	}

	// A payload that still decodes: a bit flipped in the last byte of a
	// genuine entry (the row's version field). Without the envelope's
	// checksum nothing could tell it from a genuine entry; with it, it is a
	// miss. -torture.strict=false only logs a wrong answer here.
	t.Run("bit flip in the payload", func(t *testing.T) {
		e.c.FlushLocal()
		if err := e.rdb.Set(ctx, rk, flipped, 0).Err(); err != nil {
			t.Fatal(err)
		}
		got, err := e.repo.Get(ctx, 1)
		want := e.truth(t, 1)
		switch {
		case err != nil:
			t.Fatalf("Get: %v", err)
		case *got == want:
			t.Logf("the flipped bit was caught (or did not matter)")
		case *strict:
			t.Errorf("served %+v for the database's %+v: a corrupted payload that still decodes is a wrong answer (the envelope's checksum must catch it)", *got, want)
		default:
			t.Logf("served %+v for the database's %+v: a wrong answer, only logged with -torture.strict=false", *got, want)
		}
		e.rdb.Del(ctx, rk)
		e.c.FlushLocal()
	})

	t.Run("garbage on the invalidation channel", func(t *testing.T) {
		e.mustBeTruth(t, 2)
		e.mustBeTruth(t, 2) // in L1 now
		channel := e.ns + ":invalidations"
		other, _ := invalidation.Encode(nil, invalidation.Event{Kind: invalidation.KindInvalidate, Namespace: "someone-else", Origin: "x", Seq: 1,
			Keys: []cache.Invalidation{{Key: RowKey(2), Version: 9}}})
		valid, _ := invalidation.Encode(nil, invalidation.Event{Kind: invalidation.KindInvalidate, Namespace: e.ns, Origin: "x", Seq: 1,
			Keys: []cache.Invalidation{{Key: RowKey(2), Version: 9}}})
		payloads := []string{
			"", "garbage", "gI", "gI\x01", "gI\x01\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", `{"key":"row:2"}`,
			string(other), string(valid[:len(valid)-1]), string(valid) + "x", strings.Repeat("\xff", 1<<16),
			"gI\x01\x01\x01x\x01\x00\x00\x01n\xff\xff\x03", // claims 65535 keys
		}
		bad := e.bus.Stats().BadEvents
		evicted := e.c.Stats().LocalEvictions
		for _, p := range payloads {
			if err := e.rdb.Publish(ctx, channel, p).Err(); err != nil {
				t.Fatal(err)
			}
		}
		testenv.Eventually(t, 5*time.Second, func() bool { return e.bus.Stats().BadEvents >= bad+uint64(len(payloads)) },
			"bad events not counted: %+v", e.bus.Stats())
		if got := e.c.Stats().LocalEvictions; got != evicted {
			t.Errorf("garbage evicted %d keys", got-evicted)
		}
		e.mustBeTruth(t, 2)
		if !e.bus.Healthy() {
			t.Errorf("garbage made the bus unhealthy: %+v", e.bus.Stats())
		}
	})

	t.Run("schema change", func(t *testing.T) {
		// The same table and namespace, three shapes of the struct: a deploy
		// that reordered fields and one that added a `gorm:"-"` field share
		// the entries (rows are stored by column), one that maps fewer
		// columns has its own (a schema mismatch, never a wrong decode).
		type rowReordered struct {
			ID    int64 `gorm:"primaryKey"`
			Note  string
			Token int64
			repository.Version
		}
		type rowExtra struct {
			ID    int64 `gorm:"primaryKey"`
			Token int64
			Note  string
			Extra string `gorm:"-"`
			repository.Version
		}
		sqlDB, err := e.db.DB()
		if err != nil {
			t.Fatal(err)
		}
		same, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard,
			NamingStrategy: fixedTable{table: e.db.NamingStrategy.TableName("Row")}})
		if err != nil {
			t.Fatal(err)
		}
		reordered, err := repository.New[rowReordered, int64](same, e.c, repository.Options{Namespace: RowNamespace})
		if err != nil {
			t.Fatal(err)
		}
		extra, err := repository.New[rowExtra, int64](same, e.c, repository.Options{Namespace: RowNamespace})
		if err != nil {
			t.Fatal(err)
		}
		type rowFewer struct {
			ID    int64 `gorm:"primaryKey"`
			Token int64
			repository.Version
		}
		fewer, err := repository.New[rowFewer, int64](same, e.c, repository.Options{Namespace: RowNamespace})
		if err != nil {
			t.Fatal(err)
		}
		want := e.truth(t, 3)
		before := e.c.Stats().SchemaMismatches
		for round := 0; round < 2; round++ {
			e.mustBeTruth(t, 3) // caches Row's shape
			e.c.Settle()
			r, err := reordered.Get(ctx, 3)
			if err != nil || r.ID != want.ID || r.Token != want.Token || r.Note != want.Note || r.Version != want.Version {
				t.Fatalf("reordered shape: %+v, %v; database %+v", r, err, want)
			}
			e.c.Settle()
			x, err := extra.Get(ctx, 3)
			if err != nil || x.ID != want.ID || x.Token != want.Token || x.Note != want.Note || x.Version != want.Version {
				t.Fatalf("extended shape: %+v, %v; database %+v", x, err, want)
			}
			e.c.Settle()
		}
		if n := e.c.Stats().SchemaMismatches; n != before {
			t.Errorf("%d schema mismatches between shapes with the same columns", n-before)
		}
		f, err := fewer.Get(ctx, 3)
		if err != nil || f.ID != want.ID || f.Token != want.Token || f.Version != want.Version {
			t.Fatalf("shape with fewer columns: %+v, %v; database %+v", f, err, want)
		}
		if e.c.Stats().SchemaMismatches == before {
			t.Errorf("a shape with other columns read another shape's entry without a schema mismatch")
		}
	})

	t.Run("oversize value", func(t *testing.T) {
		r := e.truth(t, 2)
		r.Note = strings.Repeat("x", 256<<10) // above L1's 64 KiB entry limit
		if err := e.repo.Update(ctx, &r); err != nil {
			t.Fatal(err)
		}
		skips := e.c.Stats().L1Skips
		e.mustBeTruth(t, 2)
		e.c.Settle()
		e.mustBeTruth(t, 2)
		if e.c.Stats().L1Skips == skips {
			t.Errorf("a value above L1MaxEntryBytes was not kept out of L1")
		}
	})
}

// TestCorruptPayloadNilNil guards a library issue found here: an entry with
// a valid envelope whose payload does not decode (planted here; in
// production a codec bug or a fingerprint collision) made Get return a nil
// value and a nil error (cache.Get: the zero value) when L1 was enabled, and
// the entry was never deleted from Redis, so every later read did the same.
//
// Why it happened: for an L2 hit, flight() handed the very bytes it read
// from Redis to fillL1, which rewrote their expiry in place (setExpiry);
// decodeResult then failed, and dropCorrupt deleted the Redis key only if
// it still held those (now modified) bytes, so it never did. get() retried
// once, met the same bytes, and returned what the failed decode left: (nil,
// nil). Fixed: the L1 fill gets a copy, the corrupt entry is deleted, and a
// failed decode answers from the database without caching.
func TestCorruptPayloadNilNil(t *testing.T) {
	if !*strict {
		t.Skip("-torture.strict=false")
	}
	rdb := testenv.Redis(t)
	ctx := context.Background()
	type row struct{ A, B int64 }
	load := func(context.Context, string) (*row, uint64, error) { return &row{1, 2}, 1, nil }
	for _, l1 := range []int{-1, 0} {
		ns := testenv.Namespace(t, rdb)
		c, err := cache.New(ctx, cache.Options{Redis: rdb, Namespace: ns, L1MaxBytes: l1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := cache.Get(ctx, c, "k", load); err != nil {
			t.Fatal(err)
		}
		c.Settle()
		b, err := rdb.Get(ctx, ns+":{k}").Bytes()
		if err != nil {
			t.Fatal(err)
		}
		bad := append(append([]byte(nil), b[:38]...), 0xff, 0xfe, 0xfd) // the genuine header, a payload that does not decode
		binary.BigEndian.PutUint32(bad[34:], 3)
		rdb.Set(ctx, ns+":{k}", bad, 0)
		c.FlushLocal()
		v, err := cache.Get(ctx, c, "k", load)
		left, _ := rdb.Get(ctx, ns+":{k}").Bytes()
		if v == nil || err != nil || string(left) == string(bad) {
			t.Errorf("L1MaxBytes=%d: Get = %v, %v; the undecodable entry is still in Redis: %v", l1, v, err, string(left) == string(bad))
		}
	}
}
