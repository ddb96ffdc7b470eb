package torture

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// CheckOptions configures Check.
type CheckOptions struct {
	// Bound is B_check: a read that begins more than Bound after a write
	// was acknowledged must not return an older version.
	Bound time.Duration
	// EpochAllowance is added to the bound of a degraded write (one whose
	// invalidation did not reach Redis), which is counted from the writer's
	// first epoch change after the write returned: the other instances
	// learn of the bump from the bus, or at their next epoch refresh (the
	// cache's EpochInterval) if they missed the event.
	EpochAllowance time.Duration
	// Paused lists, per instance, when its process was stopped (SIGSTOP to
	// SIGCONT). A stale read by that instance that began in a window or
	// less than PauseGrace after its end is counted apart (PausedStale), not
	// as a violation: see the package documentation for why (the health
	// gate is evaluated asynchronously, so a resumed process serves L1
	// before its watchdog runs). Nil counts every stale read.
	Paused     map[int][]Window
	PauseGrace time.Duration
	// Examples is how many violations of each kind are kept in the report.
	// Default 5.
	Examples int
	// TTLAllowance bounds what only the TTLs bound (the L2TTL the instances
	// use): a write whose process was killed between COMMIT and its
	// invalidation (Op.Killed), and a degraded write never followed by an
	// epoch change of its writer (it closed without reaching Redis, or never
	// reached it again), must not be served stale by a read that begins
	// more than TTLAllowance + Bound after it returned. Zero means
	// cache.DefaultL2TTL.
	TTLAllowance time.Duration
	// FeedBound is added to Bound for the writes of the external writer
	// (Op.External): the library never sees them, and the change feed
	// invalidates them within its own bound (see feedBound in the harness).
	FeedBound time.Duration
}

// Window is an interval of wall-clock Unix nanoseconds.
type Window struct{ Start, End int64 }

// ViolationKind names the rule a read broke.
type ViolationKind string

// Violation kinds.
const (
	// Stale: the read returned a version older than one acknowledged more
	// than the bound before the read began.
	Stale ViolationKind = "stale read"
	// ReadYourWrites: the read returned a version older than one its own
	// instance had written (acknowledged) before the read began.
	ReadYourWrites ViolationKind = "read-your-writes"
	// RolledBack: the read returned the value of a transaction that rolled
	// back.
	RolledBack ViolationKind = "rolled-back value"
	// ConflictValue: the read returned the value of a write that failed
	// with ErrConflict (which writes nothing).
	ConflictValue ViolationKind = "conflicting write's value"
	// Unknown: the read returned a token no write produced.
	Unknown ViolationKind = "value of no write"
	// Mismatch: the read's version and value do not belong together: the
	// write with that token wrote another row or version, or another
	// acknowledged write committed that version.
	Mismatch ViolationKind = "version/value mismatch"
	// Future: the read returned the value of a write that was called only
	// after the read returned.
	Future ViolationKind = "value from the future"
	// NotFound: the read answered "not found" for a row that exists.
	NotFound ViolationKind = "not found"
	// LostUpdate: two acknowledged writes committed the same version of a
	// row (optimistic locking failed).
	LostUpdate ViolationKind = "lost update"
	// SuspectStale: the read returned a version older than one its own
	// instance had been told (an invalidation.KindUnconfirmed event it
	// applied before the read began) was committed but not confirmed in
	// Redis: after that event the instance must not serve the key from L1
	// or Redis. Counted with the stale reads.
	SuspectStale ViolationKind = "stale read after an unconfirmed-write announcement"
)

// Violation is one broken rule.
type Violation struct {
	Kind  ViolationKind
	Read  Op  // the offending read (for LostUpdate: the second write)
	Write *Op // the write it is measured against, if any
	// Staleness is, for Stale, how long after that write's acknowledgement
	// the read began.
	Staleness time.Duration
}

