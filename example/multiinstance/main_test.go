package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as an instance process (the demo
// launches copies of its own executable) and as a CPU hog.
func TestMain(m *testing.M) {
	for _, a := range os.Args[1:] {
		switch a {
		case "-child":
			main()
			os.Exit(0)
		case "-hog":
			hog()
		}
	}
	os.Exit(m.Run())
}

// TestDemo runs the whole scenario on embedded servers, as a new user would,
// with a short load phase; it fails if any stale read is observed. The
// change-feed step, which needs PostgreSQL, says so and is skipped.
func TestDemo(t *testing.T) {
	out, err := capture(func() error { return runParent("", "", 3, time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "[feed     ] skipped on the embedded SQLite: "+feedHowTo) {
		t.Fatalf("no skip line for the change-feed step in:\n%s", out)
	}
}

// TestDemoFeed runs the scenario on the PostgreSQL with wal_level=logical
// (GORMCACHE_PG_LOGICAL_DSN, with GORMCACHE_REDIS_ADDR): every instance runs
// a relay, one leads, and every instance serves an UPDATE made by plain SQL
// outside them; the run's slot and publication are gone afterwards.
func TestDemoFeed(t *testing.T) {
	dsn, addr := os.Getenv("GORMCACHE_PG_LOGICAL_DSN"), os.Getenv("GORMCACHE_REDIS_ADDR")
	if dsn == "" || addr == "" {
		t.Skip("GORMCACHE_PG_LOGICAL_DSN and GORMCACHE_REDIS_ADDR are needed (source the services' env)")
	}
	out, err := capture(func() error { return runParent(addr, dsn, 3, time.Second) })
	if err != nil {
		t.Fatalf("%v; output:\n%s", err, out)
	}
	m := regexp.MustCompile(`relay on slot (\w+); instance [1-3] holds the lease`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no relay leader reported in:\n%s", out)
	}
	for n := 1; n <= 3; n++ {
		if !strings.Contains(out, fmt.Sprintf("after: instance %d reads product %d: $15.00", n, feedRow)) {
			t.Errorf("instance %d did not report the outside update", n)
		}
	}
	if !strings.Contains(out, "every instance saw the outside update") {
		t.Fatalf("the step does not say every instance saw the update:\n%s", out)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var left int
	err = db.QueryRowContext(context.Background(), `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1)
		+ (SELECT count(*) FROM pg_publication WHERE pubname = $1)`, m[1]).Scan(&left)
	if err != nil || left != 0 {
		t.Fatalf("slot or publication %s left behind (%d, %v)", m[1], left, err)
	}
}

// capture runs fn and returns what it printed on os.Stdout.
func capture(fn func() error) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	saved := os.Stdout
	os.Stdout = w
	got := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		got <- string(b)
	}()
	err = fn()
	os.Stdout = saved
	w.Close()
	out := <-got
	r.Close()
	fmt.Print(out)
	return out, err
}

// TestDemoStarved runs the scenario on a starved machine: every process of
// it (the parent with the embedded servers, and the instances) on one
// thread (GOMAXPROCS=1), beside a CPU hog spinning on as many threads as
// the machine has cores. Slower propagation is allowed; a stale read, older
// than a write acknowledged more than the bound before it began, is not.
func TestDemoStarved(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := exec.Command(exe, "-hog")
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.Process.Kill(); _ = h.Wait() }()
	t.Setenv("GOMAXPROCS", "1")
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	if err := runParent("", "", 3, 4*time.Second); err != nil {
		t.Fatal(err)
	}
}

// hog spins on every core until it is killed (the test's deferred Kill; a
// parent that died without killing it is noticed within a second).
func hog() {
	parent := os.Getppid()
	for range runtime.NumCPU() {
		go func() {
			for n := 0; ; n++ { // spins by design
				_ = n * n
			}
		}()
	}
	for os.Getppid() == parent {
		time.Sleep(time.Second)
	}
	os.Exit(0)
}
