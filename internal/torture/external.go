package torture

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// The external writer is another program writing the torture table: plain
// SQL on a database/sql connection of its own (the pgx driver), with no
// GORM, no plugin and no cache, so the library never sees its writes. Only
// the change feed (changefeed.Relay, run by the instances) makes them
// visible, and the checker bounds them by B_check plus the feed's bound.
//
// It writes the hot rows beside the instances (UPDATEs that raise the
// version as the schema demands: under optimistic locking in user code,
// or blind with RETURNING; several rows in one transaction) and the
// external rows (Config.ExternalRows), which only it writes: blind UPDATEs,
// DELETEs and re-INSERTs. A DELETE is recorded at the deleted version plus
// one and the INSERT that follows at the version after it (Op.Deleted), so
// each row's versions stay one total order. Every write runs in an explicit
// transaction, a tenth of them rolled back (a third of the multi-row ones);
// a write is acknowledged when COMMIT returns, recorded as the instances
// record theirs (Op.External names its style), with ExternalInst.

// External write styles (Op.External).
const (
	// ExternalUpdate: SELECT version, then UPDATE ... SET token, note,
	// version = old+1 WHERE id AND version = old (zero rows: a conflict).
	ExternalUpdate = "update"
	// ExternalBlind: UPDATE ... SET token, note = 'b…' || the old note's
	// first characters, version = version + 1 WHERE id RETURNING version:
	// no read first, other columns computed from the row.
	ExternalBlind = "blind"
	// ExternalMulti: two to four hot rows, each a blind update, in one
	// transaction (ascending ids: no deadlock between such transactions).
	ExternalMulti = "multi"
	// ExternalDelete: DELETE ... WHERE id RETURNING version, of an external
	// row.
	ExternalDelete = "delete"
	// ExternalInsert: INSERT of a deleted external row, at the version after
	// its delete's.
	ExternalInsert = "insert"
)

// ExternalStyles lists the styles, in the order summaries print them.
var ExternalStyles = []string{ExternalUpdate, ExternalBlind, ExternalMulti, ExternalDelete, ExternalInsert}

// ExternalInst is the instance number of the external writer's operations
// (instances count from 1, so no read is ever its own).
const ExternalInst = 0

// externalTokens is the external writer's token space, above every
// instance's (Inst<<40).
const externalTokens = int64(1) << 62

// ExternalWriter writes the torture table around the library; see above.
type ExternalWriter struct {
	db             *sql.DB
	table          string // quoted
	log            *Log
	hot            int   // hot rows 1..hot
	extBase        int64 // external rows extBase+1 ... extBase+extRows
	extRows        int
	tokens         atomic.Int64
	rowMu          []sync.Mutex     // per external row
	deleted        map[int64]uint64 // external row → its delete's version (0: present); under rowMu
	deletedMu      sync.Mutex
	wg             sync.WaitGroup
	stop           chan struct{}
	seed           uint64
	rollbackChance float64
}

// NewExternalWriter opens its own connection pool on dsn and records to
// log. table is the quoted table name; hot the hot rows; extBase and
// extRows the rows only it writes.
func NewExternalWriter(dsn, table string, log *Log, hot int, extBase int64, extRows int, seed uint64) (*ExternalWriter, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	return &ExternalWriter{db: db, table: table, log: log, hot: max(hot, 1), extBase: extBase, extRows: extRows,
		rowMu: make([]sync.Mutex, extRows), deleted: map[int64]uint64{}, seed: seed, rollbackChance: 0.1}, nil
}

// Start runs n writer goroutines until Stop.
func (x *ExternalWriter) Start(n int) {
	if x.stop != nil {
		return
	}
	x.stop = make(chan struct{})
	for i := range n {
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			x.loop(rand.New(rand.NewPCG(x.seed, uint64(time.Now().UnixNano())+uint64(i))))
		}()
	}
}

// Stop stops the goroutines, waits for them and flushes the log.
func (x *ExternalWriter) Stop() {
	if x.stop != nil {
		close(x.stop)
		x.wg.Wait()
		x.stop = nil
	}
	x.log.Flush()
}

// Close stops and closes the connection pool.
func (x *ExternalWriter) Close() error {
	x.Stop()
	return x.db.Close()
}

func (x *ExternalWriter) loop(rng *rand.Rand) {
	for {
		select {
		case <-x.stop:
			return
		default:
		}
		switch f := rng.Float64(); {
		case x.extRows > 0 && f < 0.35:
			x.external(rng, x.extBase+1+rng.Int64N(int64(x.extRows)))
		case f < 0.6:
			x.update(rng, x.hotKey(rng))
		case f < 0.8:
			x.blind(rng, ExternalBlind, []int64{x.hotKey(rng)})
		default:
			ids := map[int64]bool{}
			for range 2 + rng.IntN(3) {
				ids[x.hotKey(rng)] = true
			}
			sorted := make([]int64, 0, len(ids))
			for id := range ids {
				sorted = append(sorted, id)
			}
			sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
			x.blind(rng, ExternalMulti, sorted)
		}
		time.Sleep(time.Duration(1+rng.IntN(4)) * time.Millisecond)
	}
}

// hotKey draws a hot row, the low ids (the instances' hottest) more often.
func (x *ExternalWriter) hotKey(rng *rand.Rand) int64 {
	f := rng.Float64()
	return 1 + int64(f*f*float64(x.hot))
}

func (x *ExternalWriter) token() int64 { return externalTokens | x.tokens.Add(1) }

func (x *ExternalWriter) newOp(style string, id, tok int64) Op {
	return Op{Inst: ExternalInst, Key: id, Kind: KindWrite, Token: tok, External: style}
}

