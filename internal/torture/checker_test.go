package torture

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/gormcache/gormcache/cache"
)

const ms = int64(time.Millisecond)

// h builds synthetic histories: times are in milliseconds from 1000 ms.
type h []Op

func (x h) read(inst int, key int64, call, ret int64, ver uint64, token int64) h {
	return append(x, Op{Inst: inst, Key: key, Kind: KindRead, Call: (1000 + call) * ms, Ret: (1000 + ret) * ms, Ver: ver, Token: token, Status: StatusOK})
}

func (x h) write(inst int, key int64, call, ret int64, ver uint64, token int64, st Status) h {
	return append(x, Op{Inst: inst, Key: key, Kind: KindWrite, Call: (1000 + call) * ms, Ret: (1000 + ret) * ms, Ver: ver, Token: token, Status: st})
}

func (x h) degraded(inst int, key int64, call, ret int64, ver uint64, token int64) h {
	x = x.write(inst, key, call, ret, ver, token, StatusOK)
	x[len(x)-1].Degraded = true
	return x
}

func (x h) rollback(inst int, key int64, call, ret int64, ver uint64, token int64) h {
	return append(x, Op{Inst: inst, Key: key, Kind: KindRollback, Call: (1000 + call) * ms, Ret: (1000 + ret) * ms, Ver: ver, Token: token, Status: StatusOK})
}

func (x h) epoch(inst int, at int64) h {
	return append(x, Op{Inst: inst, Kind: KindEpoch, Call: (1000 + at) * ms, Ret: (1000 + at) * ms, Ver: 7, Status: StatusOK})
}

var testOpts = CheckOptions{Bound: 100 * time.Millisecond, EpochAllowance: 50 * time.Millisecond}

func TestCheckerFlagsViolations(t *testing.T) {
	for _, tc := range []struct {
		name string
		hist h
		kind ViolationKind
	}{
		{"stale read after the bound", h{}.
			write(1, 7, 0, 10, 2, 101, StatusOK).
			read(2, 7, 111, 112, 1, 0), Stale},
		{"stale read of an older write's value", h{}.
			write(1, 7, 0, 10, 2, 101, StatusOK).
			write(1, 7, 20, 30, 3, 102, StatusOK).
			read(2, 7, 200, 201, 2, 101), Stale},
		{"stale against a newer write acknowledged earlier", h{}.
			// v3 was acknowledged before v2 returned; reading v1 is measured
			// against the earliest acknowledgement of anything newer.
			write(1, 7, 0, 300, 2, 101, StatusOK).
			write(2, 7, 5, 10, 3, 102, StatusOK).
			read(3, 7, 150, 151, 1, 0), Stale},
		{"read-your-writes within the bound", h{}.
			write(1, 7, 0, 10, 2, 101, StatusOK).
			read(1, 7, 11, 12, 1, 0), ReadYourWrites},
		{"rolled-back value", h{}.
			rollback(1, 7, 0, 10, 2, 101).
			read(2, 7, 11, 12, 2, 101), RolledBack},
		{"rolled-back value at a version later committed", h{}.
			rollback(1, 7, 0, 10, 2, 101).
			write(2, 7, 20, 30, 2, 102, StatusOK).
			read(3, 7, 40, 41, 2, 101), RolledBack},
		{"conflicting write's value", h{}.
			write(1, 7, 0, 10, 2, 101, StatusConflict).
			read(2, 7, 11, 12, 2, 101), ConflictValue},
		{"value of no write", h{}.
			read(2, 7, 11, 12, 2, 999), Unknown},
		{"token of another row", h{}.
			write(1, 8, 0, 10, 2, 101, StatusOK).
			read(2, 7, 11, 12, 2, 101), Mismatch},
		{"seed token at a later version", h{}.
			read(2, 7, 11, 12, 3, 0), Mismatch},
		{"failed write's value where another write committed", h{}.
			write(1, 7, 0, 10, 2, 101, StatusError).
			write(2, 7, 5, 15, 2, 102, StatusOK).
			read(3, 7, 20, 21, 2, 101), Mismatch},
		{"value from the future", h{}.
			read(2, 7, 0, 1, 2, 101).
			write(1, 7, 5, 10, 2, 101, StatusOK), Future},
		{"not found", append(h{}, Op{Inst: 1, Key: 7, Kind: KindRead, Call: 1, Ret: 2, Status: StatusNotFound}), NotFound},
		{"lost update", h{}.
			write(1, 7, 0, 10, 2, 101, StatusOK).
			write(2, 7, 0, 10, 2, 102, StatusOK), LostUpdate},
		{"degraded write bounded from the next epoch change", h{}.
			degraded(1, 7, 0, 10, 2, 101).
			epoch(1, 500).
			read(2, 7, 651, 652, 1, 0), Stale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(tc.hist, testOpts)
			if r.Counts[tc.kind] == 0 || r.First == nil {
				t.Fatalf("%s not flagged:\n%s", tc.kind, r)
			}
			if r.Violations() != r.Counts[tc.kind] {
				t.Fatalf("other violations too:\n%s", r)
			}
			t.Logf("%s", r.First)
		})
	}
}

