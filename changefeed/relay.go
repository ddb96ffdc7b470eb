package changefeed

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/bind"
	"github.com/gormcache/gormcache/repository"
)

// Relay follows one database's committed changes and invalidates the cached
// rows they touch. Create it with New, run it with Run (on every instance of
// a fleet if you like: one streams, the others stand by), stop it with
// Close.
type Relay struct {
	o        Options
	reg      *bind.Registry // nil without Options.DB
	describe map[string]Table
	lease    *lease

	schemas sync.Map // reflect.Type → version column ("" if none), for registered models

	// Owned by the goroutine running Run.
	rels          map[uint32]*relation
	pks           map[string][]string // "schema.table" → primary-key columns
	forceRecreate bool                // the stream said the slot can no longer deliver
	pendingRetire map[*cache.Cache]bool
	busySince     time.Time // first "slot is active" refusal in a row
	leading       bool      // logged as the leader (state changes only)
	failing       bool      // logged the stream as ended, not yet as resumed
	badLogged     string    // the unsupported tables last logged

	running atomic.Bool
	closed  atomic.Bool
	mu      sync.Mutex // guards cancel, done and st
	cancel  context.CancelFunc
	done    chan struct{}
	st      Stats
	// caughtUp: a keepalive came with no transaction pending since the
	// last applied one (the stream held nothing more).
	caughtUp bool
}

// Stats describes a Relay's progress.
type Stats struct {
	AppliedTxns uint64 // committed transactions whose invalidations were applied
	AppliedRows uint64 // row changes among them
	// LastCommit is the commit time of the last applied transaction. Lag
	// is now minus it while the relay has not caught up since (a
	// transaction received and not yet applied, or no keepalive heard since
	// the last one), else 0: the feed's delay when writes flow, and how
	// long it has been stuck when it is.
	LastCommit time.Time
	Lag        time.Duration
	// AckedLSN is the last position acknowledged to PostgreSQL (as
	// flushed): every transaction that committed before it was applied.
	AckedLSN pglogrepl.LSN
	// RetainedWALBytes is the WAL the slot keeps (pg_current_wal_lsn() −
	// restart_lsn), as last polled.
	RetainedWALBytes int64
	Leader           string // instance holding the lease, as last seen ("" if none)
	IsLeader         bool   // this relay holds the lease
	FencingToken     int64  // of the lease this relay holds (0 if none)
	Reconnects       uint64 // streaming sessions that ended in an error
	SlotLost         uint64 // slots found missing or invalidated: every cache retired, slot recreated
	Retired          uint64 // caches retired for a TRUNCATE, a schema change, an unkeyable or oversized change
	ApplyRetries     uint64 // invalidations retried after an error
	// Unsupported lists followed tables whose rows the feed cannot key,
	// with the reason, as of the last session's start (see Check).
	Unsupported []string
}

// New checks opts and returns a Relay; it does no I/O.
func New(opts Options) (*Relay, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Relay{o: o, describe: map[string]Table{}, rels: map[uint32]*relation{}, pks: map[string][]string{}}
	if o.DB != nil {
		r.reg = bind.For(o.DB)
	}
	for _, t := range o.Describe {
		if t.Namespace == "" {
			t.Namespace = t.Name
		}
		if t.Cache == nil {
			t.Cache = o.Cache
		}
		r.describe[t.Name] = t
	}
	r.lease = newLease(o.Redis, o.LeaseKey, o.InstanceID, o.LeaseTTL)
	return r, nil
}

// followed is every table name of Tables and Describe.
func (r *Relay) followed() []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range r.o.Tables {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, t := range r.o.Describe {
		if !seen[t.Name] {
			seen[t.Name] = true
			out = append(out, t.Name)
		}
	}
	return out
}

// Run elects this relay (waiting while another holds the lease), then
// streams, reconnecting with backoff, until ctx ends or Close is called;
// it returns nil then. It returns an error only for a closed Relay or
// cache.
func (r *Relay) Run(ctx context.Context) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if !r.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: Run is already running", ErrInvalidOption)
	}
	defer r.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	r.mu.Lock()
	r.cancel, r.done = cancel, done
	r.mu.Unlock()
	if r.closed.Load() {
		return ErrClosed
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.lease.run(ctx, r.report) }()
	defer wg.Wait()

	backoff := r.o.MinBackoff
	for {
		for {
			ch := r.lease.changed()
			if r.lease.valid() {
				break
			}
			select {
			case <-ctx.Done():
				return nil
			case <-ch:
			case <-time.After(r.o.LeaseTTL / 3):
			}
		}
		r.logLeading(true)
		start := time.Now()
		before := r.Stats().AppliedTxns
		err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, cache.ErrClosed) || errors.Is(err, cache.ErrNilCache) {
			return err
		}
		r.report(err)
		r.logEnded(err)
		r.mu.Lock()
		r.st.Reconnects++
		r.mu.Unlock()
		if time.Since(start) > 10*time.Second || r.Stats().AppliedTxns > before {
			backoff = r.o.MinBackoff
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, r.o.MaxBackoff)
	}
}

// logLeading logs a change of leadership (owned by Run's goroutine).
func (r *Relay) logLeading(now bool) {
	if now == r.leading {
		return
	}
	r.leading = now
	_, _, token := r.lease.snapshot()
	if now {
		r.o.Logger.Info("gormcache: change feed relay holds the lease; streaming", "slot", r.o.Slot, "instance", r.o.InstanceID, "fencing_token", token)
		return
	}
	r.o.Logger.Info("gormcache: change feed relay lost the lease; standing by", "slot", r.o.Slot, "instance", r.o.InstanceID)
}

