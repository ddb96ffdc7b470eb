package torture

import (
	"fmt"

	"github.com/gormcache/gormcache/cache"
)

// PeekEntry is what one instance's tiers hold for one row (cache.Peek).
type PeekEntry struct {
	Key    int64           `json:"k"`
	L1, L2 cache.TierEntry `json:",omitempty"`
}

// InstancePeek is every row's PeekEntry on one instance.
type InstancePeek struct {
	Inst    int         `json:"inst"`
	Serving bool        `json:"serving"` // L1 was being served
	Entries []PeekEntry `json:"entries"`
}

// Disagreement is a tier entry that disagrees with the database.
type Disagreement struct {
	Inst    int
	Key     int64
	Tier    string // "L1" or "L2"
	Entry   cache.TierEntry
	DB      uint64 // the row's version in the database
	Problem string
	// Unacknowledged is set when the database's version was written by a
	// write whose caller got an error (its COMMIT reply was lost), so the
	// library never invalidated it: see Explain.
	Unacknowledged *Op
}

func (m Disagreement) String() string {
	s := fmt.Sprintf("instance %d key %d %s: %s (entry %+v, database v%d)", m.Inst, m.Key, m.Tier, m.Problem, m.Entry, m.DB)
	if w := m.Unacknowledged; w != nil {
		s += fmt.Sprintf("; v%d was committed by instance %d's write (token %d) that returned an error: %s", w.Ver, w.Inst, w.Token, w.Err)
	}
	return s
}

// Explain marks the disagreements whose database version was written by a
// failed write (StatusError) of ops: the write committed, its caller got an
// error (say the connection broke before COMMIT's reply), and the
// repository, which invalidates only after a write it knows succeeded, left
// every tier at the previous version.
func Explain(ds []Disagreement, ops []Op) {
	failed := map[[2]uint64]*Op{}
	for i := range ops {
		if op := &ops[i]; op.Kind == KindWrite && op.Status == StatusError {
			failed[[2]uint64{uint64(op.Key), op.Ver}] = op
		}
	}
	for i := range ds {
		d := &ds[i]
		if d.Entry.Kind == cache.KindValue && d.Entry.Version < d.DB {
			d.Unacknowledged = failed[[2]uint64{uint64(d.Key), d.DB}]
		}
	}
}

// CheckConvergence compares what every tier of every instance holds with the
// database (row id → version). An entry a reader could be served (present,
// not corrupt, not expired, and in L2 not from an older epoch) must be a
// value at the database's version; tombstones and absent entries are fine;
// a not-found entry for an existing row is not. Corrupt entries are skipped:
// a reader counts, deletes and ignores them.
func CheckConvergence(db map[int64]uint64, peeks []InstancePeek) []Disagreement {
	var out []Disagreement
	for _, p := range peeks {
		for _, e := range p.Entries {
			want, exists := db[e.Key]
			for _, tier := range []struct {
				name string
				te   cache.TierEntry
			}{{"L1", e.L1}, {"L2", e.L2}} {
				te := tier.te
				if !te.Present || te.Corrupt || te.Expired || te.Stale {
					continue
				}
				m := Disagreement{Inst: p.Inst, Key: e.Key, Tier: tier.name, Entry: te, DB: want}
				switch {
				case te.Kind == cache.KindNotFound && exists:
					m.Problem = "not-found entry for an existing row"
				case te.Kind == cache.KindValue && !exists:
					m.Problem = "value for a row the database lacks"
				case te.Kind == cache.KindValue && te.Version != want:
					m.Problem = fmt.Sprintf("value at v%d", te.Version)
				default:
					continue
				}
				out = append(out, m)
			}
		}
	}
	return out
}