func TestCheckerAcceptsLegalHistories(t *testing.T) {
	for _, tc := range []struct {
		name string
		hist h
	}{
		{"read overlapping the write returns the old version", h{}.
			write(1, 7, 0, 10, 2, 101, StatusOK).
			read(2, 7, 5, 15, 1, 0)},
		{"read overlapping the write returns the new version", h{}.
			write(1, 7, 0, 10, 2, 101, StatusOK).
			read(2, 7, 5, 6, 2, 101)},
		{"other instance within the bound", h{}.
			write(1, 7, 0, 10, 2, 101, StatusOK).
			read(2, 7, 109, 112, 1, 0)},
		{"own write read back", h{}.
			write(1, 7, 0, 10, 2, 101, StatusOK).
			read(1, 7, 11, 12, 2, 101)},
		{"own read that began before the write returned", h{}.
			write(1, 7, 0, 10, 2, 101, StatusOK).
			read(1, 7, 9, 12, 1, 0)},
		{"newer than the last acknowledged write", h{}.
			write(1, 7, 0, 10, 2, 101, StatusOK).
			write(2, 7, 20, 30, 3, 102, StatusOK).
			read(3, 7, 200, 201, 3, 102)},
		{"failed write read (it committed after all)", h{}.
			write(1, 7, 0, 10, 2, 101, StatusError).
			read(2, 7, 11, 12, 2, 101).
			read(2, 7, 500, 501, 1, 0)}, // and not reading it is fine too: never acknowledged
		{"failed write read, then an acknowledged write on top", h{}.
			write(1, 7, 0, 10, 2, 101, StatusError).
			write(2, 7, 20, 30, 3, 102, StatusOK).
			read(3, 7, 31, 32, 2, 101)},
		{"conflicting write is no constraint", h{}.
			write(1, 7, 0, 10, 2, 101, StatusConflict).
			read(2, 7, 500, 501, 1, 0)},
		{"read began before the write was called, returned after", h{}.
			read(2, 7, 0, 50, 2, 101).
			write(1, 7, 5, 10, 2, 101, StatusOK)},
		{"rollback is no constraint", h{}.
			rollback(1, 7, 0, 10, 2, 101).
			read(1, 7, 500, 501, 1, 0)},
		{"degraded write before the epoch change", h{}.
			degraded(1, 7, 0, 10, 2, 101).
			epoch(1, 500).
			read(2, 7, 600, 601, 1, 0)},
		{"degraded write never covered", h{}.
			degraded(1, 7, 0, 10, 2, 101).
			read(2, 7, 900, 901, 1, 0)},
		{"another row's write", h{}.
			write(1, 8, 0, 10, 2, 101, StatusOK).
			read(1, 7, 500, 501, 1, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := Check(tc.hist, testOpts); r.Violations() != 0 {
				t.Fatalf("flagged a legal history:\n%s", r)
			}
		})
	}
}

