package changefeed_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache"
	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/failpoint"
	"github.com/gormcache/gormcache/internal/testenv"
	"github.com/gormcache/gormcache/invalidation"
	"github.com/gormcache/gormcache/repository"
)

// The writer child of TestKilledBetweenCommitAndInvalidation: this test
// binary, re-executed with writerEnv set, writes one doc through the library
// and stops at failpoint.AfterCommitBeforeInvalidate, where the parent kills
// it.
const writerEnv = "GORMCACHE_CHANGEFEED_WRITER"

// committedLine is what the writer prints once its write has committed and
// before its invalidation would run.
const committedLine = "committed, invalidation pending"

// writerSpec is what the parent tells the writer.
type writerSpec struct {
	dsn, redisAddr, ns, prefix string
	plugin                     bool // write through the plugin on a *gorm.DB, else repository.Update
	id                         int64
	title                      string
}

func (s writerSpec) encode() string {
	return strings.Join([]string{s.dsn, s.redisAddr, s.ns, s.prefix, strconv.FormatBool(s.plugin), strconv.FormatInt(s.id, 10), s.title}, "\x1f")
}

func decodeWriterSpec(spec string) (writerSpec, error) {
	f := strings.Split(spec, "\x1f")
	if len(f) != 7 {
		return writerSpec{}, fmt.Errorf("writer spec has %d fields, want 7", len(f))
	}
	plugin, err1 := strconv.ParseBool(f[4])
	id, err2 := strconv.ParseInt(f[5], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return writerSpec{}, err
	}
	return writerSpec{dsn: f[0], redisAddr: f[1], ns: f[2], prefix: f[3], plugin: plugin, id: id, title: f[6]}, nil
}

// runWriter is an instance of the application (its own cache, bus and
// repository) that writes spec's doc and is killed after its COMMIT.
func runWriter(spec string) int {
	if err := writeAndHang(spec); err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "writer: the write returned: the failpoint did not stop it")
	return 2
}

func writeAndHang(spec string) error {
	s, err := decodeWriterSpec(spec)
	if err != nil {
		return err
	}
	ctx := context.Background()
	db, err := gorm.Open(postgres.Open(s.dsn), &gorm.Config{Logger: logger.Discard, NamingStrategy: schema.NamingStrategy{TablePrefix: s.prefix}})
	if err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: s.redisAddr, ContextTimeoutEnabled: true})
	c, err := cache.New(ctx, cache.Options{Redis: rdb, Namespace: s.ns, L1MaxBytes: 4 << 20, L1Shards: 16})
	if err != nil {
		return err
	}
	bus, err := invalidation.New(ctx, c, invalidation.Options{InstanceID: "writer"})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := bus.WaitHealthy(wctx); err != nil {
		return err
	}
	if s.plugin {
		if err := db.Use(&gormcache.Plugin{Cache: c}); err != nil {
			return err
		}
	}
	docs, err := repository.New[doc, int64](db, c, repository.Options{})
	if err != nil {
		return err
	}
	var d doc // read around the cache: the writer needs only the version
	if err := db.Session(&gorm.Session{}).Take(&d, s.id).Error; err != nil {
		return err
	}
	failpoint.Set(failpoint.AfterCommitBeforeInvalidate, "", func(context.Context, string) {
		fmt.Println(committedLine)
		time.Sleep(time.Minute) // killed here
		os.Exit(3)
	})
	if s.plugin {
		return db.Model(&doc{ID: d.ID, Version: d.Version}).Update("title", s.title).Error
	}
	d.Title = s.title
	return docs.Update(ctx, &d)
}

// killWriter runs the writer child on e's tables and kills it (SIGKILL)
// once it reports its COMMIT done and its invalidation not yet run.
func (e *env) killWriter(plugin bool, id int64, title string) {
	e.t.Helper()
	spec := writerSpec{dsn: e.dsn, redisAddr: testenv.RedisAddr(e.t), ns: e.ns, prefix: e.prefix, plugin: plugin, id: id, title: title}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), writerEnv+"="+spec.encode())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	reached := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == committedLine {
				reached <- true
				return
			}
		}
		reached <- false // exited without reaching the failpoint
	}()
	var ok bool
	select {
	case ok = <-reached:
	case <-time.After(feedBound):
	}
	cmd.Process.Signal(syscall.SIGKILL)
	werr := cmd.Wait()
	if !ok {
		e.t.Fatalf("the writer did not reach the point after its COMMIT (exit: %v)", werr)
	}
	if !killedBy(werr, syscall.SIGKILL) {
		e.t.Fatalf("the writer was not killed by SIGKILL: %v", werr)
	}
}