func (v Violation) String() string {
	s := fmt.Sprintf("%s: instance %d key %d read v%d (token %d) called %s, took %v",
		v.Kind, v.Read.Inst, v.Read.Key, v.Read.Ver, v.Read.Token, stamp(v.Read.Call), v.Read.Duration().Round(time.Microsecond))
	if v.Write != nil {
		w := v.Write
		s += fmt.Sprintf("; write v%d (token %d, %s) by instance %d called %s returned %s", w.Ver, w.Token, w.Status, w.Inst, stamp(w.Call), stamp(w.Ret))
		if w.Degraded {
			s += " (degraded)"
		}
	}
	if v.Kind == Stale || v.Kind == SuspectStale {
		s += fmt.Sprintf("; read began %v after the acknowledgement", v.Staleness.Round(time.Microsecond))
	}
	return s
}

func stamp(ns int64) string { return time.Unix(0, ns).Format("15:04:05.000000") }

// Report is what Check found.
type Report struct {
	Ops          int // every operation recorded (epoch records excluded)
	Reads        int
	ReadsChecked int // successful reads, each checked against every rule
	ReadErrors   int // failed reads (not checked)
	Writes       int // acknowledged writes
	Conflicts    int // writes that failed with ErrConflict
	FailedWrites int // writes that failed otherwise (outcome unknown)
	Rollbacks    int // transactions rolled back after an update
	// DegradedWrites were acknowledged but their invalidation did not reach
	// Redis; DegradedUncovered of them saw no epoch change afterwards
	// (their bound never started: they constrain only read-your-writes).
	DegradedWrites, DegradedUncovered int
	EpochChanges                      int
	// FailedWritesSeen counts the failed writes whose value was read: they
	// committed although the caller saw an error.
	FailedWritesSeen int
	// UnconfirmedWrites were acknowledged with ErrInvalidationUnconfirmed;
	// KilledWrites committed in a process killed before invalidating;
	// OutsideWrites were made around the library (then Invalidate);
	// Announcements counts the unconfirmed-write announcements instances
	// applied (KindSuspect).
	UnconfirmedWrites, KilledWrites, OutsideWrites, Announcements int
	// PlainWrites counts the acknowledged writes made with plain GORM
	// through the plugin (Op.Plain), PlainByStyle the same by style; the
	// other outcomes of such writes are in PlainConflicts, PlainFailed
	// (outcome unknown) and PlainRollbacks (undone by a transaction or a
	// rollback to a savepoint). Each is counted in the figures above too.
	PlainWrites                                 int
	PlainByStyle                                map[string]int
	PlainConflicts, PlainFailed, PlainRollbacks int
	// ExternalWrites counts the acknowledged writes of the external writer
	// (Op.External), ExternalByStyle the same by style; ExternalConflicts,
	// ExternalFailed and ExternalRollbacks its other outcomes (counted in
	// the figures above too). NotFoundAfterDelete counts the reads that
	// answered "not found" legitimately, after an external DELETE.
	ExternalWrites                                       int
	ExternalByStyle                                      map[string]int
	ExternalConflicts, ExternalFailed, ExternalRollbacks int
	NotFoundAfterDelete                                  int

	StaleReads     int
	WorstStaleness time.Duration // the largest Staleness among stale reads
	// MaxLegalLag is the longest a legal read began after the
	// acknowledgement of a newer write than the one it returned (how close
	// the run came to the bound), among writes whose invalidation reached
	// Redis; MaxDegradedLag is the same behind degraded writes, which are
	// bounded from the writer's next epoch change instead.
	MaxLegalLag, MaxDegradedLag time.Duration
	LagExample                  *Violation // the read behind MaxLegalLag, and the write
	// PausedStale counts stale reads exempted by CheckOptions.Paused;
	// PausedStaleAfter is the latest such read's start after its
	// instance resumed, PausedStaleWorst the largest staleness among them.
	PausedStale                        int
	PausedStaleAfter, PausedStaleWorst time.Duration
	PausedExample                      *Violation
	RYWViolations                      int
	IntegrityViolations                int // RolledBack, ConflictValue, Unknown, Mismatch, Future, NotFound, LostUpdate
	Counts                             map[ViolationKind]int
	Examples                           []Violation // up to Examples per kind, earliest first
	First                              *Violation  // the earliest violation (by the read's call time)
	Start, End                         int64       // first call and last return in the history
}

