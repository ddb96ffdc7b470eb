// Package testenv gives tests real services: the Redis and PostgreSQL that
// `make test` starts, throwaway redis-server processes on other loopback
// ports, and unique key prefixes and table names so tests run in parallel and
// leave nothing behind.
//
// When the environment variables are absent (a plain `go test` on a laptop),
// tests that need a service skip with one line saying to run `make test`.
// Under `make test` they are set, and a service that does not answer fails
// the test instead.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"
)

// Environment variables read by tests; `make test` sets them.
const (
	EnvRedis    = "GORMCACHE_REDIS_ADDR" // e.g. 127.0.0.1:6379
	EnvPostgres = "GORMCACHE_PG_DSN"     // e.g. host=127.0.0.1 user=postgres dbname=test sslmode=disable
)

func need(t testing.TB, env string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		noticeSkip(env)
		t.Skipf("%s not set: run `make test` to start Redis and PostgreSQL and run every test", env)
	}
	return v
}

// RedisAddr returns the address of the shared test Redis, or skips.
func RedisAddr(t testing.TB) string { return need(t, EnvRedis) }

// Redis returns a client of the shared test Redis, closed when t ends. It
// fails t if Redis does not answer.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: RedisAddr(t), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at %s does not answer: %v", c.Options().Addr, err)
	}
	return c
}

var nameRE = regexp.MustCompile(`[^a-z0-9]+`)

// Name returns a name unique to this test run: lower-case letters, digits
// and underscores, starting with a letter, at most 48 bytes. Use it for key
// namespaces and table names.
func Name(t testing.TB) string {
	var b [4]byte
	rand.Read(b[:])
	base := strings.Trim(nameRE.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(base) > 36 {
		base = base[len(base)-36:]
	}
	return "t_" + base + "_" + hex.EncodeToString(b[:])
}

// Namespace returns a unique cache namespace and deletes every Redis key
// under it when t ends.
func Namespace(t testing.TB, rdb redis.UniversalClient) string {
	t.Helper()
	ns := Name(t)
	t.Cleanup(func() { DeletePrefix(rdb, ns+":") })
	return ns
}

// DeletePrefix deletes every key starting with prefix (SCAN + DEL).
func DeletePrefix(rdb redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	del := func(c redis.UniversalClient) {
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		for _, k := range keys {
			c.Del(ctx, k)
		}
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { del(c); return nil })
		return
	}
	del(rdb)
}

// Postgres returns a GORM handle on the shared test database, or skips.
func Postgres(t testing.TB) *gorm.DB {
	t.Helper()
	dsn := need(t, EnvPostgres)
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("postgres (%s): %v", dsn, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(20)
	t.Cleanup(func() { sqlDB.Close() })
	if err := sqlDB.Ping(); err != nil {
		t.Fatalf("postgres (%s) does not answer: %v", dsn, err)
	}
	return db
}

// PostgresPrefixed returns a GORM handle on the shared test database whose
// naming strategy prefixes every table with a name unique to t, so models
// can be migrated per test; the tables are dropped when t ends.
func PostgresPrefixed(t testing.TB) *gorm.DB {
	t.Helper()
	base := Postgres(t)
	prefix := Name(t) + "_"
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: mustSQLDB(t, base)}), &gorm.Config{
		Logger:         logger.Discard,
		NamingStrategy: schema.NamingStrategy{TablePrefix: prefix},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var tables []string
		base.Raw(`SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND starts_with(tablename, ?)`, prefix).Scan(&tables)
		for _, tb := range tables {
			base.Exec(`DROP TABLE IF EXISTS "` + tb + `" CASCADE`)
		}
	})
	return db
}

func mustSQLDB(t testing.TB, db *gorm.DB) *sql.DB {
	t.Helper()
	s, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Table returns a unique table name and drops that table when t ends.
func Table(t testing.TB, db *gorm.DB) string {
	t.Helper()
	name := Name(t)
	t.Cleanup(func() { db.Exec(`DROP TABLE IF EXISTS "` + name + `" CASCADE`) })
	return name
}

// RedisServer is a throwaway redis-server on its own loopback port, for
// tests that stop, restart or kill Redis. It is stopped by PID.
type RedisServer struct {
	t    testing.TB
	Port int
	Args []string // extra redis-server arguments (e.g. "--maxmemory", "2mb"), given on every Start
	// Conf, if set, is a configuration file given to redis-server before
	// the arguments: what CONFIG REWRITE stores in it (a sentinel's REPLICAOF)
	// holds across restarts, as on a server run from a config file.
	Conf string
	mu   sync.Mutex // protects cmd
	cmd  *exec.Cmd
}

// Addr is the server's address.
func (s *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// StartRedis starts a redis-server on a free loopback port and stops it when
// t ends. It skips when the shared Redis is not configured (no `make test`)
// and fails when redis-server is missing under `make test`.
func StartRedis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	RedisAddr(t)
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not found: %v", err)
	}
	s := &RedisServer{t: t, Port: freePort(t), Args: args}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts the server (again) on its port and waits until it answers.
func (s *RedisServer) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	var args []string
	if s.Conf != "" {
		args = append(args, s.Conf)
	}
	args = append(append(args, "--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"), s.Args...)
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // a killed test binary leaves no server behind
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not answer: %v", s.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server by PID (SIGKILL: it loses everything, like a crash)
// and waits for it to exit.
func (s *RedisServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
}

// PID returns the server's process id, or 0 when stopped.
func (s *RedisServer) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Eventually polls cond every few milliseconds until it holds or timeout
// passes, then fails t with msg. It is for waiting on real servers (a
// restart, a reconnect), never for ordering the library's own steps.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	if !WaitFor(timeout, cond) {
		t.Fatalf("timed out after %v: %s", timeout, fmt.Sprintf(msg, args...))
	}
}

// WaitFor polls cond every few milliseconds until it holds or timeout
// passes, and reports whether it held: Eventually for a caller that decides
// itself what a timeout means.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
