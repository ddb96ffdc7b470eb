package changefeed_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gormcache/gormcache/internal/testenv"
)

// rows seeds n docs and users, ids 1..n, and warms them on every instance.
func (e *env) rows(n int) []int64 {
	e.t.Helper()
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(i + 1)
	}
	e.exec(fmt.Sprintf(`INSERT INTO "%s" (id, title, version) SELECT g, 'v1', 1 FROM generate_series(1, %d) g`, e.docsTable(), n))
	e.exec(fmt.Sprintf(`INSERT INTO "%s" (id, token, name) SELECT g, 'tok' || g, 'v1' FROM generate_series(1, %d) g`, e.usersTable(), n))
	return ids
}

// writer updates each doc and user once, one transaction per row, in
// order, pausing between writes; it reports how many it did on progress.
type writer struct {
	e        *env
	mu       sync.Mutex
	done     int
	finished chan struct{}
}

func (e *env) write(ids []int64, pause time.Duration) *writer {
	w := &writer{e: e, finished: make(chan struct{})}
	go func() {
		defer close(w.finished)
		for _, id := range ids {
			err := e.base.Transaction(func(tx *gormDB) error {
				if err := tx.Exec(`UPDATE "`+e.docsTable()+`" SET title = 'v2', version = version + 1 WHERE id = ?`, id).Error; err != nil {
					return err
				}
				return tx.Exec(`UPDATE "`+e.usersTable()+`" SET name = 'v2' WHERE id = ?`, id).Error
			})
			if err != nil {
				e.t.Errorf("write %d: %v", id, err)
				return
			}
			w.mu.Lock()
			w.done++
			w.mu.Unlock()
			time.Sleep(pause)
		}
	}()
	return w
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

func (w *writer) wait(t *testing.T) {
	t.Helper()
	select {
	case <-w.finished:
	case <-time.After(2 * time.Minute):
		t.Fatal("writer did not finish")
	}
}

// TestRelayRestart: a relay closed mid-stream (without acknowledging what
// it had not) and a new one started later: every committed write is
// invalidated, including those made while no relay ran.
func TestRelayRestart(t *testing.T) {
	e := newEnv(t, 2)
	ids := e.rows(60)
	r := start(t, e.options(0))
	e.streaming(r)
	e.warm(ids...)
	w := e.write(ids, 5*time.Millisecond)
	testenv.Eventually(t, feedBound, func() bool { return r.Stats().AppliedTxns >= 10 }, "relay applies nothing")
	r.stop(t)
	stopped := r.Stats().AppliedTxns
	w.wait(t)
	// Sanity: without a relay, the last rows' writes are not seen by the
	// other instance (the test would prove nothing otherwise).
	last := ids[len(ids)-1]
	if d, err := get(e.in[1].docs, last); err != nil || d == nil || d.Title != "v1" {
		t.Fatalf("instance 1 reads %+v (%v) for %d with no relay running; want the stale cached row", d, err, last)
	}
	r2 := start(t, e.options(1))
	took := e.fresh(ids...)
	t.Logf("first relay applied %d transactions before Close; the second made %d rows fresh in %v (stats %+v)", stopped, len(ids), took, r2.Stats())
}

// TestFailover: two relays; only one streams. Closing the leader, and
// deleting its lease under it, hand the stream to the other without a gap,
// and the slot's confirmed position never moves back.
func TestFailover(t *testing.T) {
	e := newEnv(t, 2)
	ids := e.rows(90)
	r0 := start(t, e.options(0))
	e.streaming(r0)
	r1 := start(t, e.options(1))
	e.warm(ids...)

	stop := make(chan struct{})
	var monoErr error
	var polls sync.WaitGroup
	polls.Add(1)
	go func() { // the slot's confirmed position is monotonic
		defer polls.Done()
		var last uint64
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if l := e.slotLSN(); l < last && l != 0 {
				monoErr = fmt.Errorf("confirmed_flush_lsn moved back from %X to %X", last, l)
			} else {
				last = max(last, l)
			}
			if r0.Stats().IsLeader && r1.Stats().IsLeader {
				t.Log("both relays hold a valid lease at once (one of them is about to notice)")
			}
		}
	}()
	w := e.write(ids, 10*time.Millisecond)
	// 1. The leader's lease is deleted under it: it must stop before
	// acknowledging more, and the other (or it) takes over.
	testenv.Eventually(t, feedBound, func() bool { return w.count() >= 20 }, "writer stalled")
	applied0, applied1 := r0.Stats().AppliedTxns, r1.Stats().AppliedTxns
	if err := e.rdb.Del(context.Background(), e.ns+":relay").Err(); err != nil {
		t.Fatal(err)
	}
	// 2. The leader is closed (it releases its lease): the other takes over.
	// "The leader" is the one that streams again after the deletion (just
	// after it, a relay may hold the new lease and not have streamed yet).
	testenv.Eventually(t, feedBound, func() bool { return w.count() >= 50 }, "writer stalled")
	var leader, other *running
	testenv.Eventually(t, feedBound, func() bool {
		s0, s1 := r0.Stats(), r1.Stats()
		switch {
		case s0.IsLeader && !s1.IsLeader && s0.AppliedTxns > applied0:
			leader, other = r0, r1
		case s1.IsLeader && !s0.IsLeader && s1.AppliedTxns > applied1:
			leader, other = r1, r0
		}
		return leader != nil
	}, "no relay streams after the lease was deleted")
	leader.stop(t)
	testenv.Eventually(t, feedBound, func() bool { return other.Stats().IsLeader }, "no takeover after the leader closed")
	w.wait(t)
	// Writes after the takeover: only the new leader runs, so it must
	// stream them (the first writer may have finished before it took over).
	e.write(ids[:10], time.Millisecond).wait(t)
	e.fresh(ids...)
	close(stop)
	polls.Wait()
	if monoErr != nil {
		t.Fatal(monoErr)
	}
	s0, s1 := r0.Stats(), r1.Stats()
	if s0.AppliedTxns == 0 || s1.AppliedTxns == 0 {
		t.Fatalf("one relay never streamed: %+v / %+v", s0, s1)
	}
	t.Logf("relay0 %+v\nrelay1 %+v", s0, s1)
}