// Violations is the number of broken rules of every kind.
func (r *Report) Violations() int { return r.StaleReads + r.RYWViolations + r.IntegrityViolations }

// String summarises the report.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "operations %d over %v: reads %d (checked %d, failed %d), writes acknowledged %d (plain GORM %d), conflicts %d, failed %d, rollbacks %d\n",
		r.Ops, time.Duration(r.End-r.Start).Round(time.Millisecond), r.Reads, r.ReadsChecked, r.ReadErrors, r.Writes, r.PlainWrites, r.Conflicts, r.FailedWrites, r.Rollbacks)
	if r.PlainWrites+r.PlainConflicts+r.PlainFailed+r.PlainRollbacks > 0 {
		styles := make([]string, 0, len(PlainStyles))
		for _, st := range PlainStyles {
			styles = append(styles, fmt.Sprintf("%s %d", st, r.PlainByStyle[st]))
		}
		fmt.Fprintf(&b, "plain-GORM writes through the plugin: acknowledged %d (%s), conflicts %d, failed %d, rolled back %d\n",
			r.PlainWrites, strings.Join(styles, ", "), r.PlainConflicts, r.PlainFailed, r.PlainRollbacks)
	}
	if r.ExternalWrites+r.ExternalConflicts+r.ExternalFailed+r.ExternalRollbacks > 0 {
		styles := make([]string, 0, len(ExternalStyles))
		for _, st := range ExternalStyles {
			styles = append(styles, fmt.Sprintf("%s %d", st, r.ExternalByStyle[st]))
		}
		fmt.Fprintf(&b, "external writes (plain SQL, seen only by the change feed): acknowledged %d (%s), conflicts %d, failed %d, rolled back %d; reads answering not found after a DELETE %d\n",
			r.ExternalWrites, strings.Join(styles, ", "), r.ExternalConflicts, r.ExternalFailed, r.ExternalRollbacks, r.NotFoundAfterDelete)
	}
	fmt.Fprintf(&b, "degraded writes (invalidation missed Redis) %d (never covered by an epoch bump: %d), epoch changes %d; failed writes whose value was read (they committed) %d\n",
		r.DegradedWrites, r.DegradedUncovered, r.EpochChanges, r.FailedWritesSeen)
	if r.UnconfirmedWrites+r.KilledWrites+r.OutsideWrites+r.Announcements > 0 {
		fmt.Fprintf(&b, "acknowledged with ErrInvalidationUnconfirmed %d, killed between COMMIT and invalidation %d (bounded by the TTL), made around the library %d; unconfirmed-write announcements applied %d\n",
			r.UnconfirmedWrites, r.KilledWrites, r.OutsideWrites, r.Announcements)
	}
	fmt.Fprintf(&b, "stale reads %d (worst staleness %v), read-your-writes violations %d, integrity violations %d\n",
		r.StaleReads, r.WorstStaleness.Round(time.Microsecond), r.RYWViolations, r.IntegrityViolations)
	fmt.Fprintf(&b, "longest legal lag (a read began after a newer write's acknowledgement and returned the older version): %v behind a write that reached Redis, %v behind a degraded write\n",
		r.MaxLegalLag.Round(time.Microsecond), r.MaxDegradedLag.Round(time.Microsecond))
	if r.PausedStale > 0 {
		fmt.Fprintf(&b, "stale reads by an instance within the grace after its own SIGCONT (known library issue, not counted above): %d, worst staleness %v, latest %v after the resume\n",
			r.PausedStale, r.PausedStaleWorst.Round(time.Microsecond), r.PausedStaleAfter.Round(time.Microsecond))
		fmt.Fprintf(&b, "  e.g. %s\n", r.PausedExample)
	}
	if r.LagExample != nil {
		fmt.Fprintf(&b, "  longest: %s\n", strings.TrimPrefix(r.LagExample.String(), ": "))
	}
	kinds := make([]string, 0, len(r.Counts))
	for k, n := range r.Counts {
		kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(kinds)
	if len(kinds) > 0 {
		fmt.Fprintf(&b, "violations by kind: %s\n", strings.Join(kinds, ", "))
	}
	for _, v := range r.Examples {
		fmt.Fprintf(&b, "  %s\n", v)
	}
	return b.String()
}

