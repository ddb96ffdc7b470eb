package fidelity

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/testenv"
)

var ctx = context.Background()

// codecs are the cache codecs every fidelity case runs with. Row entries do
// not depend on the codec (they are the repository's own encoding), but
// GetBy's value → primary key mappings are encoded with it.
var codecs = []struct {
	name  string
	codec cache.Codec
}{
	{"Binary", cache.Binary{}},
	{"GoJSON", cache.GoJSON{}},
}

// newCache returns a cache on rdb with a namespace unique to t, closed and
// emptied when t ends.
func newCache(t *testing.T, rdb *redis.Client, codec cache.Codec) *cache.Cache {
	t.Helper()
	// A small L1: bigcache allocates L1MaxBytes up front, and the suite
	// opens hundreds of caches (on a loaded machine, allocating the default
	// 64 MiB each took the run past its timeout). SingleInstance: each
	// cache is alone on its namespace, and the tier checks expect an L1
	// entry to live L1TTL, not the capped lifetime of a cache without a bus.
	// Generous Redis timeouts and a slow identity check: on a loaded machine
	// a call timing out at the default 100 ms, or an identity check starved
	// past three 50 ms intervals (Redis is then not read at all: fail
	// closed), sends a read to the database and leaves its entry out of
	// Redis; the suite checks which tier served each read, not how the
	// cache copes with a slow Redis (the fault tests do).
	c, err := cache.New(ctx, cache.Options{Redis: rdb, Namespace: testenv.Namespace(t, rdb), Codec: codec,
		L1MaxBytes: 4 << 20, L1Shards: 16, SingleInstance: true,
		RedisTimeout: 2 * time.Second, WriteTimeout: 4 * time.Second, ServerCheckInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The second time zone the fidelity tests run in, and the variable that marks the
// re-executed test binary so that it does not re-execute itself.
const (
	otherTZ  = "America/New_York"
	childEnv = "GORMCACHE_FIDELITY_CHILD"
)

// needsOtherTZ reports whether this process must re-run the tests under
// otherTZ: it is not such a child and does not already run in otherTZ.
func needsOtherTZ() bool {
	return os.Getenv(childEnv) == "" && os.Getenv("TZ") != otherTZ
}

// startOtherTZ re-executes this test binary with TZ=otherTZ, running
// TestFidelity, TestWriteBack and TestMutationIsolation, beside the cases of this process, and fails t with the
// child's output when t's subtests are done, if the child failed.
func startOtherTZ(t *testing.T) {
	if os.Getenv(testenv.EnvRedis) == "" || os.Getenv(testenv.EnvPostgres) == "" {
		t.Logf("not re-running under TZ=%s: %s or %s not set", otherTZ, testenv.EnvRedis, testenv.EnvPostgres)
		return
	}
	timeout := 10 * time.Minute
	if d, ok := t.Deadline(); ok {
		timeout = time.Until(d) - 5*time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	args := []string{"-test.run=^(TestFidelity|TestWriteBack|TestMutationIsolation)$", "-test.count=1"}
	if f := flag.Lookup("test.parallel"); f != nil {
		args = append(args, "-test.parallel="+f.Value.String())
	}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.CommandContext(cctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "TZ="+otherTZ, childEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("re-executing %s under TZ=%s: %v", os.Args[0], otherTZ, err)
	}
	t.Cleanup(func() { // after every subtest of t: then the child is waited for
		defer cancel()
		err := cmd.Wait()
		took := time.Since(start).Round(time.Millisecond)
		var exit *exec.ExitError
		switch {
		case cctx.Err() != nil:
			t.Errorf("the fidelity tests under TZ=%s timed out after %v:\n%s", otherTZ, took, out.Bytes())
		case errors.As(err, &exit):
			t.Errorf("the fidelity tests under TZ=%s failed (%v) after %v:\n%s", otherTZ, err, took, out.Bytes())
		case err != nil:
			t.Errorf("the fidelity tests under TZ=%s: %v\n%s", otherTZ, err, out.Bytes())
		case testing.Verbose():
			t.Logf("the fidelity tests under TZ=%s passed in %v:\n%s", otherTZ, took, out.Bytes())
		default:
			t.Logf("the fidelity tests under TZ=%s passed in %v: %s", otherTZ, took, strings.TrimSpace(out.String()))
		}
	})
}

// zoneName describes the process time zone for the logs.
func zoneName() string {
	name, off := time.Now().Zone()
	return fmt.Sprintf("TZ=%q (time.Local %s, now %s %+d s)", os.Getenv("TZ"), time.Local, name, off)
}