// TestWalsenderTerminated: pg_terminate_backend of the walsender; the relay
// reconnects and resumes, and no write is lost.
func TestWalsenderTerminated(t *testing.T) {
	e := newEnv(t, 2)
	ids := e.rows(40)
	logs := &testenv.LogRecorder{}
	o := e.options(0)
	o.Logger = slog.New(logs)
	r := start(t, o)
	e.streaming(r)
	e.warm(ids...)
	w := e.write(ids, 5*time.Millisecond)
	testenv.Eventually(t, feedBound, func() bool { return w.count() >= 10 }, "writer stalled")
	e.exec(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = ? AND active_pid IS NOT NULL`, e.slot)
	testenv.Eventually(t, feedBound, func() bool { return r.Stats().Reconnects > 0 }, "relay did not notice its walsender was terminated")
	w.wait(t)
	e.fresh(ids...)
	// State changes are logged, each once: the lease taken, the stream
	// ended, the stream resumed.
	slot := map[string]string{"slot": e.slot}
	testenv.Eventually(t, feedBound, func() bool { return len(logs.Matching(slog.LevelInfo, slot)) >= 2 }, "resumption not logged")
	if n := len(logs.Matching(slog.LevelWarn, slot)); n != 1 {
		t.Errorf("%d warnings for one terminated walsender, want 1", n)
	}
	if n := len(logs.Matching(slog.LevelInfo, map[string]string{"slot": e.slot, "fencing_token": ""})); n != 1 {
		t.Errorf("leadership logged %d times, want 1", n)
	}
	t.Logf("stats %+v", r.Stats())
}

// TestPostgresRestart: the logical cluster restarts under the relay.
func TestPostgresRestart(t *testing.T) {
	e := newEnv(t, 2)
	ids := e.rows(10)
	r := start(t, e.options(0))
	e.streaming(r)
	e.warm(ids...)
	e.exec(`UPDATE "` + e.docsTable() + `" SET title = 'before', version = version + 1 WHERE id = 1`)
	e.fresh(1)
	testenv.RestartLogicalPG(t)
	testenv.Eventually(t, 60*time.Second, func() bool {
		return e.base.Exec(`UPDATE "`+e.docsTable()+`" SET title = 'after', version = version + 1 WHERE id IN (2, 3)`).Error == nil
	}, "cannot write after the restart")
	e.fresh(2, 3)
	if r.Stats().Reconnects == 0 {
		t.Fatalf("no reconnection counted: %+v", r.Stats())
	}
	t.Logf("stats %+v", r.Stats())
}

// TestSlotLost: the slot is dropped while no relay runs and a write commits
// meanwhile (its change is gone from any slot): the next relay retires
// every cache (a new epoch everywhere), recreates the slot and counts it.
func TestSlotLost(t *testing.T) {
	e := newEnv(t, 2)
	ids := e.rows(5)
	r := start(t, e.options(0))
	e.streaming(r)
	e.warm(ids...)
	r.stop(t)
	testenv.DropSlot(t, e.dsn, e.slot, "")
	e.exec(`UPDATE "` + e.docsTable() + `" SET title = 'in the gap', version = version + 1 WHERE id = 1`)
	epochs := e.in[1].c.Stats().EpochChanges
	r2 := start(t, e.options(0))
	e.streaming(r2)
	if got := r2.Stats().SlotLost; got != 1 {
		t.Fatalf("SlotLost = %d, want 1", got)
	}
	testenv.Eventually(t, feedBound, func() bool { return e.in[1].c.Stats().EpochChanges > epochs }, "the other instance saw no new epoch")
	e.fresh(ids...)
	e.exec(`UPDATE "` + e.docsTable() + `" SET title = 'after', version = version + 1 WHERE id = 2`)
	e.fresh(2)
}

// The kill -9 test runs a relay in a child process (this test binary,
// standalone as cmd/gormcache-relay runs it: tables described, no
// repository), kills it mid-stream, and starts an in-process relay.
const childEnv = "GORMCACHE_CHANGEFEED_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	if spec := os.Getenv(writerEnv); spec != "" {
		os.Exit(runWriter(spec))
	}
	os.Exit(m.Run())
}

func TestKill9(t *testing.T) {
	e := newEnv(t, 2)
	ids := e.rows(60)
	spec := strings.Join([]string{e.dsn, testenv.RedisAddr(t), e.ns, e.slot, e.pub, e.docsTable(), e.usersTable()}, "\x1f")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+spec)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
		}
	})
	testenv.Eventually(t, feedBound, func() bool {
		return e.walsender()
	}, "child relay did not start streaming")
	e.warm(ids...)
	start0 := e.slotLSN()
	w := e.write(ids, 5*time.Millisecond)
	testenv.Eventually(t, feedBound, func() bool { return w.count() >= 20 && e.slotLSN() > start0 }, "child relay acknowledges nothing")
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	killed = true
	r := start(t, e.options(0)) // takes over once the dead child's lease expires
	w.wait(t)
	e.fresh(ids...)
	t.Logf("after kill -9: %+v", r.Stats())
}

// TestSlotInvalidated: PostgreSQL invalidates the slot (wal_status lost,
// past max_slot_wal_keep_size) while no relay runs: the next relay retires
// every cache, drops and recreates the slot, and counts it. It changes
// max_slot_wal_keep_size of the logical test cluster for its duration.
func TestSlotInvalidated(t *testing.T) {
	e := newEnv(t, 2)
	ids := e.rows(3)
	r := start(t, e.options(0))
	e.streaming(r)
	e.warm(ids...)
	r.stop(t)
	e.exec(`ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`)
	t.Cleanup(func() {
		e.base.Exec(`ALTER SYSTEM RESET max_slot_wal_keep_size`)
		e.base.Exec(`SELECT pg_reload_conf()`)
	})
	e.exec(`SELECT pg_reload_conf()`)
	e.exec(`UPDATE "` + e.docsTable() + `" SET title = 'in the lost WAL', version = version + 1 WHERE id = 1`)
	testenv.Eventually(t, 60*time.Second, func() bool {
		for range 3 {
			e.exec(`INSERT INTO "` + e.usersTable() + `" (id, token, name) SELECT g, 'filler' || g, repeat('x', 100) FROM generate_series(1000, 1100) g ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name || 'y'`)
			e.exec(`SELECT pg_switch_wal()`)
		}
		e.exec(`CHECKPOINT`)
		var status string
		e.base.Raw(`SELECT COALESCE(wal_status, '') FROM pg_replication_slots WHERE slot_name = ?`, e.slot).Scan(&status)
		return status == "lost"
	}, "PostgreSQL did not invalidate the slot")
	e.exec(`ALTER SYSTEM RESET max_slot_wal_keep_size`)
	e.exec(`SELECT pg_reload_conf()`)
	epochs := e.in[1].c.Stats().EpochChanges
	r2 := start(t, e.options(1))
	e.streaming(r2)
	if got := r2.Stats().SlotLost; got != 1 {
		t.Fatalf("SlotLost = %d, want 1", got)
	}
	testenv.Eventually(t, feedBound, func() bool { return e.in[1].c.Stats().EpochChanges > epochs }, "no new epoch")
	e.fresh(ids...)
	e.exec(`UPDATE "` + e.docsTable() + `" SET title = 'after', version = version + 1 WHERE id = 2`)
	e.fresh(2)
}
