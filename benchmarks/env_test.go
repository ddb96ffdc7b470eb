package benchmarks

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/repository"
)

// Environment variables; `make bench` and `make test` set them.
const (
	envRedis    = "GORMCACHE_REDIS_ADDR" // e.g. 127.0.0.1:6379
	envPostgres = "GORMCACHE_PG_DSN"     // e.g. host=127.0.0.1 user=postgres dbname=test sslmode=disable
)

// numRows is the size of the benchmark table. The mixed workload draws its
// keys from all of them.
const numRows = 100_000

// Row is the benchmark model: about 300 bytes in PostgreSQL and in every
// codec used here. The embedded repository.Version is gormcache's
// optimistic-locking column; the peers read and bump the same column, so
// every library returns the version of the row it served.
type Row struct {
	ID     int64  `gorm:"primaryKey;autoIncrement:false"`
	Name   string `gorm:"size:64"`
	Email  string `gorm:"size:96"`
	Bio    string
	Score  int64
	Active bool
	repository.Version
}

// env is the shared state of one test binary: the services, the seeded
// table and the counters every contestant reports through.
type env struct {
	redisAddr string
	sqlDB     *sql.DB  // one pool for every contestant (pgx, with the SELECT counter)
	db        *gorm.DB // plain GORM on it; gorm-caches opens its own *gorm.DB
	naming    schema.NamingStrategy
	table     string
	runID     string // prefix of every Redis key and channel of this run
	seq       atomic.Int64
}

var (
	envOnce  sync.Once
	theEnv   *env
	errEnv   error
	selects  atomic.Uint64 // SELECT statements sent to PostgreSQL (pgx tracer)
	redisRTT atomic.Uint64 // Redis round trips made by clients of this suite (hook)
)

// getEnv returns the shared environment, seeding the table on first use,
// or skips when the services are not configured.
func getEnv(tb testing.TB) *env {
	tb.Helper()
	addr, dsn := os.Getenv(envRedis), os.Getenv(envPostgres)
	if addr == "" || dsn == "" {
		tb.Skip(skipMessage)
	}
	envOnce.Do(func() { theEnv, errEnv = setupEnv(addr, dsn) })
	if errEnv != nil {
		tb.Fatal(errEnv)
	}
	return theEnv
}

// skipMessage is the one line a run without the services prints.
const skipMessage = envRedis + "/" + envPostgres + " not set: run `make bench` (or `make test`) from the repository root to start Redis and PostgreSQL"

// TestMain says once why everything skips when the services are not
// configured (a skipped benchmark prints nothing without -v), and drops the
// table and deletes the run's Redis keys after the last test or benchmark.
func TestMain(m *testing.M) {
	if os.Getenv(envRedis) == "" || os.Getenv(envPostgres) == "" {
		fmt.Fprintln(os.Stderr, "benchmarks: "+skipMessage)
	}
	code := m.Run()
	releaseGroup()
	if theEnv != nil {
		theEnv.teardown()
	}
	os.Exit(code)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// loopbackHost reports whether host names this machine: a loopback name or
// address, or a Unix socket directory. The suite talks to nothing else.
func loopbackHost(host string) bool {
	if host == "localhost" || strings.HasPrefix(host, "/") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func setupEnv(addr, dsn string) (*env, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", envRedis, addr, err)
	}
	if !loopbackHost(host) {
		return nil, fmt.Errorf("%s=%q: the benchmarks only talk to loopback services", envRedis, addr)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", envPostgres, err)
	}
	if !loopbackHost(cfg.Host) {
		return nil, fmt.Errorf("%s: host %q: the benchmarks only talk to loopback services", envPostgres, cfg.Host)
	}
	cfg.Tracer = selectCounter{}

	id := randHex(4)
	e := &env{
		redisAddr: addr,
		naming:    schema.NamingStrategy{TablePrefix: "gcbench_" + id + "_"},
		runID:     "gcbench_" + id,
	}
	e.table = e.naming.TableName("Row")

	rdb := e.newRedis()
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis at %s does not answer: %w", addr, err)
	}

	e.sqlDB = stdlib.OpenDB(*cfg)
	e.sqlDB.SetMaxOpenConns(32)
	e.sqlDB.SetMaxIdleConns(32)
	if err := e.sqlDB.PingContext(ctx); err != nil {
		e.sqlDB.Close()
		return nil, fmt.Errorf("postgres does not answer: %w", err)
	}
	if e.db, err = e.openGorm(); err != nil {
		e.sqlDB.Close()
		return nil, err
	}
	if err := e.seed(); err != nil {
		e.teardown()
		return nil, fmt.Errorf("seed %s: %w", e.table, err)
	}
	return e, nil
}