// logEnded logs the first end of a stream after it had been streaming
// (reconnections that fail in a row are logged once), or the lease's loss.
func (r *Relay) logEnded(err error) {
	if !r.lease.valid() {
		r.logLeading(false)
		return
	}
	if !r.failing && !errors.Is(err, errSlotBusy) {
		r.failing = true
		r.o.Logger.Warn("gormcache: change feed stream ended; reconnecting (invalidations of other writers' commits wait)", "slot", r.o.Slot, "err", err)
	}
}

// logStreaming logs that the stream resumed after logEnded, and the tables
// the feed cannot key whenever that list changes.
func (r *Relay) logStreaming(bad []string) {
	if r.failing {
		r.failing = false
		r.o.Logger.Info("gormcache: change feed streaming again", "slot", r.o.Slot)
	}
	if s := strings.Join(bad, "; "); s != r.badLogged {
		r.badLogged = s
		if s != "" {
			r.o.Logger.Warn("gormcache: change feed cannot key some tables' rows", "slot", r.o.Slot, "tables", s)
		}
	}
}

// Close stops Run (without acknowledging anything not yet acknowledged),
// releases the lease and waits for Run to return. It is idempotent.
func (r *Relay) Close() error {
	r.closed.Store(true)
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

// Stats returns the relay's counters and state.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	caughtUp := r.caughtUp
	s := r.st
	s.Unsupported = append([]string(nil), r.st.Unsupported...)
	r.mu.Unlock()
	s.Leader, s.IsLeader, s.FencingToken = r.lease.snapshot()
	if !s.LastCommit.IsZero() && !caughtUp {
		s.Lag = max(r.o.Now().Sub(s.LastCommit), 0)
	}
	return s
}

// Check reads the catalog and returns an error wrapping
// ErrUnsupportedTable that names every followed table whose rows the feed
// cannot key (no primary key, no replica identity, missing), or nil.
func (r *Relay) Check(ctx context.Context) error {
	conn, err := pgconn.Connect(ctx, r.o.ConnString)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	infos, err := r.catalog(ctx, conn)
	if err != nil {
		return err
	}
	if bad := unsupported(infos); len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrUnsupportedTable, strings.Join(bad, "; "))
	}
	return nil
}

// catalog reads the followed tables' entries; with AllTables, those of
// every user table.
func (r *Relay) catalog(ctx context.Context, conn *pgconn.PgConn) ([]tableInfo, error) {
	if r.o.AllTables {
		rows, err := query(ctx, conn, `SELECT `+infoCols+` FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
			AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2`)
		if err != nil {
			return nil, err
		}
		out := make([]tableInfo, len(rows))
		for i, row := range rows {
			out[i] = infoOf(row)
			out[i].name = out[i].schema + "." + out[i].rel
		}
		return out, nil
	}
	var out []tableInfo
	for _, n := range r.followed() {
		t, err := lookupTable(ctx, conn, n)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func unsupported(infos []tableInfo) []string {
	var bad []string
	for _, t := range infos {
		if p := t.problem(); p != "" {
			bad = append(bad, t.name+": "+p)
		}
	}
	sort.Strings(bad)
	return bad
}

func (r *Relay) report(err error) {
	if err != nil && r.o.OnError != nil {
		r.o.OnError(err)
	}
}

// binding says how one cache holds a table's rows.
type binding struct {
	c        *cache.Cache
	ns       string
	verCol   string // the repository.Version column, "" if unversioned
	verKnown bool   // whether the model's versioning is known (else rows are retired)
	uniques  []string
}

// bindings returns how the table's rows are cached: its description, else
// the repositories registered for it, else Options.Cache under its name.
func (r *Relay) bindings(rel *relation) []binding {
	names := []string{rel.schema + "." + rel.name, rel.name}
	for _, n := range names {
		if t, ok := r.describe[n]; ok {
			return []binding{{c: t.Cache, ns: t.Namespace, verCol: t.Version, verKnown: true, uniques: t.Uniques}}
		}
	}
	if r.reg != nil {
		for _, n := range names {
			ts := r.reg.Tables(n)
			if len(ts) == 0 {
				continue
			}
			out := make([]binding, 0, len(ts))
			for _, t := range ts {
				b := binding{c: t.Cache, ns: t.Namespace}
				for col := range t.Uniques {
					b.uniques = append(b.uniques, col)
				}
				sort.Strings(b.uniques)
				if t.Model != nil {
					b.verCol, b.verKnown = r.versionColumn(t.Model)
				}
				out = append(out, b)
			}
			return out
		}
	}
	ns := rel.name
	if rel.schema != "public" {
		ns = rel.schema + "." + rel.name
	}
	for _, n := range r.o.Tables {
		if n == rel.schema+"."+rel.name {
			ns = n
		}
	}
	return []binding{{c: r.o.Cache, ns: ns}}
}

var versionType = reflect.TypeFor[repository.Version]()

// versionColumn is the column of model's repository.Version field.
func (r *Relay) versionColumn(model reflect.Type) (string, bool) {
	if v, ok := r.schemas.Load(model); ok {
		return v.(string), true
	}
	sch, err := schema.Parse(reflect.New(model).Interface(), &sync.Map{}, r.o.DB.NamingStrategy)
	if err != nil {
		return "", false
	}
	col := ""
	for _, f := range sch.Fields {
		if f.FieldType == versionType && f.DBName != "" {
			col = f.DBName
		}
	}
	r.schemas.Store(model, col)
	return col, true
}
