package repository

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/failpoint"
)

// Tx is a database transaction spanning any number of repositories. Bind a
// repository to it with WithTx. Reads through bound repositories go to the
// transaction only; their invalidations are queued and applied after the
// outermost COMMIT returns, and dropped on ROLLBACK (including rollback to a
// savepoint).
type Tx struct {
	db *gorm.DB // transaction-bound
	st *txState
}

// txState is shared by a transaction and its nested transactions.
type txState struct {
	mu      sync.Mutex // protects the fields below
	pending []pendingInv
	marks   map[string]int // savepoint name → len(pending) when it was set
}

type pendingInv struct {
	c   *cache.Cache
	inv cache.Invalidation
}

func (s *txState) add(c *cache.Cache, invs []cache.Invalidation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, inv := range invs {
		s.pending = append(s.pending, pendingInv{c, inv})
	}
}

func (s *txState) mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

func (s *txState) truncate(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n < len(s.pending) {
		s.pending = s.pending[:n]
	}
}

// flush applies the pending invalidations, one InvalidateMany per cache.
func (s *txState) flush(ctx context.Context) error {
	s.mu.Lock()
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	byCache := map[*cache.Cache][]cache.Invalidation{}
	var order []*cache.Cache
	for _, p := range pending {
		if _, ok := byCache[p.c]; !ok {
			order = append(order, p.c)
		}
		byCache[p.c] = append(byCache[p.c], p.inv)
	}
	var first error
	for _, c := range order {
		if err := c.InvalidateMany(ctx, byCache[c]); err != nil && first == nil {
			first = fmt.Errorf("gormcache: the transaction committed but its invalidation failed: %w", err)
		}
	}
	return first
}

// Transaction runs fn in a database transaction on db (the shared
// connection). If fn returns nil and COMMIT succeeds, the invalidations of
// every repository bound to the transaction are applied, then Transaction
// returns. If fn returns an error or panics, the transaction rolls back and
// nothing is invalidated. If COMMIT itself fails, the invalidations are
// applied anyway: the outcome of a failed COMMIT may be unknown, and an
// extra invalidation is harmless where a missing one is not.
func Transaction(ctx context.Context, db *gorm.DB, fn func(tx *Tx) error, opts ...*sql.TxOptions) error {
	if db == nil || fn == nil {
		return fmt.Errorf("%w: nil *gorm.DB or function", ErrInvalidArgument)
	}
	if isTxBound(db) {
		return fmt.Errorf("%w: nest transactions with (*Tx).Transaction", ErrTxBound)
	}
	st := &txState{marks: map[string]int{}}
	fnOK := false
	err := db.WithContext(ctx).Transaction(func(gtx *gorm.DB) error {
		if err := fn(&Tx{db: gtx, st: st}); err != nil {
			return err
		}
		fnOK = true
		if failpoint.Disabled(failpoint.GuardAfterCommit) { // test hook: invalidate before COMMIT
			if err := st.flush(ctx); err != nil {
				return err
			}
		}
		failpoint.Hit(ctx, failpoint.BeforeCommit, "")
		return nil
	}, opts...)
	if !fnOK {
		return err
	}
	failpoint.Hit(ctx, failpoint.AfterCommitBeforeInvalidate, "")
	if ferr := st.flush(context.WithoutCancel(ctx)); err == nil {
		err = ferr
	}
	return err
}

// DB returns the transaction-bound *gorm.DB, for queries of your own that
// must run in the transaction. Invalidate what they write with the bound
// repositories' Invalidate.
func (t *Tx) DB() *gorm.DB { return t.db }

// Transaction runs fn in a nested transaction (a SAVEPOINT). If fn fails,
// the database rolls back to the savepoint and the invalidations queued
// inside fn are dropped; the outer transaction goes on.
func (t *Tx) Transaction(fn func(tx *Tx) error) error {
	if fn == nil {
		return fmt.Errorf("%w: nil function", ErrInvalidArgument)
	}
	mark := t.st.mark()
	err := t.db.Transaction(func(gtx *gorm.DB) error { return fn(&Tx{db: gtx, st: t.st}) })
	if err != nil {
		t.st.truncate(mark)
	}
	return err
}

// SavePoint sets a savepoint named name.
func (t *Tx) SavePoint(name string) error {
	if err := t.db.SavePoint(name).Error; err != nil {
		return err
	}
	t.st.mu.Lock()
	t.st.marks[name] = len(t.st.pending)
	t.st.mu.Unlock()
	return nil
}

// RollbackTo rolls back to the savepoint name and drops the invalidations
// queued since it was set.
func (t *Tx) RollbackTo(name string) error {
	t.st.mu.Lock()
	mark, ok := t.st.marks[name]
	t.st.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: no savepoint %q", ErrInvalidArgument, name)
	}
	if err := t.db.RollbackTo(name).Error; err != nil {
		return err
	}
	t.st.truncate(mark)
	return nil
}