// openGorm opens a *gorm.DB of its own (its own callbacks) on the shared pool.
func (e *env) openGorm() (*gorm.DB, error) {
	return gorm.Open(postgres.New(postgres.Config{Conn: e.sqlDB}), &gorm.Config{
		Logger:         logger.Discard,
		NamingStrategy: e.naming,
	})
}

// seedRow returns row id as seeded: deterministic, about 300 bytes.
func seedRow(id int64) Row {
	r := mrand.New(mrand.NewPCG(uint64(id), 0x9e3779b97f4a7c15))
	return Row{
		ID:      id,
		Name:    fmt.Sprintf("user-%06d-%s", id, letters(r, 12)),
		Email:   fmt.Sprintf("%s.%06d@%s.example.com", letters(r, 8), id, letters(r, 6)),
		Bio:     letters(r, 200),
		Score:   r.Int64N(1_000_000),
		Active:  r.IntN(2) == 1,
		Version: 1,
	}
}

// letters returns n pseudo-random lower-case letters and spaces (text that
// compresses about as well as real prose).
func letters(r *mrand.Rand, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz     "
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// seed creates the table and fills it with numRows rows by COPY.
func (e *env) seed() error {
	if err := e.db.AutoMigrate(&Row{}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := e.sqlDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		_, err := pc.CopyFrom(ctx, pgx.Identifier{e.table},
			[]string{"id", "name", "email", "bio", "score", "active", "version"},
			pgx.CopyFromFunc(func() func() ([]any, error) {
				next := int64(0)
				return func() ([]any, error) {
					if next == numRows {
						return nil, nil
					}
					next++
					r := seedRow(next)
					return []any{r.ID, r.Name, r.Email, r.Bio, r.Score, r.Active, int64(r.Version)}, nil
				}
			}()))
		return err
	})
	if err != nil {
		return err
	}
	return e.db.Exec(`ANALYZE "` + e.table + `"`).Error
}

func (e *env) teardown() {
	if e.db != nil {
		e.db.Exec(`DROP TABLE IF EXISTS "` + e.table + `"`)
	}
	rdb := e.newRedis()
	deletePrefix(rdb, e.runID)
	rdb.Close()
	if e.sqlDB != nil {
		e.sqlDB.Close()
	}
}

// newNamespace returns a fresh key prefix for one group of instances.
func (e *env) newNamespace(contestant string) string {
	name := strings.NewReplacer("-", "_", ".", "_", "/", "_").Replace(contestant)
	return fmt.Sprintf("%s_%s_%d", e.runID, name, e.seq.Add(1))
}

// newRedis returns a client of its own (its own pool), counting round trips.
// ContextTimeoutEnabled is what gormcache requires; it changes nothing for
// the peers, whose calls carry no deadline.
func (e *env) newRedis() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: e.redisAddr, ContextTimeoutEnabled: true})
	c.AddHook(rttHook{})
	return c
}

// deletePrefix deletes every key starting with prefix (SCAN + UNLINK).
func deletePrefix(rdb redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		rdb.Unlink(ctx, batch...)
	}
}

// selectCounter counts the SELECT statements pgx sends: the database
// queries of every contestant, whatever caching sits above GORM.
type selectCounter struct{}

func (selectCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	sql := strings.TrimLeft(d.SQL, " \t\r\n(")
	if len(sql) >= 6 && strings.EqualFold(sql[:6], "select") {
		selects.Add(1)
	}
	return ctx
}

func (selectCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// rttHook counts Redis round trips: one per command, one per pipeline.
type rttHook struct{}

func (rttHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (rttHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		redisRTT.Add(1)
		return next(ctx, cmd)
	}
}

func (rttHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		redisRTT.Add(1)
		return next(ctx, cmds)
	}
}

// errConflict is what a contestant's Update returns when its optimistic lock
// failed (only gormcache has one); the harness re-reads and retries.
var errConflict = errors.New("version conflict")