func TestCheckerRYWStillHoldsForDegradedWrites(t *testing.T) {
	r := Check(h{}.degraded(1, 7, 0, 10, 2, 101).read(1, 7, 20, 21, 1, 0), testOpts)
	if r.RYWViolations != 1 || r.StaleReads != 0 {
		t.Fatalf("%s", r)
	}
}

func TestCheckerPauseWindows(t *testing.T) {
	hist := h{}.
		write(1, 7, 0, 10, 2, 101, StatusOK).
		read(2, 7, 300, 301, 1, 0). // instance 2 was stopped 5..250: resumed 50 ms before
		read(2, 7, 400, 401, 1, 0). // 150 ms after: past the grace
		read(3, 7, 300, 301, 1, 0)  // instance 3 was never stopped
	o := testOpts
	o.Paused = map[int][]Window{2: {{1005 * ms, 1250 * ms}}}
	o.PauseGrace = 100 * time.Millisecond
	r := Check(hist, o)
	if r.PausedStale != 1 || r.StaleReads != 2 || r.PausedStaleAfter != 50*time.Millisecond {
		t.Fatalf("%s", r)
	}
	if r := Check(hist, testOpts); r.StaleReads != 3 || r.PausedStale != 0 {
		t.Fatalf("without windows: %s", r)
	}
}

func TestCheckerFigures(t *testing.T) {
	r := Check(h{}.
		write(1, 7, 0, 10, 2, 101, StatusOK).
		read(2, 7, 60, 61, 1, 0).   // legal lag 50 ms
		read(3, 7, 210, 211, 1, 0). // stale by 200 ms
		read(3, 7, 160, 161, 1, 0), // stale by 150 ms
		testOpts)
	if r.StaleReads != 2 || r.WorstStaleness != 200*time.Millisecond || r.MaxLegalLag != 50*time.Millisecond {
		t.Fatalf("%s", r)
	}
	if r.First == nil || r.First.Read.Call != 1160*ms {
		t.Fatalf("first violation: %v", r.First)
	}
}

func TestLogRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ops.jsonl")
	l, err := CreateLog(path)
	if err != nil {
		t.Fatal(err)
	}
	tail := NewTail(path)
	l.Record(Op{Inst: 1, Key: 2, Kind: KindRead, Call: 3, Ret: 4, Ver: 5, Token: 6, Status: StatusOK})
	if ops, err := tail.Next(); err != nil || len(ops) != 0 {
		t.Fatalf("before flush: %v %v", ops, err)
	}
	l.Flush()
	l.Record(Op{Inst: 1, Kind: KindWrite, Status: StatusError, Err: "boom", Degraded: true})
	ops, err := tail.Next()
	if err != nil || len(ops) != 1 || ops[0].Token != 6 {
		t.Fatalf("after flush: %v %v", ops, err)
	}
	l.Close()
	ops, err = tail.Next()
	if err != nil || len(ops) != 1 || !ops[0].Degraded || ops[0].Err != "boom" {
		t.Fatalf("after close: %+v %v", ops, err)
	}
	all, err := ReadOps(path)
	if err != nil || len(all) != 2 {
		t.Fatalf("ReadOps: %d %v", len(all), err)
	}
}

