// Package demoenv gives the examples their servers: real PostgreSQL and
// Redis when their addresses are given, else embedded ones (an in-process
// Redis-compatible server and a pure-Go SQLite database), so that `go run`
// works on a machine with no servers installed.
package demoenv

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/glebarez/sqlite"
	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Flags declares the -redis and -dsn flags every example takes (defaulting
// to GORMCACHE_REDIS_ADDR and GORMCACHE_PG_DSN); both empty means embedded
// servers.
func Flags() (redisAddr, dsn *string) {
	redisAddr = flag.String("redis", os.Getenv("GORMCACHE_REDIS_ADDR"), "Redis address; empty with -dsn empty: embedded servers")
	dsn = flag.String("dsn", os.Getenv("GORMCACHE_PG_DSN"), "PostgreSQL DSN; empty with -redis empty: embedded servers")
	return redisAddr, dsn
}

// Env is an open pair of servers.
type Env struct {
	DB        *gorm.DB
	Redis     *redis.Client
	RedisAddr string // what other processes dial
	DSN       string // what other processes open
	Embedded  bool   // Redis and SQL are the embedded ones
	mr        *miniredis.Miniredis
	closers   []func()
}

// KillSubscriptions drops every pub/sub connection to Redis, as a network
// fault would: CLIENT KILL TYPE pubsub on a real server; on the embedded one,
// which has no CLIENT KILL, a restart in place that keeps the data and drops
// every connection.
func (e *Env) KillSubscriptions(ctx context.Context) error {
	if e.mr != nil {
		e.mr.Close()
		return e.mr.Restart()
	}
	return e.Redis.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err()
}

// Embedded starts an in-process Redis-compatible server and creates a
// SQLite database file in a temporary directory; other processes can reach
// both through RedisAddr and DSN while this process runs.
func Embedded() (*Env, error) {
	mr, err := miniredis.Run()
	if err != nil {
		return nil, fmt.Errorf("embedded redis: %w", err)
	}
	dir, err := os.MkdirTemp("", "gormcache-demo-")
	if err != nil {
		mr.Close()
		return nil, err
	}
	dsn := "sqlite:" + filepath.Join(dir, "demo.db")
	env, err := Connect(mr.Addr(), dsn)
	if err != nil {
		mr.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	env.Embedded = true
	env.mr = mr
	env.closers = append(env.closers, mr.Close, func() { os.RemoveAll(dir) })
	return env, nil
}

// Open connects to the given servers, or starts embedded ones when both
// are empty. Giving only one of them is an error: mixing an embedded server
// with a real one is never what a user means.
func Open(redisAddr, dsn string) (*Env, error) {
	switch {
	case redisAddr == "" && dsn == "":
		return Embedded()
	case redisAddr == "" || dsn == "":
		return nil, fmt.Errorf("give both -redis and -dsn, or neither for embedded servers")
	}
	return Connect(redisAddr, dsn)
}

// Connect opens dsn ("sqlite:<path>" for SQLite, anything else is a
// PostgreSQL DSN) and a Redis client for redisAddr, and checks both answer.
func Connect(redisAddr, dsn string) (*Env, error) {
	var dial gorm.Dialector
	if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		dial = sqlite.Open("file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	} else {
		dial = postgres.Open(dsn)
	}
	db, err := gorm.Open(dial, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(dsn, "sqlite:") {
		sqlDB.SetMaxOpenConns(1) // SQLite serialises writers anyway
	} else {
		sqlDB.SetMaxOpenConns(16)
		sqlDB.SetMaxIdleConns(16)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, ContextTimeoutEnabled: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		sqlDB.Close()
		rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", redisAddr, err)
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		rdb.Close()
		return nil, fmt.Errorf("database: %w", err)
	}
	return &Env{DB: db, Redis: rdb, RedisAddr: redisAddr, DSN: dsn, closers: []func(){func() { sqlDB.Close() }, func() { rdb.Close() }}}, nil
}

// Close closes the connections and stops embedded servers.
func (e *Env) Close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.closers = nil
}

// Describe says which servers are in use, for the demos' first line.
func (e *Env) Describe() string {
	if e.Embedded {
		return fmt.Sprintf("embedded servers: in-process Redis at %s, SQLite at %s", e.RedisAddr, strings.TrimPrefix(e.DSN, "sqlite:"))
	}
	return fmt.Sprintf("Redis at %s, database %q", e.RedisAddr, e.DSN)
}
