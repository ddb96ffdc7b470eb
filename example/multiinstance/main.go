// Command multiinstance shows several instances of one application, each
// with its own in-process cache, staying coherent through gormcache's
// versioned invalidations over Redis pub/sub.
//
//	go run ./example/multiinstance                 # embedded Redis and SQLite, 3 instances
//	go run ./example/multiinstance -instances 5 -duration 10s
//	go run ./example/multiinstance -redis 127.0.0.1:6379 \
//	    -dsn 'host=127.0.0.1 user=postgres dbname=test sslmode=disable'
//	go run ./example/multiinstance -redis 127.0.0.1:6379 \
//	    -dsn 'host=127.0.0.1 port=5433 user=postgres dbname=test sslmode=disable'  # wal_level=logical
//
// The program starts the servers (or uses the ones given), launches the
// instances as child processes of itself, and walks them through a scenario,
// printing each step: reads by tier, an update and how long the others took
// to see it, a stampede on a cold key, a killed subscription, a period of
// mixed traffic in which every read is checked, the change feed, and a
// summary per instance.
//
// The change-feed step needs PostgreSQL with wal_level=logical (and a role
// with REPLICATION); on SQLite or another wal_level it prints one line
// saying so and is skipped. Every instance starts a changefeed.Relay on a
// slot and publication named for the run; one takes the lease and streams,
// the others stand by. A plain SQL UPDATE through a database/sql connection
// of the parent's own, which knows nothing of gormcache nor of the version
// column, then changes a row every instance has in L1; the step prints the
// value each instance reads before and after, and how long after the
// UPDATE committed each saw it. The slot and publication are dropped when
// the program ends.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/gormcache/gormcache/example/internal/demoenv"
)

func main() {
	var (
		redisAddr, dsn = demoenv.Flags()
		instances      = flag.Int("instances", 3, "instance processes to run")
		duration       = flag.Duration("duration", 3*time.Second, "length of the mixed-traffic phase")
		child          = flag.Int("child", 0, "internal: run as instance N")
		namespace      = flag.String("namespace", "", "internal: the cache namespace")
	)
	flag.Parse()
	var err error
	if *child > 0 {
		err = runChild(*child, *redisAddr, *dsn, *namespace)
	} else {
		err = runParent(*redisAddr, *dsn, *instances, *duration)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "multiinstance:", err)
		os.Exit(1)
	}
}
