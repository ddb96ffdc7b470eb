package torture

import (
	"context"
	"errors"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/repository"
)

// The plain-GORM writers (Config.GormWriters) are code that writes the
// torture table with GORM itself, on the instance's *gorm.DB with the
// gormcache plugin installed, beside the repository's readers, writers and
// transactions on the same rows. They read a row through the repository (a
// recorded read), write it in one of the styles below, and read it back.
//
// Every write locks optimistically in user code: WHERE version = old, with
// the version in the SET clause (old+1, or "version + 1"), so it orders
// with the repository's writes (one total order of versions per row, which
// the checker relies on) and zero rows affected is a conflict. A version in
// the SET is also what makes the plugin's own optimistic locking (for
// models with a repository.Version column, as Row) leave the statement as
// it is, so the worker's writes mean the same with or without it. After
// COMMIT the plugin invalidates the row's key (a raw statement: the whole
// namespace). Each write is recorded as the repository's writers record
// theirs (KindWrite at the version it committed, with its call and return
// times, Degraded or Unconfirmed as they set them; KindRollback for what a
// transaction undid), with Op.Plain naming its style.

// Plain-GORM write styles (Op.Plain).
const (
	// PlainUpdates: db.Model(&row).Where("version = ?", v).Updates(map{...,
	// "version": v+1}) in GORM's default transaction.
	PlainUpdates = "updates"
	// PlainPrepared: the same in a PrepareStmt session, with "version":
	// gorm.Expr("version + 1"), a third of the time inside a
	// db.Transaction of the session.
	PlainPrepared = "prepared"
	// PlainTx: the first write of a db.Transaction, which then runs a
	// nested transaction (a savepoint) and sometimes rolls back whole.
	PlainTx = "tx"
	// PlainNested: the nested transaction's write, of the same row or the
	// next one; it rolls back to its savepoint 40% of the time, the outer
	// transaction going on to commit.
	PlainNested = "nested"
	// PlainExec: db.Exec("UPDATE <table> SET token = ?, note = ?, version
	// = version + 1 WHERE id = ? AND version = ?"), a third of the time in
	// a db.Transaction; the plugin cannot know the rows of raw SQL, so it
	// retires the namespace (an epoch bump: every instance's L1 and every
	// Redis entry). Paced by Config.GormExecEvery, off when it is zero;
	// the default and long runs mix it in unless -torture.plainexec=false.
	// It found two races of cache.RetireAll, the only invalidation of a
	// raw write, now closed (cache.TestEpochRaces and
	// invalidation.TestRetireAllWaitsForItsEvent): an epoch read answered
	// before a bump and adopted after it, an adopter returning before L1
	// was flushed, and an epoch event not awaited before the write
	// returned.
	PlainExec = "exec"
)

// PlainStyles lists the styles, in the order summaries print them.
var PlainStyles = []string{PlainUpdates, PlainPrepared, PlainTx, PlainNested, PlainExec}

var errPlainConflict = errors.New("torture: no row at the version read (optimistic lock)")

// gormWriter is the plain-GORM writers' loop.
func (w *worker) gormWriter() {
	ps := w.in.db.Session(&gorm.Session{PrepareStmt: true})
	// Raw statements retire the namespace on every instance (a cold cache
	// everywhere): they are paced by time, not drawn per write, so that the
	// cache stays warm most of the run whatever the write rate.
	every := w.in.cfg.GormExecEvery
	nextExec := time.Now().Add(w.jitter(every))
	for !w.stopped() {
		w.burst()
		if w.stopped() {
			return
		}
		id := w.key()
		next := id
		if r, ok := w.read(id); ok {
			switch x := w.rng.Float64(); {
			case every > 0 && time.Now().After(nextExec):
				nextExec = time.Now().Add(w.jitter(every))
				w.plainExec(r)
			case x < 0.35:
				if w.plainUpdate(w.in.db, PlainUpdates, r) && w.rng.Float64() < w.in.cfg.ChainProb {
					w.plainUpdate(w.in.db, PlainUpdates, r) // from the struct the first one left
				}
			case x < 0.65:
				if w.plainUpdate(ps, PlainPrepared, r) && w.rng.Float64() < w.in.cfg.ChainProb {
					w.plainUpdate(ps, PlainPrepared, r)
				}
			default:
				next = w.plainTx(r)
			}
		}
		w.read(id)
		if next != id {
			w.read(next)
		}
		w.pause(w.jitter(w.in.cfg.WritePause))
	}
}

