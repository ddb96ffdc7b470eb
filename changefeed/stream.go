package changefeed

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/bind"
)

// errSlotBusy: another walsender streams the slot (a predecessor whose
// connection PostgreSQL has not closed yet); wait and retry.
var errSlotBusy = errors.New("gormcache: replication slot is active for another connection")

// relation is a table as the stream described it.
type relation struct {
	id     uint32
	schema string
	name   string
	cols   []*pglogrepl.RelationMessageColumn
	pk     []int // indexes in cols of the primary-key columns; nil if unknown
	byName map[string]int
}

// session is one streaming connection, from setup to its first error.
func (r *Relay) session(ctx context.Context) error {
	sqlConn, err := pgconn.Connect(ctx, r.o.ConnString)
	if err != nil {
		return fmt.Errorf("gormcache: change feed: connect: %w", err)
	}
	defer sqlConn.Close(context.Background())
	start, err := r.setup(ctx, sqlConn)
	if err != nil {
		return err
	}
	cfg, err := pgconn.ParseConfig(r.o.ConnString)
	if err != nil {
		return err
	}
	cfg.RuntimeParams["replication"] = "database"
	repl, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("gormcache: change feed: replication connection: %w", err)
	}
	defer repl.Close(context.Background())
	if !r.lease.valid() {
		return ErrLeaseLost
	}
	err = pglogrepl.StartReplication(ctx, repl, r.o.Slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + r.o.Publication + "'"},
	})
	if err != nil {
		if pgCode(err) == "55006" {
			// Another walsender streams the slot: a predecessor whose
			// connection PostgreSQL has not seen close, or one that lost
			// its lease (it stopped acknowledging before this relay could
			// acquire it). After a lease lifetime it is ended.
			if r.busySince.IsZero() {
				r.busySince = time.Now()
			} else if time.Since(r.busySince) > r.o.LeaseTTL && r.lease.valid() {
				_, terr := query(ctx, sqlConn, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, r.o.Slot)
				r.report(fmt.Errorf("gormcache: change feed: ending the walsender that still holds slot %s (%v)", r.o.Slot, terr))
			}
			return fmt.Errorf("%w: %v", errSlotBusy, err)
		}
		if slotGone(err) {
			r.forceRecreate = true
		}
		return fmt.Errorf("gormcache: change feed: START_REPLICATION: %w", err)
	}
	r.busySince = time.Time{}
	r.logStreaming(r.Stats().Unsupported)
	s := &stream{r: r, repl: repl, sql: sqlConn, applied: start}
	return s.loop(ctx)
}

// setup (as leader) makes the publication hold the followed tables,
// reports those the feed cannot key, and makes sure the slot exists and can
// deliver (retiring every cache when it could not). It returns the slot's
// confirmed position.
func (r *Relay) setup(ctx context.Context, conn *pgconn.PgConn) (pglogrepl.LSN, error) {
	infos, err := r.catalog(ctx, conn)
	if err != nil {
		return 0, fmt.Errorf("gormcache: change feed: catalog: %w", err)
	}
	existed, note, err := ensurePublication(ctx, conn, r.o.Publication, r.o.AllTables, infos)
	if err != nil {
		return 0, fmt.Errorf("gormcache: change feed: publication %s: %w", r.o.Publication, err)
	}
	for _, t := range infos {
		if t.schema != "" {
			r.pks[t.schema+"."+t.rel] = t.pk
		}
	}
	bad := unsupported(infos)
	r.mu.Lock()
	r.st.Unsupported = bad
	r.mu.Unlock()
	for _, b := range bad {
		r.report(fmt.Errorf("%w: %s", ErrUnsupportedTable, b))
	}
	if err := r.ensureSlot(ctx, conn, existed, note == retirePending); err != nil {
		return 0, err
	}
	rows, err := query(ctx, conn, `SELECT COALESCE(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = $1`, r.o.Slot)
	if err != nil {
		return 0, err
	}
	if len(rows) == 0 {
		return 0, fmt.Errorf("gormcache: change feed: slot %s vanished", r.o.Slot)
	}
	return pglogrepl.ParseLSN(rows[0][0])
}

// retirePending is the publication's comment while a retirement for a lost
// slot is owed.
const retirePending = "gormcache relay: retirement pending (the slot was lost)"