func TestConvergenceChecker(t *testing.T) {
	db := map[int64]uint64{1: 3, 2: 5}
	val := func(v uint64) cache.TierEntry {
		return cache.TierEntry{Present: true, Kind: cache.KindValue, Version: v}
	}
	peeks := []InstancePeek{{Inst: 1, Entries: []PeekEntry{
		{Key: 1, L1: val(3), L2: val(3)},
		{Key: 2, L2: cache.TierEntry{Present: true, Kind: cache.KindTombstone, Version: 5}},
	}}, {Inst: 2, Entries: []PeekEntry{
		{Key: 1, L1: val(2)}, // stale L1
		{Key: 2, L2: cache.TierEntry{Present: true, Kind: cache.KindNotFound}},           // not-found for an existing row
		{Key: 2, L2: func() cache.TierEntry { e := val(4); e.Stale = true; return e }()}, // old epoch: fine
		{Key: 1, L1: func() cache.TierEntry { e := val(1); e.Expired = true; return e }()},
	}}}
	bad := CheckConvergence(db, peeks)
	if len(bad) != 2 {
		t.Fatalf("%v", bad)
	}
	for _, m := range bad {
		t.Log(m)
	}
}

func (x h) outside(inst int, key int64, call, ret int64, ver uint64, token, prev int64) h {
	x = x.write(inst, key, call, ret, ver, token, StatusOK)
	x[len(x)-1].Outside, x[len(x)-1].Prev = true, prev
	return x
}

func (x h) killed(inst int, key int64, call, ret int64, ver uint64, token int64) h {
	x = x.write(inst, key, call, ret, ver, token, StatusOK)
	x[len(x)-1].Killed = true
	return x
}

func (x h) suspect(inst int, key int64, at int64, ver uint64) h {
	return append(x, Op{Inst: inst, Key: key, Kind: KindSuspect, Call: (1000 + at) * ms, Ret: (1000 + at) * ms, Ver: ver, Status: StatusOK})
}

// TestCheckerIssue10Rules covers the rules added with the faults of issue
// 10: writes around the library ordered by their chain of tokens, writes of
// killed processes and uncovered degraded writes bounded by the TTL, and
// announcements of unconfirmed writes.
func TestCheckerIssue10Rules(t *testing.T) {
	opts := testOpts
	opts.TTLAllowance = 2 * time.Second
	for _, tc := range []struct {
		name string
		hist h
		kind ViolationKind // "" for a legal history
	}{
		{"outside write at the same version, old value read after the bound", h{}.
			outside(1, 7, 0, 10, 1, 101, 0).
			read(2, 7, 200, 201, 1, 0), Stale},
		{"outside write at the same version, new value read", h{}.
			outside(1, 7, 0, 10, 1, 101, 0).
			read(2, 7, 200, 201, 1, 101), ""},
		{"re-insert at version 1 after versioned history, old value read", h{}.
			outside(1, 7, 0, 10, 1, 101, 0).
			outside(1, 7, 20, 30, 1, 102, 101).
			read(2, 7, 300, 301, 1, 101), Stale},
		{"outside chain, read within the bound", h{}.
			outside(1, 7, 0, 10, 1, 101, 0).
			outside(1, 7, 20, 30, 1, 102, 101).
			read(2, 7, 50, 51, 1, 101), ""},
		{"outside write read back by its writer", h{}.
			outside(1, 7, 0, 10, 1, 101, 0).
			read(1, 7, 11, 12, 1, 0), ReadYourWrites},
		{"outside value with the wrong row version", h{}.
			outside(1, 7, 0, 10, 1, 101, 0).
			read(2, 7, 11, 12, 5, 101), Mismatch},
		{"killed writer's value missed within the TTL", h{}.
			killed(1, 7, 0, 10, 2, 101).
			read(2, 7, 1500, 1501, 1, 0), ""},
		{"killed writer's value missed after the TTL", h{}.
			killed(1, 7, 0, 10, 2, 101).
			read(2, 7, 2200, 2201, 1, 0), Stale},
		{"uncovered degraded write missed after the TTL", h{}.
			degraded(1, 7, 0, 10, 2, 101).
			read(2, 7, 2200, 2201, 1, 0), Stale},
		{"read older than an announced unconfirmed write", h{}.
			degraded(1, 7, 0, 10, 2, 101).
			suspect(2, 7, 5, 2).
			read(2, 7, 6, 7, 1, 0), SuspectStale},
		{"read before the announcement", h{}.
			degraded(1, 7, 0, 10, 2, 101).
			suspect(2, 7, 5, 2).
			read(2, 7, 4, 7, 1, 0), ""},
		{"another instance than the one told", h{}.
			degraded(1, 7, 0, 10, 2, 101).
			suspect(2, 7, 5, 2).
			read(3, 7, 6, 7, 1, 0), ""},
		{"announced failed write that did not commit (another write committed its version later)", h{}.
			write(1, 7, 0, 10, 2, 101, StatusError).
			suspect(2, 7, 5, 2).
			read(2, 7, 6, 7, 1, 0).
			write(3, 7, 20, 30, 2, 102, StatusOK).
			read(2, 7, 31, 32, 2, 102), ""},
		{"announced failed write whose value was read", h{}.
			write(1, 7, 0, 10, 2, 101, StatusError).
			suspect(2, 7, 5, 2).
			read(2, 7, 6, 7, 1, 0).
			read(3, 7, 8, 9, 2, 101), SuspectStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(tc.hist, opts)
			if tc.kind == "" {
				if r.Violations() != 0 {
					t.Fatalf("flagged a legal history:\n%s", r)
				}
				return
			}
			if r.Counts[tc.kind] == 0 {
				t.Fatalf("want %s, got:\n%s", tc.kind, r)
			}
		})
	}
}