// plainNote is the note a plain-GORM write stores with its token.
func plainNote(tok int64) string { return "g" + strconv.FormatInt(tok, 36) }

// plainUpdate writes r with db.Model(r).Where("version = ?", old).Updates
// (PlainUpdates or, on a PrepareStmt session, PlainPrepared), records it,
// and on success leaves r at the version it committed.
func (w *worker) plainUpdate(db *gorm.DB, style string, r *Row) bool {
	in := w.in
	in.gate.RLock()
	defer in.gate.RUnlock()
	ctx := context.Background()
	old := uint64(r.Version)
	tok := w.token()
	op := Op{Inst: in.cfg.Inst, Key: r.ID, Kind: KindWrite, Token: tok, Ver: old + 1, Plain: style}
	set := map[string]any{"token": tok, "note": plainNote(tok), "version": old + 1}
	inTx := false
	if style == PlainPrepared {
		set["version"] = gorm.Expr("version + 1") // old+1: the row is at old
		inTx = w.rng.IntN(3) == 0
	}
	model := *r // GORM assigns the SET values to the model
	pb := w.pendingBumps()
	op.Call = time.Now().UnixNano()
	if inTx {
		var fnDone, conflict bool
		err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			res := tx.Model(&model).Where("version = ?", old).Updates(set)
			switch {
			case res.Error != nil:
				return res.Error
			case res.RowsAffected == 0:
				conflict = true
				return errPlainConflict
			}
			fnDone = true
			return nil
		})
		op.Ret = time.Now().UnixNano()
		if conflict {
			op.Status, op.Err = StatusConflict, err.Error()
		} else {
			w.txOutcome(&op, err, fnDone, pb)
		}
	} else {
		res := db.WithContext(ctx).Model(&model).Where("version = ?", old).Updates(set)
		op.Ret = time.Now().UnixNano()
		w.stmtOutcome(&op, res.Error, res.RowsAffected, pb)
	}
	in.log.Record(op)
	if op.Kind != KindWrite || op.Status != StatusOK {
		return false
	}
	r.Version, r.Token, r.Note = repository.Version(old+1), tok, plainNote(tok)
	return true
}

// plainExec writes r with a raw UPDATE (PlainExec) and records it.
func (w *worker) plainExec(r *Row) {
	in := w.in
	in.gate.RLock()
	defer in.gate.RUnlock()
	ctx := context.Background()
	old := uint64(r.Version)
	tok := w.token()
	op := Op{Inst: in.cfg.Inst, Key: r.ID, Kind: KindWrite, Token: tok, Ver: old + 1, Plain: PlainExec}
	sql := "UPDATE " + in.rowTable + " SET token = ?, note = ?, version = version + 1 WHERE id = ? AND version = ?"
	args := []any{tok, plainNote(tok), r.ID, old}
	pb := w.pendingBumps()
	op.Call = time.Now().UnixNano()
	if w.rng.IntN(3) == 0 {
		var fnDone, conflict bool
		err := in.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			res := tx.Exec(sql, args...)
			switch {
			case res.Error != nil:
				return res.Error
			case res.RowsAffected == 0:
				conflict = true
				return errPlainConflict
			}
			fnDone = true
			return nil
		})
		op.Ret = time.Now().UnixNano()
		if conflict {
			op.Status, op.Err = StatusConflict, err.Error()
		} else {
			w.txOutcome(&op, err, fnDone, pb)
		}
	} else {
		res := in.db.WithContext(ctx).Exec(sql, args...) // no transaction: it commits by itself
		op.Ret = time.Now().UnixNano()
		w.stmtOutcome(&op, res.Error, res.RowsAffected, pb)
	}
	in.log.Record(op)
}