// ensureSlot creates the slot if missing and recreates it if invalidated.
// A slot missing beside a publication that existed before (the relay
// creates both; PostgreSQL keeps the publication through what loses a
// slot: invalidation, a failover before PostgreSQL 17, a manual drop) lost
// changes: every cache is retired after the new slot exists, so that
// whatever committed in between is covered. The publication's comment says
// a retirement is owed until it succeeded, so a crash in between retires at
// the next start. Both marks live in PostgreSQL: nothing in Redis (which
// may lose keys) decides it.
func (r *Relay) ensureSlot(ctx context.Context, conn *pgconn.PgConn, pubExisted, owed bool) error {
	exists, walStatus, database, plugin, err := slotState(ctx, conn, r.o.Slot)
	if err != nil {
		return fmt.Errorf("gormcache: change feed: slot %s: %w", r.o.Slot, err)
	}
	if exists {
		rows, err := query(ctx, conn, `SELECT current_database()`)
		if err != nil {
			return err
		}
		if rows[0][0] != database || plugin != "pgoutput" {
			return fmt.Errorf("%w: slot %s is a %q slot of database %q, not a pgoutput slot of %q", ErrInvalidOption, r.o.Slot, plugin, database, rows[0][0])
		}
	}
	lost := owed
	if exists && (walStatus == "lost" || r.forceRecreate) {
		if err := notePublication(ctx, conn, r.o.Publication, retirePending); err != nil {
			return err
		}
		if _, err := query(ctx, conn, `SELECT pg_drop_replication_slot($1)`, r.o.Slot); err != nil {
			return fmt.Errorf("gormcache: change feed: drop invalidated slot %s: %w", r.o.Slot, err)
		}
		exists, lost = false, true
	}
	if !exists {
		if pubExisted && !lost {
			lost = true
			if err := notePublication(ctx, conn, r.o.Publication, retirePending); err != nil {
				return err
			}
		}
		if _, err := query(ctx, conn, `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`, r.o.Slot); err != nil {
			return fmt.Errorf("gormcache: change feed: create slot %s: %w", r.o.Slot, err)
		}
	}
	r.forceRecreate = false
	if !lost {
		return nil
	}
	for _, c := range r.allCaches() {
		if err := c.RetireAll(ctx); err != nil {
			return fmt.Errorf("gormcache: change feed: retiring after the slot was lost: %w", err)
		}
	}
	if err := notePublication(ctx, conn, r.o.Publication, ""); err != nil {
		return err
	}
	r.mu.Lock()
	r.st.SlotLost++
	r.mu.Unlock()
	r.report(fmt.Errorf("%w: slot %s was missing or invalidated; every cache was retired and the slot recreated", ErrSlotLost, r.o.Slot))
	r.o.Logger.Warn("gormcache: change feed slot was missing or invalidated; every cache retired, slot recreated", "slot", r.o.Slot)
	return nil
}

// allCaches is Options.Cache, the described tables' and the registered
// ones.
func (r *Relay) allCaches() []*cache.Cache {
	var out []*cache.Cache
	if r.reg != nil {
		out = r.reg.Caches(r.o.Cache)
	} else {
		out = []*cache.Cache{r.o.Cache}
	}
	for _, t := range r.describe {
		found := false
		for _, c := range out {
			found = found || c == t.Cache
		}
		if !found {
			out = append(out, t.Cache)
		}
	}
	return out
}

// stream is one session's receive loop.
type stream struct {
	r       *Relay
	repl    *pgconn.PgConn
	sql     *pgconn.PgConn
	applied pglogrepl.LSN // end of the last applied transaction (or idle WAL end)
	acked   pglogrepl.LSN
	lastAck time.Time
	tx      *txn // the transaction being received
	// batch holds committed transactions received back to back, applied
	// together when the stream pauses (batchIdle), when the oldest has
	// waited batchAge, at maxBatch transactions or MaxTxnKeys keys, and
	// before any acknowledgement.
	batch      *txn
	batchSince time.Time
}

const (
	batchIdle = time.Millisecond
	batchAge  = 5 * time.Millisecond
	maxBatch  = 256
)

// ackEvery is the shortest interval between acknowledgements of commits:
// under load one status update covers many transactions.
const ackEvery = 10 * time.Millisecond