// keyWrites indexes the acknowledged writes of one key.
type keyWrites struct {
	byVer []*Op // sorted by version
	// sufDeadline[i] is the earliest deadline among byVer[i:], reached by
	// byVer[sufArg[i]]; sufRet[i] is the earliest acknowledgement among them.
	sufDeadline []int64
	sufArg      []int
	sufRet      []int64 // among writes that are not degraded (MaxInt64: none)
	sufRetArg   []int
	sufRetDeg   []int64 // among degraded writes
}

// instWrites indexes the acknowledged writes of one key by one instance.
type instWrites struct {
	byRet  []*Op // sorted by return time
	prefix []int // prefix[i]: index in byRet of the highest version among byRet[:i+1]
	maxVer []uint64
}

type instKey struct {
	inst int
	key  int64
}

// Check evaluates a history against the guarantee. The rules:
//
//  1. Staleness. Versions of a row are totally ordered (each write is
//     "SET version = version+1 WHERE version = old"). For every successful
//     read of version v, find the acknowledged writes of the same row with a
//     version above v; each has a deadline, its return time plus Bound (for
//     a degraded write: its writer's first epoch change after it returned,
//     plus Bound and EpochAllowance; no such change, no deadline). If the
//     read began after the earliest of those deadlines it is stale. Writes
//     are sorted by version once per key with suffix minima of the
//     deadlines, so each read costs one binary search.
//  2. Read-your-writes. For every successful read, the acknowledged writes
//     of the same row by the same instance that returned before the read
//     began must all have a version ≤ the version read (prefix maxima over
//     writes sorted by return time; one binary search per read).
//  3. Integrity. Every value carries the token of the write that produced
//     it (seed rows: token 0 at version 1). The write must exist, be of the
//     same row and version, not be a rollback or a conflict, and must have
//     been called before the read returned; no acknowledged write may have
//     committed the same version with another token.
//
// Failed writes (StatusError) may or may not have committed: they are
// never acknowledged, so they constrain no read (rules 1 and 2), and
// reading their value is legal (rule 3) unless an acknowledged write
// committed that version instead.
func Check(ops []Op, o CheckOptions) *Report {
	if o.Examples == 0 {
		o.Examples = 5
	}
	r := &Report{Counts: map[ViolationKind]int{}, PlainByStyle: map[string]int{}, ExternalByStyle: map[string]int{}, Start: math.MaxInt64}
	if o.TTLAllowance == 0 {
		o.TTLAllowance = defaultTTLAllowance
	}
	var found []Violation
	report := func(v Violation) { found = append(found, v) }
	ch := chainOutside(ops)
	suspects := map[instKey][]*Op{}
	var reads []*Op
	byToken := map[int64]*Op{}
	epochs := map[int][]int64{}
	acked := map[int64][]*Op{}
	mine := map[instKey][]*Op{}
	deletes := map[int64][]*Op{} // possibly committed deletes per key
	for i := range ops {
		op := &ops[i]
		if op.Kind == KindEpoch {
			r.EpochChanges++
			epochs[op.Inst] = append(epochs[op.Inst], op.Ret)
			continue
		}
		if op.Kind == KindSuspect {
			k := instKey{op.Inst, op.Key}
			suspects[k] = append(suspects[k], op)
			r.Announcements++
			continue
		}
		r.Ops++
		r.Start = min(r.Start, op.Call)
		r.End = max(r.End, op.Ret)
		if ch.keys[op.Key] {
			var ok bool
			if op, ok = ch.logical(op, report); !ok {
				continue
			}
		}
		switch op.Kind {
		case KindRead:
			r.Reads++
			if op.Status == StatusOK || op.Status == StatusNotFound {
				reads = append(reads, op)
			} else {
				r.ReadErrors++
			}
		case KindWrite, KindRollback:
			if op.Token != 0 {
				byToken[op.Token] = op
			}
			if op.External != "" {
				r.countExternal(op)
			}
			if op.Deleted && op.Kind == KindWrite && (op.Status == StatusOK || op.Status == StatusError) {
				deletes[op.Key] = append(deletes[op.Key], op)
			}
			if op.Plain != "" {
				switch {
				case op.Kind == KindRollback:
					r.PlainRollbacks++
				case op.Status == StatusOK:
					r.PlainWrites++
					r.PlainByStyle[op.Plain]++
				case op.Status == StatusConflict:
					r.PlainConflicts++
				default:
					r.PlainFailed++
				}
			}
			switch {
			case op.Kind == KindRollback:
				r.Rollbacks++
			case op.Status == StatusOK:
				r.Writes++
				if op.Unconfirmed {
					r.UnconfirmedWrites++
				}
				if op.Killed {
					r.KilledWrites++
				}
				if op.Outside {
					r.OutsideWrites++
				}
				acked[op.Key] = append(acked[op.Key], op)
				k := instKey{op.Inst, op.Key}
				mine[k] = append(mine[k], op)
				if op.Degraded {
					r.DegradedWrites++
				}
			case op.Status == StatusConflict:
				r.Conflicts++
			default:
				r.FailedWrites++
			}
		}
	}
	if r.Ops == 0 {
		r.Start = 0
	}
	for _, ts := range epochs {
		sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	}
	bound, allowance, ttl := int64(o.Bound), int64(o.EpochAllowance), int64(o.TTLAllowance)
	deadline := func(w *Op) int64 {
		byTTL := w.Ret + ttl + bound
		switch {
		case w.Killed:
			return byTTL
		case w.External != "":
			return w.Ret + bound + int64(o.FeedBound)
		case !w.Degraded:
			return w.Ret + bound
		}
		ts := epochs[w.Inst]
		i := sort.Search(len(ts), func(i int) bool { return ts[i] >= w.Ret })
		if i == len(ts) {
			r.DegradedUncovered++
			return byTTL
		}
		return min(ts[i]+bound+allowance, byTTL)
	}
	// An announcement holds an instance's reads to its version only if a
	// write of that version committed before it was made: the library
	// invalidates a write whose outcome is unknown as if it had committed
	// (and announces it unconfirmed if Redis does not answer), and when it
	// had not, the older version is still the latest and reading it (from
	// the database, as a told instance does) is right. Committed: an
	// acknowledged write of the key at that version, or a failed one whose
	// value some read returned, called before the announcement.
	committedCall := map[[2]uint64]int64{}
	noteCommitted := func(w *Op) {
		k := [2]uint64{uint64(w.Key), w.Ver}
		if c, ok := committedCall[k]; !ok || w.Call < c {
			committedCall[k] = w.Call
		}
	}
	for _, ws := range acked {
		for _, w := range ws {
			noteCommitted(w)
		}
	}
	for _, rd := range reads {
		if w := byToken[rd.Token]; rd.Status == StatusOK && rd.Token != 0 && w != nil &&
			w.Kind == KindWrite && w.Status == StatusError && w.Key == rd.Key && w.Ver == rd.Ver {
			noteCommitted(w)
		}
	}
	for k, ss := range suspects {
		kept := ss[:0]
		for _, s := range ss {
			if c, ok := committedCall[[2]uint64{uint64(s.Key), s.Ver}]; ok && c <= s.Ret {
				kept = append(kept, s)
			}
		}
		if len(kept) == 0 {
			delete(suspects, k)
		} else {
			suspects[k] = kept
		}
	}
	// Per instance and key, the announcements of unconfirmed writes it
	// applied, by time, with prefix maxima of their versions.
	susMax := make(map[instKey][]uint64, len(suspects))
	for k, ss := range suspects {
		sort.Slice(ss, func(i, j int) bool { return ss[i].Ret < ss[j].Ret })
		m := make([]uint64, len(ss))
		for i, s := range ss {
			m[i] = s.Ver
			if i > 0 {
				m[i] = max(m[i], m[i-1])
			}
		}
		susMax[k] = m
	}

	// Index the acknowledged writes per key, by version.
	keys := make(map[int64]*keyWrites, len(acked))
	for key, ws := range acked {
		sort.Slice(ws, func(i, j int) bool { return ws[i].Ver < ws[j].Ver || ws[i].Ver == ws[j].Ver && ws[i].Ret < ws[j].Ret })
		n := len(ws)
		kw := &keyWrites{byVer: ws, sufDeadline: make([]int64, n), sufArg: make([]int, n),
			sufRet: make([]int64, n), sufRetArg: make([]int, n), sufRetDeg: make([]int64, n)}
		for i := n - 1; i >= 0; i-- {
			d := deadline(ws[i])
			kw.sufDeadline[i], kw.sufArg[i] = d, i
			kw.sufRet[i], kw.sufRetArg[i], kw.sufRetDeg[i] = math.MaxInt64, i, math.MaxInt64
			if ws[i].Degraded {
				kw.sufRetDeg[i] = ws[i].Ret
			} else {
				kw.sufRet[i] = ws[i].Ret
			}
			if i+1 < n {
				if kw.sufDeadline[i+1] < d {
					kw.sufDeadline[i], kw.sufArg[i] = kw.sufDeadline[i+1], kw.sufArg[i+1]
				}
				if kw.sufRet[i+1] < kw.sufRet[i] {
					kw.sufRet[i], kw.sufRetArg[i] = kw.sufRet[i+1], kw.sufRetArg[i+1]
				}
				kw.sufRetDeg[i] = min(kw.sufRetDeg[i], kw.sufRetDeg[i+1])
			}
			if i > 0 && ws[i-1].Ver == ws[i].Ver {
				report(Violation{Kind: LostUpdate, Read: *ws[i], Write: ws[i-1]})
			}
		}
		keys[key] = kw
	}
	// Index each instance's acknowledged writes per key, by return time.
	own := make(map[instKey]*instWrites, len(mine))
	for k, ws := range mine {
		sort.Slice(ws, func(i, j int) bool { return ws[i].Ret < ws[j].Ret })
		iw := &instWrites{byRet: ws, prefix: make([]int, len(ws)), maxVer: make([]uint64, len(ws))}
		for i, w := range ws {
			iw.prefix[i], iw.maxVer[i] = i, w.Ver
			if i > 0 && iw.maxVer[i-1] > w.Ver {
				iw.prefix[i], iw.maxVer[i] = iw.prefix[i-1], iw.maxVer[i-1]
			}
		}
		own[k] = iw
	}

	seenFailed := map[*Op]bool{}
	for _, rd := range reads {
		r.ReadsChecked++
		if rd.Status == StatusNotFound {
			d := latestDelete(deletes[rd.Key], rd.Ret)
			if d == nil {
				report(Violation{Kind: NotFound, Read: *rd})
				continue
			}
			// It reads the delete: checked as a read of that version.
			r.NotFoundAfterDelete++
			c := *rd
			c.Ver, c.Token = d.Ver, d.Token
			rd = &c
		}
		kw := keys[rd.Key]
		// Rule 3: integrity of the value (at most one violation per read).
		bad := true
		if rd.Token == 0 {
			if rd.Ver != 1 {
				report(Violation{Kind: Mismatch, Read: *rd})
			} else {
				bad = false
			}
		} else if w := byToken[rd.Token]; w == nil {
			report(Violation{Kind: Unknown, Read: *rd})
		} else {
			switch {
			case w.Key != rd.Key || w.Ver != rd.Ver:
				report(Violation{Kind: Mismatch, Read: *rd, Write: w})
			case w.Kind == KindRollback:
				report(Violation{Kind: RolledBack, Read: *rd, Write: w})
			case w.Status == StatusConflict:
				report(Violation{Kind: ConflictValue, Read: *rd, Write: w})
			case w.Call > rd.Ret:
				report(Violation{Kind: Future, Read: *rd, Write: w})
			default:
				bad = false
				if w.Status == StatusError && !seenFailed[w] {
					seenFailed[w] = true
					r.FailedWritesSeen++
				}
			}
		}
		if kw != nil {
			i := sort.Search(len(kw.byVer), func(i int) bool { return kw.byVer[i].Ver >= rd.Ver })
			if !bad && i < len(kw.byVer) && kw.byVer[i].Ver == rd.Ver && kw.byVer[i].Token != rd.Token {
				report(Violation{Kind: Mismatch, Read: *rd, Write: kw.byVer[i]})
			}
			// Rule 1: staleness.
			j := sort.Search(len(kw.byVer), func(i int) bool { return kw.byVer[i].Ver > rd.Ver })
			if j < len(kw.byVer) {
				if rd.Call > kw.sufDeadline[j] {
					w := kw.byVer[kw.sufArg[j]]
					v := Violation{Kind: Stale, Read: *rd, Write: w, Staleness: time.Duration(rd.Call - w.Ret)}
					if after, ok := resumed(o.Paused[rd.Inst], rd.Call, int64(o.PauseGrace)); ok {
						r.PausedStale++
						r.PausedStaleAfter = max(r.PausedStaleAfter, after)
						if v.Staleness > r.PausedStaleWorst {
							r.PausedStaleWorst, r.PausedExample = v.Staleness, &v
						}
					} else {
						report(v)
					}
				} else {
					if lag := time.Duration(rd.Call - kw.sufRet[j]); kw.sufRet[j] != math.MaxInt64 && lag > r.MaxLegalLag {
						r.MaxLegalLag = lag
						r.LagExample = &Violation{Read: *rd, Write: kw.byVer[kw.sufRetArg[j]], Staleness: lag}
					}
					if lag := time.Duration(rd.Call - kw.sufRetDeg[j]); kw.sufRetDeg[j] != math.MaxInt64 && lag > r.MaxDegradedLag {
						r.MaxDegradedLag = lag
					}
				}
			}
		}
		// Rule 4: announcements of unconfirmed writes (not for outside rows,
		// whose announcements carry no version).
		if ss := suspects[instKey{rd.Inst, rd.Key}]; ss != nil && !ch.keys[rd.Key] {
			i := sort.Search(len(ss), func(i int) bool { return ss[i].Ret >= rd.Call }) - 1
			if i >= 0 && susMax[instKey{rd.Inst, rd.Key}][i] > rd.Ver {
				j := i
				for ss[j].Ver != susMax[instKey{rd.Inst, rd.Key}][i] {
					j--
				}
				report(Violation{Kind: SuspectStale, Read: *rd, Write: ss[j], Staleness: time.Duration(rd.Call - ss[j].Ret)})
			}
		}
		// Rule 2: read-your-writes.
		if iw := own[instKey{rd.Inst, rd.Key}]; iw != nil {
			i := sort.Search(len(iw.byRet), func(i int) bool { return iw.byRet[i].Ret >= rd.Call }) - 1
			if i >= 0 && iw.maxVer[i] > rd.Ver {
				report(Violation{Kind: ReadYourWrites, Read: *rd, Write: iw.byRet[iw.prefix[i]]})
			}
		}
	}

	sort.SliceStable(found, func(i, j int) bool { return found[i].Read.Call < found[j].Read.Call })
	for i, v := range found {
		r.Counts[v.Kind]++
		switch v.Kind {
		case Stale:
			r.StaleReads++
			r.WorstStaleness = max(r.WorstStaleness, v.Staleness)
		case SuspectStale:
			r.StaleReads++
		case ReadYourWrites:
			r.RYWViolations++
		default:
			r.IntegrityViolations++
		}
		if r.Counts[v.Kind] <= o.Examples {
			r.Examples = append(r.Examples, v)
		}
		if i == 0 {
			r.First = &found[0]
		}
	}
	return r
}