// killedBy reports that a process ended with err was killed by sig.
func killedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// probeL2 reads doc id through a cache without L1 (a fresh instance's view
// of Redis) and returns it and whether Redis served it.
func (e *env) probeL2(id int64) (*doc, bool) {
	e.t.Helper()
	ctx := context.Background()
	c, err := cache.New(ctx, cache.Options{Redis: e.rdb, Namespace: e.ns, L1MaxBytes: -1})
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	db, err := gorm.Open(postgres.Open(e.dsn), &gorm.Config{Logger: logger.Discard, NamingStrategy: schema.NamingStrategy{TablePrefix: e.prefix}})
	if err != nil {
		e.t.Fatal(err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	docs, err := repository.New[doc, int64](db, c, repository.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	before := c.Stats().L2Hits
	d, err := get(docs, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return d, c.Stats().L2Hits > before
}

// cachedOld reads doc id on instance 0 until L1 serves it (it was read
// before), and checks that Redis holds it too; it returns the row.
func (e *env) cachedOld(id int64) *doc {
	e.t.Helper()
	in := e.in[0]
	if _, err := get(in.docs, id); err != nil {
		e.t.Fatal(err)
	}
	var d *doc
	testenv.Eventually(e.t, feedBound, func() bool {
		before := in.c.Stats().L1Hits
		var err error
		d, err = get(in.docs, id)
		return err == nil && d != nil && in.c.Stats().L1Hits > before
	}, "doc %d is not served from L1", id)
	testenv.Eventually(e.t, feedBound, func() bool {
		p, fromL2 := e.probeL2(id)
		return fromL2 && *p == *d
	}, "doc %d is not in Redis", id)
	return d
}

// TestKilledBetweenCommitAndInvalidation: an instance writes a row through
// the library and is killed (SIGKILL) after its COMMIT and before its
// invalidation runs, through a repository and through the plugin. Another
// instance had the row in L1 and Redis. With a relay running, it serves the
// committed row within the feed's bound; without one it still serves the
// old row (so the kill did skip the invalidation, and the feed is what
// covers it).
func TestKilledBetweenCommitAndInvalidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		plugin bool
	}{{"repository", false}, {"plugin", true}} {
		t.Run(tc.name+"/relay", func(t *testing.T) {
			e := newEnv(t, 1)
			e.rows(1)
			r := start(t, e.options(0))
			e.streaming(r)
			old := e.cachedOld(1)
			e.killWriter(tc.plugin, 1, "by the killed writer")
			want := e.committed(old)
			took := e.fresh(1)
			got, err := get(e.in[0].docs, 1)
			if err != nil || *got != *want {
				t.Fatalf("instance serves %+v (%v), want the committed %+v", got, err, want)
			}
			t.Logf("killed writer's committed row served after %v (bound %v); relay %+v", took, feedBound, r.Stats())
		})
		t.Run(tc.name+"/no-relay", func(t *testing.T) {
			e := newEnv(t, 1)
			e.rows(1)
			old := e.cachedOld(1)
			e.killWriter(tc.plugin, 1, "by the killed writer")
			e.committed(old)
			// Long enough for an invalidation that did run to have arrived
			// many times over (the bus applies one in milliseconds).
			time.Sleep(2 * time.Second)
			if got, err := get(e.in[0].docs, 1); err != nil || *got != *old {
				t.Fatalf("without a relay the instance serves %+v (%v), want the old %+v: the kill did not skip the invalidation", got, err, old)
			}
			if got, _ := e.probeL2(1); *got != *old {
				t.Fatalf("without a relay Redis serves %+v, want the old %+v", got, old)
			}
		})
	}
}

// committed checks that the database holds the killed writer's row, newer
// than old, and returns it.
func (e *env) committed(old *doc) *doc {
	e.t.Helper()
	d := e.truthDoc(old.ID)
	if d == nil || d.Title != "by the killed writer" || d.Version <= old.Version {
		e.t.Fatalf("the database holds %+v: the killed writer's COMMIT is missing (before: %+v)", d, old)
	}
	return d
}