func (s *stream) loop(ctx context.Context) error {
	r := s.r
	nextStatus := time.Now()
	nextPoll := time.Now()
	reply := false
	for {
		if !r.lease.valid() {
			return ErrLeaseLost // before acknowledging anything more
		}
		now := time.Now()
		if reply || !now.Before(nextStatus) {
			if err := s.ack(ctx); err != nil {
				return err
			}
			nextStatus = now.Add(r.o.StandbyInterval)
			reply = false
		}
		if !now.Before(nextPoll) {
			if err := s.poll(ctx); err != nil {
				return err
			}
			nextPoll = now.Add(r.o.PollInterval)
		}
		if s.batch != nil && !now.Before(s.batchSince.Add(batchAge)) {
			if err := s.flush(ctx); err != nil {
				return err
			}
		}
		wait := now.Add(r.o.LeaseTTL / 10)
		if s.batch != nil {
			wait = now.Add(batchIdle)
		}
		for _, t := range []time.Time{nextStatus, nextPoll} {
			if t.Before(wait) {
				wait = t
			}
		}
		rctx, cancel := context.WithDeadline(ctx, wait)
		raw, err := s.repl.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				if err := s.flush(ctx); err != nil { // nothing more arrived: apply what came
					return err
				}
				continue
			}
			if slotGone(err) {
				r.forceRecreate = true
			}
			return fmt.Errorf("gormcache: change feed: receive: %w", err)
		}
		switch m := raw.(type) {
		case *pgproto3.ErrorResponse:
			err := pgconn.ErrorResponseToPgError(m)
			if slotGone(err) {
				r.forceRecreate = true
			}
			return fmt.Errorf("gormcache: change feed: %w", err)
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return err
				}
				// Idle, with everything received applied: the WAL up to
				// the server's end holds nothing more for this slot.
				if s.tx == nil {
					if err := s.flush(ctx); err != nil {
						return err
					}
					s.applied = max(s.applied, pkm.ServerWALEnd)
					r.mu.Lock()
					r.caughtUp = true
					r.mu.Unlock()
				}
				reply = reply || pkm.ReplyRequested
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return err
				}
				committed, err := s.handle(ctx, xld.WALData)
				if err != nil {
					return err
				}
				if committed { // acknowledge soon (the next loop checks the lease first)
					if soon := s.lastAck.Add(ackEvery); soon.Before(nextStatus) {
						nextStatus = soon
					}
				}
			}
		}
	}
}

// ack applies the batch, then reports the applied position.
func (s *stream) ack(ctx context.Context) error {
	if err := s.flush(ctx); err != nil {
		return err
	}
	return s.status(ctx)
}

// status reports the applied position to PostgreSQL (as written, flushed
// and applied), which lets the slot's confirmed_flush_lsn advance to it.
func (s *stream) status(ctx context.Context) error {
	if s.applied == 0 {
		return nil
	}
	if !s.r.lease.valid() {
		return ErrLeaseLost
	}
	// Between transactions, ask for a keepalive: it says whether the
	// stream holds more (Stats.Lag).
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.repl, pglogrepl.StandbyStatusUpdate{WALWritePosition: s.applied, ReplyRequested: s.tx == nil && s.batch == nil})
	s.lastAck = time.Now()
	if err != nil {
		return fmt.Errorf("gormcache: change feed: standby status: %w", err)
	}
	if s.applied > s.acked {
		s.acked = s.applied
		s.r.mu.Lock()
		s.r.st.AckedLSN = max(s.r.st.AckedLSN, s.applied)
		s.r.mu.Unlock()
	}
	return nil
}

// poll reads the slot's retained WAL, and notices an invalidated or dropped
// slot.
func (s *stream) poll(ctx context.Context) error {
	rows, err := query(ctx, s.sql, `SELECT COALESCE((pg_current_wal_lsn() - restart_lsn)::int8, 0)::text, COALESCE(wal_status, '')
		FROM pg_replication_slots WHERE slot_name = $1`, s.r.o.Slot)
	if err != nil {
		return fmt.Errorf("gormcache: change feed: poll slot: %w", err)
	}
	if len(rows) == 0 {
		return fmt.Errorf("gormcache: change feed: slot %s was dropped", s.r.o.Slot)
	}
	if rows[0][1] == "lost" {
		s.r.forceRecreate = true
		return fmt.Errorf("gormcache: change feed: slot %s was invalidated (wal_status lost)", s.r.o.Slot)
	}
	n, _ := strconv.ParseInt(rows[0][0], 10, 64)
	s.r.mu.Lock()
	s.r.st.RetainedWALBytes = n
	s.r.mu.Unlock()
	return nil
}

