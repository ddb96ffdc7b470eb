package repository

import (
	"context"
	"errors"
	"testing"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/failpoint"
)

func TestTransactionCommitAndRollback(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	r := accounts(t, e)
	n := notes(t, e)
	ctx := context.Background()
	mustCreate(t, r, &account{ID: 1, Email: "a@x", Name: "v1"})
	mustCreate(t, n, &note{ID: 1, Body: "v1"})
	r.Get(ctx, 1)
	n.Get(ctx, 1)

	// Rollback: nothing invalidated, the cache still agrees with the database.
	before := e.c.Stats().Invalidations
	boom := errors.New("boom")
	err := Transaction(ctx, e.db, func(tx *Tx) error {
		a, err := r.WithTx(tx).Get(ctx, 1)
		if err != nil {
			return err
		}
		a.Name = "rolled back"
		if err := r.WithTx(tx).Update(ctx, a); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if e.c.Stats().Invalidations != before {
		t.Fatal("a rolled-back transaction invalidated")
	}
	if got, _ := r.Get(ctx, 1); got.Name != "v1" {
		t.Fatalf("after rollback: %+v", got)
	}

	// Commit across two repositories: both visible at once after it returns.
	err = Transaction(ctx, e.db, func(tx *Tx) error {
		a, _ := r.WithTx(tx).Get(ctx, 1)
		a.Name = "v2"
		if err := r.WithTx(tx).Update(ctx, a); err != nil {
			return err
		}
		return n.WithTx(tx).Update(ctx, &note{ID: 1, Body: "v2"})
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Get(ctx, 1); got.Name != "v2" || got.Version != 2 {
		t.Fatalf("account after commit: %+v", got)
	}
	if got, _ := n.Get(ctx, 1); got.Body != "v2" {
		t.Fatalf("note after commit: %+v", got)
	}
}

func TestSavepoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	r := accounts(t, e)
	ctx := context.Background()
	mustCreate(t, r, &account{ID: 1, Email: "a@x"})
	mustCreate(t, r, &account{ID: 2, Email: "b@x"})
	mustCreate(t, r, &account{ID: 3, Email: "c@x"})
	for id := int64(1); id <= 3; id++ {
		r.Get(ctx, id) // cached at version 1
	}
	before := e.c.Stats().Invalidations
	err := Transaction(ctx, e.db, func(tx *Tx) error {
		tr := r.WithTx(tx)
		bump := func(id int64) error {
			a, err := tr.Get(ctx, id)
			if err != nil {
				return err
			}
			a.Balance++
			return tr.Update(ctx, a)
		}
		if err := bump(1); err != nil {
			return err
		}
		if err := tx.SavePoint("sp"); err != nil {
			return err
		}
		if err := bump(2); err != nil {
			return err
		}
		if err := tx.RollbackTo("sp"); err != nil {
			return err
		}
		nestedErr := tx.Transaction(func(tx *Tx) error {
			if err := bump(3); err != nil {
				return err
			}
			return errors.New("roll back the nested transaction")
		})
		if nestedErr == nil {
			t.Error("nested transaction did not fail")
		}
		return tx.RollbackTo("nope") // unknown savepoint: an error, not a panic
	})
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("err = %v", err)
	}
	if e.c.Stats().Invalidations != before {
		t.Fatal("rolled-back transaction invalidated")
	}
	// Same, committed: only row 1 changed, only row 1 is invalidated.
	err = Transaction(ctx, e.db, func(tx *Tx) error {
		tr := r.WithTx(tx)
		a, _ := tr.Get(ctx, 1)
		a.Balance++
		if err := tr.Update(ctx, a); err != nil {
			return err
		}
		tx.SavePoint("sp")
		b, _ := tr.Get(ctx, 2)
		b.Balance++
		if err := tr.Update(ctx, b); err != nil {
			return err
		}
		return tx.RollbackTo("sp")
	})
	if err != nil {
		t.Fatal(err)
	}
	st := e.c.Stats()
	if got := st.Invalidations - before; got != 3 { // row 1, its email mapping and the table's generation
		t.Fatalf("%d invalidations, want 3 (row 1 only)", got)
	}
	if a, _ := r.Get(ctx, 1); a.Balance != 1 || a.Version != 2 {
		t.Fatalf("row 1: %+v", a)
	}
	if b, _ := r.Get(ctx, 2); b.Balance != 0 || b.Version != 1 {
		t.Fatalf("row 2: %+v", b)
	}
}

// txScenario forces a race around a transaction and reports whether a read
// after the transaction returned saw a wrong row. Each runs with its guard
// and with the guard switched off, which must produce the wrong read.
type txScenario struct {
	name  string
	guard string
	opts  func(*cache.Options)
	run   func(t *testing.T, e env) (wrong bool)
}

var txScenarios = []txScenario{
	{
		// Race 2, versioned model, process-local cache: if the invalidation
		// ran before COMMIT, a reader between the two would load and cache
		// the old row, and nothing would evict it. (With Redis, the row's
		// versioned tombstone rejects that fill even then.)
		name: "invalidation before commit (versioned, L1 only)", guard: failpoint.GuardAfterCommit,
		opts: func(o *cache.Options) { o.Redis = nil },
		run: func(t *testing.T, e env) bool {
			r := accounts(t, e)
			ctx := context.Background()
			mustCreate(t, r, &account{ID: 1, Email: "a@x", Name: "v1"})
			defer failpoint.Set(failpoint.BeforeCommit, "", func(context.Context, string) {
				r.Get(ctx, 1) // a concurrent reader: sees the committed v1
				e.c.Settle()
			})()
			if err := Transaction(ctx, e.db, func(tx *Tx) error {
				return r.WithTx(tx).Update(ctx, &account{ID: 1, Email: "a@x", Name: "v2", Version: 1})
			}); err != nil {
				t.Fatal(err)
			}
			got, err := r.Get(ctx, 1)
			return err != nil || got.Name != "v2"
		},
	},
	{
		// Race 2, unversioned model: there the Redis tier is fooled too.
		name: "invalidation before commit (unversioned)", guard: failpoint.GuardAfterCommit,
		run: func(t *testing.T, e env) bool {
			n := notes(t, e)
			ctx := context.Background()
			mustCreate(t, n, &note{ID: 1, Body: "v1"})
			defer failpoint.Set(failpoint.BeforeCommit, "", func(context.Context, string) {
				e.c.FlushLocal() // the reader is another instance: only Redis is shared
				n.Get(ctx, 1)
				e.c.Settle() // its Redis fill has landed before COMMIT
			})()
			if err := Transaction(ctx, e.db, func(tx *Tx) error {
				return n.WithTx(tx).Update(ctx, &note{ID: 1, Body: "v2"})
			}); err != nil {
				t.Fatal(err)
			}
			e.c.FlushLocal()
			got, err := n.Get(ctx, 1)
			return err != nil || got.Body != "v2"
		},
	},
	{
		// Race 3: a read inside a transaction sees its uncommitted write; if
		// it filled the cache, the rollback would leave a phantom behind.
		name: "fill from an uncommitted transaction", guard: failpoint.GuardNoTxFill,
		run: func(t *testing.T, e env) bool {
			r := accounts(t, e)
			ctx := context.Background()
			mustCreate(t, r, &account{ID: 1, Email: "a@x", Name: "v1"})
			Transaction(ctx, e.db, func(tx *Tx) error {
				tr := r.WithTx(tx)
				if err := tr.Update(ctx, &account{ID: 1, Email: "a@x", Name: "uncommitted", Version: 1}); err != nil {
					t.Fatal(err)
				}
				tr.Get(ctx, 1)
				return errors.New("roll back")
			})
			got, err := r.Get(ctx, 1)
			return err != nil || got.Name != "v1"
		},
	},
}

func TestTransactionRaces(t *testing.T) {
	for _, sc := range txScenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Run("guarded", func(t *testing.T) {
				if sc.run(t, newEnv(t, sc.opts)) {
					t.Fatal("wrong read after the transaction returned")
				}
			})
			t.Run("guard off", func(t *testing.T) {
				defer failpoint.Disable(sc.guard)()
				if !sc.run(t, newEnv(t, sc.opts)) {
					t.Fatalf("no wrong read with %s switched off: the scenario does not exercise it", sc.guard)
				}
			})
		})
	}
}

// TestVersionGuardCoversEarlyInvalidation shows the defence in depth of a
// versioned model with Redis: even if a transaction's invalidation ran
// before COMMIT, the versioned tombstone rejects the old row's fill.
func TestVersionGuardCoversEarlyInvalidation(t *testing.T) {
	defer failpoint.Disable(failpoint.GuardAfterCommit)()
	if txScenarios[0].run(t, newEnv(t, nil)) {
		t.Fatal("a versioned row was served stale although Redis holds its versioned tombstone")
	}
}