// countExternal counts an external write's outcome in the report.
func (r *Report) countExternal(op *Op) {
	switch {
	case op.Kind == KindRollback:
		r.ExternalRollbacks++
	case op.Status == StatusOK:
		r.ExternalWrites++
		r.ExternalByStyle[op.External]++
	case op.Status == StatusConflict:
		r.ExternalConflicts++
	default:
		r.ExternalFailed++
	}
}

// latestDelete returns, among a key's possibly committed deletes, the one
// of the highest version called before ret (nil: none). A read answering
// "not found" is checked as a read of it: the most lenient choice, since
// staleness only falls with the version read.
func latestDelete(ds []*Op, ret int64) *Op {
	var best *Op
	for _, d := range ds {
		if d.Call <= ret && (best == nil || d.Ver > best.Ver) {
			best = d
		}
	}
	return best
}

// resumed reports whether t falls in one of the windows or less than grace
// after its end, and how long after the end (0 inside the window).
func resumed(ws []Window, t, grace int64) (time.Duration, bool) {
	for _, w := range ws {
		if t >= w.Start && t <= w.End+grace {
			return time.Duration(max(t-w.End, 0)), true
		}
	}
	return 0, false
}

// defaultTTLAllowance is CheckOptions.TTLAllowance's default: the cache's
// default L2TTL.
const defaultTTLAllowance = 10 * time.Minute