// handle decodes one pgoutput message; committed reports a transaction
// whose invalidations were applied.
func (s *stream) handle(ctx context.Context, data []byte) (committed bool, err error) {
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return false, fmt.Errorf("gormcache: change feed: decode: %w", err)
	}
	r := s.r
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		s.tx = newTxn(r.o.MaxTxnKeys)
		r.mu.Lock()
		r.caughtUp = false
		r.mu.Unlock()
		for c := range r.pendingRetire {
			s.tx.retireCache(c)
		}
		r.pendingRetire = nil
	case *pglogrepl.RelationMessage:
		s.relation(ctx, m)
	case *pglogrepl.InsertMessage:
		s.row(m.RelationID, nil, m.Tuple)
	case *pglogrepl.UpdateMessage:
		s.row(m.RelationID, m.OldTuple, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		s.row(m.RelationID, m.OldTuple, nil)
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			if rel := r.rels[id]; rel != nil {
				for _, b := range r.bindings(rel) {
					s.retire(b.c)
				}
			}
		}
	case *pglogrepl.CommitMessage:
		t := s.tx
		if t == nil {
			return false, nil
		}
		s.tx = nil
		t.end, t.commit, t.txns = m.TransactionEndLSN, m.CommitTime, 1
		if s.batch != nil && s.batch.keys()+t.keys() > r.o.MaxTxnKeys {
			if err := s.flush(ctx); err != nil {
				return false, err
			}
		}
		if s.batch == nil {
			s.batch, s.batchSince = t, time.Now()
		} else {
			s.batch.merge(t)
		}
		if s.batch.txns >= maxBatch {
			if err := s.flush(ctx); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	return false, nil
}

// flush applies the batch of committed transactions (one InvalidateMany
// per cache for all of them) and moves the applied position past them.
func (s *stream) flush(ctx context.Context) error {
	b := s.batch
	if b == nil {
		return nil
	}
	if err := s.apply(ctx, b); err != nil {
		return err
	}
	s.batch = nil
	s.applied = max(s.applied, b.end)
	r := s.r
	r.mu.Lock()
	r.st.AppliedTxns += uint64(b.txns)
	r.st.AppliedRows += uint64(b.rows)
	r.st.LastCommit = b.commit
	r.st.Retired += uint64(len(b.retire))
	r.mu.Unlock()
	return nil
}

// retire retires c with the current transaction (or the next).
func (s *stream) retire(c *cache.Cache) {
	if s.tx != nil {
		s.tx.retireCache(c)
		return
	}
	if s.r.pendingRetire == nil {
		s.r.pendingRetire = map[*cache.Cache]bool{}
	}
	s.r.pendingRetire[c] = true
}

// relation records a table's description; one that changed since the
// previous description of the same relation (a schema change) retires the
// table's caches.
func (s *stream) relation(ctx context.Context, m *pglogrepl.RelationMessage) {
	r := s.r
	prev := r.rels[m.RelationID]
	rel := &relation{id: m.RelationID, schema: m.Namespace, name: m.RelationName, cols: m.Columns, byName: map[string]int{}}
	for i, c := range m.Columns {
		rel.byName[c.Name] = i
	}
	changed := prev != nil && !sameColumns(prev, rel)
	full := m.Namespace + "." + m.RelationName
	pk, ok := r.pks[full]
	if !ok || changed {
		if t, err := lookupTable(ctx, s.sql, full); err == nil && t.schema != "" {
			pk = t.pk
			r.pks[full] = pk
		}
	}
	for _, col := range pk {
		i, ok := rel.byName[col]
		if !ok {
			rel.pk = nil
			break
		}
		rel.pk = append(rel.pk, i)
	}
	r.rels[m.RelationID] = rel
	if changed {
		for _, b := range r.bindings(rel) {
			s.retire(b.c)
		}
	}
}

func sameColumns(a, b *relation) bool {
	if a.schema != b.schema || a.name != b.name || len(a.cols) != len(b.cols) {
		return false
	}
	for i := range a.cols {
		x, y := a.cols[i], b.cols[i]
		if x.Name != y.Name || x.DataType != y.DataType || x.TypeModifier != y.TypeModifier || x.Flags != y.Flags {
			return false
		}
	}
	return true
}