func (x h) external(key int64, call, ret int64, ver uint64, token int64, deleted bool) h {
	x = x.write(ExternalInst, key, call, ret, ver, token, StatusOK)
	x[len(x)-1].External, x[len(x)-1].Deleted = ExternalBlind, deleted
	if deleted {
		x[len(x)-1].External = ExternalDelete
	}
	return x
}

func (x h) notFound(inst int, key int64, call, ret int64) h {
	return append(x, Op{Inst: inst, Key: key, Kind: KindRead, Call: (1000 + call) * ms, Ret: (1000 + ret) * ms, Status: StatusNotFound})
}

// TestCheckerExternalWrites: the external writer's writes are bounded by
// Bound + FeedBound, and a "not found" is legal only as a read of a delete
// called before it returned, stale like any read once a newer write passed
// its bound.
func TestCheckerExternalWrites(t *testing.T) {
	o := testOpts
	o.FeedBound = 200 * time.Millisecond
	for _, tc := range []struct {
		name string
		hist h
		want ViolationKind // "" for none
	}{
		{"older version within Bound + FeedBound", h{}.external(7, 0, 10, 2, 101, false).read(1, 7, 250, 251, 1, 0), ""},
		{"older version after Bound + FeedBound", h{}.external(7, 0, 10, 2, 101, false).read(1, 7, 311, 312, 1, 0), Stale},
		{"not found after a delete", h{}.external(7, 0, 10, 2, 102, true).notFound(1, 7, 20, 21), ""},
		{"not found during a delete", h{}.external(7, 0, 10, 2, 102, true).notFound(1, 7, 5, 6), ""},
		{"not found before any delete", h{}.external(7, 50, 60, 2, 102, true).notFound(1, 7, 5, 6), NotFound},
		{"not found with no delete", h{}.notFound(1, 7, 5, 6), NotFound},
		{"the deleted row after Bound + FeedBound", h{}.external(7, 0, 10, 2, 102, true).read(1, 7, 311, 312, 1, 0), Stale},
		{"not found after the re-insert's bound", h{}.
			external(7, 0, 10, 2, 102, true).external(7, 20, 30, 3, 103, false).notFound(1, 7, 331, 332), Stale},
		{"the re-inserted row", h{}.
			external(7, 0, 10, 2, 102, true).external(7, 20, 30, 3, 103, false).read(1, 7, 40, 41, 3, 103), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(tc.hist, o)
			if tc.want == "" {
				if r.Violations() != 0 {
					t.Fatalf("violations: %v", r.Examples)
				}
				return
			}
			if r.Counts[tc.want] == 0 {
				t.Fatalf("want %s, got %v", tc.want, r.Counts)
			}
		})
	}
}
