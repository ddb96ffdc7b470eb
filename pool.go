package gormcache

import (
	"context"
	"database/sql"
	"strings"
	"sync"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/failpoint"
)

// trackedPool wraps the connection pool GORM was opened with. Statements run
// on the inner pool unchanged; BeginTx returns a trackedTx, which holds the
// invalidations of the transaction's writes until its COMMIT returns.
type trackedPool struct {
	inner gorm.ConnPool
	p     *Plugin
}

var (
	_ gorm.ConnPool         = (*trackedPool)(nil)
	_ gorm.ConnPoolBeginner = (*trackedPool)(nil)
	_ gorm.GetDBConnector   = (*trackedPool)(nil)
	_ gorm.Tx               = (*trackedTx)(nil)
	_ gorm.GetDBConnector   = (*trackedTx)(nil)
)

func (t *trackedPool) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return t.inner.PrepareContext(ctx, query)
}

func (t *trackedPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.inner.ExecContext(ctx, query, args...)
}

func (t *trackedPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.inner.QueryContext(ctx, query, args...)
}

func (t *trackedPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.inner.QueryRowContext(ctx, query, args...)
}

// BeginTx begins a transaction on the inner pool and tracks it.
func (t *trackedPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	var (
		tx  gorm.ConnPool
		err error
	)
	switch b := t.inner.(type) {
	case gorm.TxBeginner:
		tx, err = b.BeginTx(ctx, opts)
	case gorm.ConnPoolBeginner:
		tx, err = b.BeginTx(ctx, opts)
	default:
		return nil, gorm.ErrInvalidTransaction
	}
	if err != nil {
		return nil, err
	}
	inner, ok := tx.(gorm.Tx)
	if !ok {
		_ = rollback(tx)
		return nil, gorm.ErrInvalidTransaction
	}
	return &trackedTx{inner: inner, pool: t, marks: map[string]int{}}, nil
}

func rollback(tx gorm.ConnPool) error {
	if c, ok := tx.(gorm.TxCommitter); ok {
		return c.Rollback()
	}
	return nil
}

// GetDBConn returns the *sql.DB under the pool, so that db.DB() works.
func (t *trackedPool) GetDBConn() (*sql.DB, error) { return sqlDBOf(t.inner) }

// Ping pings the inner pool (GORM pings the pool it is opened with).
func (t *trackedPool) Ping() error {
	if p, ok := t.inner.(interface{ Ping() error }); ok {
		return p.Ping()
	}
	return nil
}

func sqlDBOf(p gorm.ConnPool) (*sql.DB, error) {
	switch x := p.(type) {
	case *sql.DB:
		return x, nil
	case gorm.GetDBConnector:
		return x.GetDBConn()
	}
	return nil, gorm.ErrInvalidDB
}

// trackedTx is a transaction begun through a trackedPool. The plugin's
// callbacks queue the invalidations of its writes here; Commit applies them
// once the inner COMMIT has returned, Rollback drops them, and a ROLLBACK TO
// SAVEPOINT drops those queued since the savepoint.
type trackedTx struct {
	inner gorm.Tx
	pool  *trackedPool

	mu      sync.Mutex // guards the fields below
	pending []pendingInv
	retire  map[*cache.Cache]bool // caches to retire whole (keys unknown)
	marks   map[string]int        // savepoint → len(pending) when it was set
	written bool                  // a write ran: reads must not fill shared tiers
	strict  bool                  // a write of a strict model ran
}

type pendingInv struct {
	c   *cache.Cache
	inv cache.Invalidation
}

func (t *trackedTx) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return t.inner.PrepareContext(ctx, query)
}

// ExecContext runs query in the transaction. Savepoints are recorded here:
// GORM's SavePoint and RollbackTo (and its nested Transaction) execute
// "SAVEPOINT x" and "ROLLBACK TO SAVEPOINT x" on the transaction itself,
// with prepared statements or without.
func (t *trackedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := t.inner.ExecContext(ctx, query, args...)
	if err == nil {
		t.savepoint(query)
	}
	return res, err
}

func (t *trackedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.inner.QueryContext(ctx, query, args...)
}

func (t *trackedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.inner.QueryRowContext(ctx, query, args...)
}

// StmtContext binds a prepared statement to the transaction (GORM's
// PrepareStmt sessions run every statement of a transaction through it).
func (t *trackedTx) StmtContext(ctx context.Context, stmt *sql.Stmt) *sql.Stmt {
	return t.inner.StmtContext(ctx, stmt)
}

// GetDBConn returns the *sql.DB under the transaction.
func (t *trackedTx) GetDBConn() (*sql.DB, error) { return t.pool.GetDBConn() }

// Commit commits, then applies the queued invalidations. They are applied
// when COMMIT fails too: its outcome may be unknown (a lost reply), and an
// extra invalidation costs a miss where a missing one serves a stale row.
// An invalidation error is returned only if COMMIT succeeded.
func (t *trackedTx) Commit() error {
	ctx := context.Background()
	if failpoint.Disabled(failpoint.GuardAfterCommit) { // test hook: invalidate before COMMIT
		_ = t.flush(ctx)
	}
	failpoint.Hit(ctx, failpoint.BeforeCommit, "")
	err := t.inner.Commit()
	failpoint.Hit(ctx, failpoint.AfterCommitBeforeInvalidate, "")
	ierr := t.flush(ctx)
	if err == nil {
		err = ierr
	}
	return err
}

// Rollback rolls back and drops the queued invalidations.
func (t *trackedTx) Rollback() error {
	t.mu.Lock()
	t.pending, t.retire = nil, nil
	t.mu.Unlock()
	return t.inner.Rollback()
}

// savepoint records SAVEPOINT marks and drops what a ROLLBACK TO SAVEPOINT
// undid. A retirement is kept across a rollback to a savepoint (it is never
// wrong to retire more).
func (t *trackedTx) savepoint(query string) {
	name, rollback, ok := parseSavepoint(query)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !rollback {
		t.marks[name] = len(t.pending)
		return
	}
	if n, ok := t.marks[name]; ok && n < len(t.pending) {
		t.pending = t.pending[:n]
	}
}

// parseSavepoint recognises "SAVEPOINT name" and "ROLLBACK TO [SAVEPOINT]
// name".
func parseSavepoint(q string) (name string, rollback, ok bool) {
	f := strings.Fields(q)
	switch {
	case len(f) == 2 && strings.EqualFold(f[0], "SAVEPOINT"):
		return unquote(f[1]), false, true
	case len(f) == 4 && strings.EqualFold(f[0], "ROLLBACK") && strings.EqualFold(f[1], "TO") && strings.EqualFold(f[2], "SAVEPOINT"):
		return unquote(f[3]), true, true
	case len(f) == 3 && strings.EqualFold(f[0], "ROLLBACK") && strings.EqualFold(f[1], "TO"):
		return unquote(f[2]), true, true
	}
	return "", false, false
}

func unquote(s string) string {
	return strings.TrimSuffix(strings.Trim(s, `"`+"`"), ";")
}

// flush applies the queued invalidations: per cache, a retirement if one was
// asked for, else one InvalidateMany.
func (t *trackedTx) flush(ctx context.Context) error {
	t.mu.Lock()
	pending, retire, strict := t.pending, t.retire, t.strict
	t.pending, t.retire, t.strict = nil, nil, false
	t.mu.Unlock()
	return t.pool.p.apply(ctx, pending, retire, strict)
}