// Text formats whose rendering equals bind.Format of the value GORM scans
// (integers in decimal, strings as they are).
var keyTypes = map[uint32]bool{
	20: true, 21: true, 23: true, // int8, int2, int4
	25: true, 1043: true, 1042: true, 19: true, // text, varchar, bpchar, name
	2950: true, // uuid (canonical lower-case, as uuid.UUID.String)
}

// value returns the text of column i of tup as a key part; ok is false when
// it cannot be one (NULL, unchanged TOAST, a type whose Go rendering may
// differ).
func (rel *relation) value(tup *pglogrepl.TupleData, i int) (string, bool) {
	if tup == nil || i >= len(tup.Columns) || !keyTypes[rel.cols[i].DataType] {
		return "", false
	}
	c := tup.Columns[i]
	if c.DataType != pglogrepl.TupleDataTypeText {
		return "", false
	}
	return string(c.Data), true
}

func (rel *relation) rowKey(ns string, tup *pglogrepl.TupleData) (string, bool) {
	if len(rel.pk) == 0 || tup == nil {
		return "", false
	}
	parts := make([]any, len(rel.pk))
	for j, i := range rel.pk {
		v, ok := rel.value(tup, i)
		if !ok {
			return "", false
		}
		parts[j] = v
	}
	return bind.RowKey(ns, parts...), true
}

// row adds the invalidations of one changed row, as a local write of it
// makes them: the row's key at the new tuple's version (stamped for an
// unversioned model; retired when the version is unknown or did not move,
// and for a delete of a versioned row), the old key if the key changed, the
// unique-column mappings of the new values and the table's generation.
func (s *stream) row(relID uint32, old, cur *pglogrepl.TupleData) {
	t := s.tx
	rel := s.r.rels[relID]
	if t == nil {
		return
	}
	t.rows++
	if rel == nil { // never described: cannot be keyed
		s.retire(s.r.o.Cache)
		return
	}
	for _, b := range s.r.bindings(rel) {
		if t.retire[b.c] {
			continue
		}
		if !s.rowInvs(t, rel, b, old, cur) {
			t.retireCache(b.c)
		}
	}
}

func (s *stream) rowInvs(t *txn, rel *relation, b binding, old, cur *pglogrepl.TupleData) bool {
	inv := cache.Invalidation{}
	switch {
	case !b.verKnown:
		inv.Retire = true
	case b.verCol == "":
	case cur == nil: // a delete: the row has no version any more
		inv.Retire = true
	default:
		vi, ok := rel.byName[b.verCol]
		if !ok || vi >= len(cur.Columns) || cur.Columns[vi].DataType != pglogrepl.TupleDataTypeText {
			inv.Retire = true
			break
		}
		v, err := strconv.ParseUint(string(cur.Columns[vi].Data), 10, 64)
		if err != nil || v == 0 {
			inv.Retire = true
			break
		}
		inv.Version = v
		// A writer around the library may leave the version as it was: a
		// tombstone at v would keep the entry cached at v, now wrong. Only
		// with REPLICA IDENTITY FULL is the old version known; otherwise
		// the key is retired with floor v (the cached entry goes, fills of
		// v or newer land again), which costs a miss, never a stale row.
		inv.Retire = true
		if old != nil && vi < len(old.Columns) && old.Columns[vi].DataType == pglogrepl.TupleDataTypeText {
			if ov, err := strconv.ParseUint(string(old.Columns[vi].Data), 10, 64); err == nil {
				if ov >= v {
					inv.Version = 0 // the version went back or stayed: no floor
				} else {
					inv.Retire = false // raised: an ordinary versioned invalidation
				}
			}
		}
	}
	var keys []string
	if cur != nil {
		k, ok := rel.rowKey(b.ns, cur)
		if !ok {
			if old == nil {
				return false
			}
			// The key is unchanged and TOASTed: the old tuple holds it.
			if k, ok = rel.rowKey(b.ns, old); !ok {
				return false
			}
		}
		keys = append(keys, k)
	}
	if old != nil {
		k, ok := rel.rowKey(b.ns, old)
		if !ok {
			return false
		}
		if len(keys) == 0 {
			keys = append(keys, k)
		} else if k != keys[0] { // the key changed: the old one is gone
			t.add(b.c, cache.Invalidation{Key: k, Retire: b.verCol != "" || !b.verKnown})
		}
	}
	for _, k := range keys {
		inv.Key = k
		t.add(b.c, inv)
	}
	if cur != nil {
		for _, col := range b.uniques {
			i, ok := rel.byName[col]
			if !ok || i >= len(cur.Columns) {
				return false
			}
			c := cur.Columns[i]
			switch c.DataType {
			case pglogrepl.TupleDataTypeNull, pglogrepl.TupleDataTypeToast:
				continue // no mapping, or an unchanged value
			}
			v, ok := rel.value(cur, i)
			if !ok {
				return false
			}
			t.add(b.c, cache.Invalidation{Key: bind.UniqueKey(b.ns, col, v)})
		}
	}
	t.add(b.c, cache.Invalidation{Key: bind.GenKey(b.ns)})
	return true
}