// plainTx runs a db.Transaction that updates r (PlainTx), then, in a
// nested transaction, reads and updates the same row or the next one
// (PlainNested) and rolls back to its savepoint 40% of the time; the outer
// transaction rolls back whole 10% of the time. Rows are locked in
// ascending order, so these transactions cannot deadlock one another. It
// records both writes and returns the nested one's row.
func (w *worker) plainTx(r *Row) int64 {
	in := w.in
	in.gate.RLock()
	defer in.gate.RUnlock()
	ctx := context.Background()
	id, id2 := r.ID, r.ID
	if w.rng.IntN(2) == 0 && id < int64(in.cfg.Rows) {
		id2 = id + 1
	}
	rollbackNested, rollbackOuter := w.rng.Float64() < 0.4, w.rng.Float64() < 0.1
	old := uint64(r.Version)
	tokA, tokB := w.token(), w.token()
	a := Op{Inst: in.cfg.Inst, Key: id, Kind: KindWrite, Token: tokA, Ver: old + 1, Plain: PlainTx}
	b := Op{Inst: in.cfg.Inst, Key: id2, Kind: KindWrite, Token: tokB, Plain: PlainNested}
	var aDone, aConflict, bDone, bConflict, bUndone, fnDone bool
	model := *r
	pb := w.pendingBumps()
	call := time.Now().UnixNano()
	err := in.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Model(&model).Where("version = ?", old).
			Updates(map[string]any{"token": tokA, "note": plainNote(tokA), "version": old + 1})
		switch {
		case res.Error != nil:
			return res.Error
		case res.RowsAffected == 0:
			aConflict = true
			return errPlainConflict
		}
		aDone = true
		nerr := tx.Transaction(func(tx2 *gorm.DB) error {
			var cur Row
			if err := tx2.Take(&cur, id2).Error; err != nil { // sees the outer write when id2 == id
				return err
			}
			v := uint64(cur.Version)
			b.Ver = v + 1
			res := tx2.Model(&cur).Where("version = ?", v).
				Updates(map[string]any{"token": tokB, "note": plainNote(tokB), "version": v + 1})
			switch {
			case res.Error != nil:
				return res.Error
			case res.RowsAffected == 0:
				bConflict = true
				return errPlainConflict
			}
			bDone = true
			if rollbackNested {
				return errRollback
			}
			return nil
		})
		switch {
		case nerr == nil:
		case errors.Is(nerr, errRollback) || bConflict: // rolled back to the savepoint; go on
			bUndone = true
		default:
			return nerr
		}
		if rollbackOuter {
			return errRollback
		}
		fnDone = true
		return nil
	})
	ret := time.Now().UnixNano()
	a.Call, a.Ret, b.Call, b.Ret = call, ret, call, ret
	switch {
	case aConflict:
		a.Status, a.Err = StatusConflict, err.Error()
		in.log.Record(a)
	case aDone:
		w.txOutcome(&a, err, fnDone, pb)
		in.log.Record(a)
	}
	switch {
	case bConflict:
		b.Status, b.Err = StatusConflict, errPlainConflict.Error()
		in.log.Record(b)
	case bDone && bUndone: // never visible, whatever became of the outer transaction
		b.Kind, b.Status = KindRollback, StatusOK
		in.log.Record(b)
	case bDone:
		w.txOutcome(&b, err, fnDone, pb)
		in.log.Record(b)
	}
	return id2
}

// stmtOutcome sets the outcome of one plain-GORM statement run outside an
// explicit transaction (in GORM's default transaction, or committing by
// itself for raw SQL) that updates one row under optimistic locking.
func (w *worker) stmtOutcome(op *Op, err error, rows int64, pb uint64) {
	switch {
	case err == nil && rows > 0:
		op.Status, op.Degraded = StatusOK, w.pendingBumps() != pb
	case err == nil:
		op.Status, op.Err = StatusConflict, errPlainConflict.Error()
	case rows > 0 && errors.Is(err, cache.ErrInvalidationUnconfirmed):
		// Committed (the plugin reports an invalidation error only for a
		// statement that changed rows and whose COMMIT succeeded); Redis
		// did not confirm the invalidation in time. A statement that failed
		// reports no rows, even if the plugin then retired the namespace.
		op.Status, op.Err, op.Unconfirmed, op.Degraded = StatusOK, err.Error(), true, true
	default: // possibly committed (a COMMIT or a reply lost)
		op.Status, op.Err = StatusError, err.Error()
	}
}

// txOutcome sets the outcome of a write in an explicit transaction: fnDone
// says the transaction's function returned nil, so err, if any, came from
// COMMIT or from the invalidations after it.
func (w *worker) txOutcome(op *Op, err error, fnDone bool, pb uint64) {
	switch {
	case err == nil:
		op.Status, op.Degraded = StatusOK, w.pendingBumps() != pb
	case fnDone && errors.Is(err, cache.ErrInvalidationUnconfirmed): // committed
		op.Status, op.Err, op.Unconfirmed, op.Degraded = StatusOK, err.Error(), true, true
	case fnDone: // COMMIT failed: outcome unknown
		op.Status, op.Err = StatusError, err.Error()
	default: // rolled back, on purpose or not: never visible
		op.Kind, op.Status = KindRollback, StatusOK
		if !errors.Is(err, errRollback) {
			op.Status, op.Err = StatusError, err.Error()
		}
	}
}