// finish ends tx (committing unless rollback) and records ops with the
// outcome; ops are the statements that wrote a row.
func (x *ExternalWriter) finish(tx *sql.Tx, ops []Op, call int64, rollback bool, err error) {
	var outcome func(*Op)
	switch {
	case err != nil: // a statement failed: the transaction is undone
		tx.Rollback()
		outcome = func(o *Op) { o.Kind, o.Status, o.Err = KindRollback, StatusError, err.Error() }
	case rollback:
		tx.Rollback()
		outcome = func(o *Op) { o.Kind, o.Status = KindRollback, StatusOK }
	default:
		if cerr := tx.Commit(); cerr != nil {
			outcome = func(o *Op) { o.Status, o.Err = StatusError, cerr.Error() } // outcome unknown
		} else {
			outcome = func(o *Op) { o.Status = StatusOK }
		}
	}
	ret := time.Now().UnixNano()
	for i := range ops {
		ops[i].Call, ops[i].Ret = call, ret
		outcome(&ops[i])
		x.log.Record(ops[i])
	}
}

// update is ExternalUpdate of row id.
func (x *ExternalWriter) update(rng *rand.Rand, id int64) {
	ctx := context.Background()
	call := time.Now().UnixNano()
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return
	}
	var old uint64
	if err := tx.QueryRowContext(ctx, "SELECT version FROM "+x.table+" WHERE id = $1", id).Scan(&old); err != nil {
		tx.Rollback()
		return
	}
	tok := x.token()
	op := x.newOp(ExternalUpdate, id, tok)
	op.Ver = old + 1
	res, err := tx.ExecContext(ctx, "UPDATE "+x.table+" SET token = $1, note = $2, version = $3 WHERE id = $4 AND version = $5",
		tok, "e"+strconv.FormatInt(tok, 36), old+1, id, old)
	if err != nil {
		tx.Rollback()
		return
	}
	if n, _ := res.RowsAffected(); n == 0 {
		tx.Rollback()
		op.Call, op.Ret, op.Status = call, time.Now().UnixNano(), StatusConflict
		x.log.Record(op)
		return
	}
	x.finish(tx, []Op{op}, call, rng.Float64() < x.rollbackChance, nil)
}

// blind is ExternalBlind (one row) or ExternalMulti (several, ascending)
// of ids, each with its own token.
func (x *ExternalWriter) blind(rng *rand.Rand, style string, ids []int64) {
	ctx := context.Background()
	call := time.Now().UnixNano()
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return
	}
	var ops []Op
	var serr error
	for _, id := range ids {
		tok := x.token()
		op := x.newOp(style, id, tok)
		err := tx.QueryRowContext(ctx, "UPDATE "+x.table+" SET token = $1, note = 'b' || left(note, 8), version = version + 1 WHERE id = $2 RETURNING version",
			tok, id).Scan(&op.Ver)
		if errors.Is(err, sql.ErrNoRows) {
			continue // deleted
		}
		if err != nil {
			serr = err
			break
		}
		ops = append(ops, op)
	}
	if len(ops) == 0 {
		tx.Rollback()
		return
	}
	chance := x.rollbackChance
	if style == ExternalMulti {
		chance = 0.3
	}
	x.finish(tx, ops, call, rng.Float64() < chance, serr)
}

// external writes external row id: an INSERT if it is deleted, else a
// DELETE (30%) or a blind update, under the row's lock.
func (x *ExternalWriter) external(rng *rand.Rand, id int64) {
	mu := &x.rowMu[id-x.extBase-1]
	mu.Lock()
	defer mu.Unlock()
	x.deletedMu.Lock()
	delVer := x.deleted[id]
	x.deletedMu.Unlock()
	switch {
	case delVer > 0:
		x.insert(rng, id, delVer+1)
	case rng.Float64() < 0.3:
		x.delete(rng, id)
	default:
		x.blind(rng, ExternalBlind, []int64{id})
	}
}

func (x *ExternalWriter) setDeleted(id int64, v uint64) {
	x.deletedMu.Lock()
	x.deleted[id] = v
	x.deletedMu.Unlock()
}

func (x *ExternalWriter) delete(rng *rand.Rand, id int64) {
	ctx := context.Background()
	call := time.Now().UnixNano()
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return
	}
	op := x.newOp(ExternalDelete, id, x.token())
	op.Deleted = true
	var v uint64
	if err := tx.QueryRowContext(ctx, "DELETE FROM "+x.table+" WHERE id = $1 RETURNING version", id).Scan(&v); err != nil {
		tx.Rollback()
		return
	}
	op.Ver = v + 1
	rollback := rng.Float64() < x.rollbackChance
	x.finish(tx, []Op{op}, call, rollback, nil)
	if !rollback {
		// Committed or unknown: the next write of the row is an INSERT
		// (which fails harmlessly if the delete did not commit).
		x.setDeleted(id, op.Ver)
	}
}

func (x *ExternalWriter) insert(rng *rand.Rand, id int64, ver uint64) {
	ctx := context.Background()
	call := time.Now().UnixNano()
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return
	}
	tok := x.token()
	op := x.newOp(ExternalInsert, id, tok)
	op.Ver = ver
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+x.table+" (id, token, note, version) VALUES ($1, $2, $3, $4)",
		id, tok, "n"+strconv.FormatInt(tok, 36), ver); err != nil {
		tx.Rollback()
		x.setDeleted(id, 0) // the row is there after all: update it next time
		return
	}
	rollback := rng.Float64() < x.rollbackChance
	x.finish(tx, []Op{op}, call, rollback, nil)
	if !rollback {
		x.setDeleted(id, 0)
	}
}