// txn is the invalidations of one transaction, per cache.
type txn struct {
	max    int
	invs   map[*cache.Cache]map[string]cache.Invalidation
	retire map[*cache.Cache]bool
	done   map[*cache.Cache]bool // applied (a retry skips them)
	rows   int
	txns   int           // committed transactions merged in
	end    pglogrepl.LSN // end of the last of them
	commit time.Time     // its commit time
}

func (t *txn) keys() int {
	n := 0
	for _, m := range t.invs {
		n += len(m)
	}
	return n
}

// merge adds the later committed transaction u.
func (t *txn) merge(u *txn) {
	for c := range u.retire {
		t.retireCache(c)
	}
	for c, m := range u.invs {
		for _, inv := range m {
			t.add(c, inv)
		}
	}
	t.rows += u.rows
	t.txns += u.txns
	t.end, t.commit = u.end, u.commit
}

func newTxn(max int) *txn {
	return &txn{max: max, invs: map[*cache.Cache]map[string]cache.Invalidation{}, retire: map[*cache.Cache]bool{}, done: map[*cache.Cache]bool{}}
}

func (t *txn) retireCache(c *cache.Cache) {
	t.retire[c] = true
	delete(t.invs, c)
}

// add merges inv: a retirement wins, then a stamp (0), then the highest
// version.
func (t *txn) add(c *cache.Cache, inv cache.Invalidation) {
	if t.retire[c] {
		return
	}
	m := t.invs[c]
	if m == nil {
		m = map[string]cache.Invalidation{}
		t.invs[c] = m
	}
	if prev, ok := m[inv.Key]; ok {
		switch {
		case prev.Retire || inv.Retire:
			inv.Retire, inv.Version = true, 0
		case prev.Version == 0 || inv.Version == 0:
			inv.Version = 0
		default:
			inv.Version = max(inv.Version, prev.Version)
		}
	}
	m[inv.Key] = inv
	if len(m) > t.max {
		t.retireCache(c)
	}
}

// apply runs the transaction's invalidations, retrying with backoff until
// they are applied (or ctx ends, or the lease is lost): nothing is
// acknowledged past a transaction that was not. While it retries, the
// walsender keeps hearing the old position.
func (s *stream) apply(ctx context.Context, t *txn) error {
	r := s.r
	backoff := r.o.MinBackoff
	for {
		err := t.applyOnce(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, cache.ErrClosed) {
			return err
		}
		r.report(fmt.Errorf("gormcache: change feed: applying a transaction's invalidations (retrying): %w", err))
		r.mu.Lock()
		r.st.ApplyRetries++
		r.mu.Unlock()
		if err := s.status(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, r.o.MaxBackoff)
	}
}

func (t *txn) applyOnce(ctx context.Context) error {
	var errs []error
	for c := range t.retire {
		if t.done[c] {
			continue
		}
		if err := c.RetireAll(ctx); err != nil {
			errs = append(errs, err)
			continue
		}
		t.done[c] = true
	}
	for c, m := range t.invs {
		if t.done[c] || len(m) == 0 {
			continue
		}
		invs := make([]cache.Invalidation, 0, len(m))
		for _, inv := range m {
			invs = append(invs, inv)
		}
		if err := c.InvalidateMany(ctx, invs); err != nil {
			errs = append(errs, err)
			continue
		}
		t.done[c] = true
	}
	return errors.Join(errs...)
}