// outsideChains orders the writes made around the library (Op.Outside).
// They leave the version as it is or reset it to 1, so the version does not
// order them; each records the token of the row it replaced (read under a
// row lock), which chains every row's outside writes from its seed (token
// 0). A write's logical version is its place in the chain (the seed is 1);
// the checker substitutes it for the row version in every operation on
// those rows, after checking that a read's row version is the one the
// write of its token wrote.
type outsideChains struct {
	keys    map[int64]bool   // rows with outside writes
	pos     map[int64]uint64 // token → logical version (0: not in a chain)
	realVer map[int64]uint64 // token → the row version it wrote
}

func chainOutside(ops []Op) *outsideChains {
	ch := &outsideChains{keys: map[int64]bool{}}
	children := map[[2]int64][]*Op{} // (key, prev token) → writes that replaced it
	for i := range ops {
		op := &ops[i]
		if op.Kind == KindWrite && op.Outside && (op.Status == StatusOK || op.Status == StatusError) {
			ch.keys[op.Key] = true
			children[[2]int64{op.Key, op.Prev}] = append(children[[2]int64{op.Key, op.Prev}], op)
		}
	}
	if len(ch.keys) == 0 {
		return ch
	}
	ch.pos, ch.realVer = map[int64]uint64{}, map[int64]uint64{}
	for key := range ch.keys {
		type node struct {
			tok int64
			pos uint64
		}
		queue := []node{{0, 1}}
		for len(queue) > 0 {
			n := queue[0]
			queue = queue[1:]
			for _, w := range children[[2]int64{key, n.tok}] {
				if _, seen := ch.pos[w.Token]; !seen {
					ch.pos[w.Token], ch.realVer[w.Token] = n.pos+1, w.Ver
					queue = append(queue, node{w.Token, n.pos + 1})
				}
			}
		}
	}
	return ch
}

// logical returns a copy of op (on a row with outside writes) with its
// logical version, reporting a read whose row version is not the one its
// value's write wrote. ok is false for an outside write outside every
// chain (its predecessor is not in the history: possible only in a check
// made while the instances still run): it is left out.
func (ch *outsideChains) logical(op *Op, report func(Violation)) (*Op, bool) {
	c := *op
	switch c.Kind {
	case KindWrite:
		p, ok := ch.pos[c.Token]
		if !ok {
			if c.Status == StatusOK {
				report(Violation{Kind: Unknown, Read: c})
			}
			return nil, false
		}
		c.Ver = p
	case KindRead:
		if c.Status != StatusOK {
			break
		}
		want, p := uint64(1), uint64(1)
		if c.Token != 0 {
			var ok bool
			if p, ok = ch.pos[c.Token]; !ok {
				c.Ver = 0 // a value of no chained write: Unknown or Mismatch below
				break
			}
			want = ch.realVer[c.Token]
		}
		if c.Ver != want {
			report(Violation{Kind: Mismatch, Read: c})
		}
		c.Ver = p
	}
	return &c, true
}
