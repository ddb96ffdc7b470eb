package repository

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/bind"
	"github.com/gormcache/gormcache/internal/rowcodec"
)

// Repository is a cached, versioned repository of rows of model T with
// primary key type ID (the key field's type, or for a composite primary key
// a struct of the key fields). Reads go L1 → Redis → PostgreSQL (one query
// per key per process on a miss storm) and return what GORM's db.First (or
// db.Find) would return for the row; writes go to the database and, after
// they commit, invalidate both tiers with the row's new version.
//
// A Repository is safe for concurrent use by many goroutines sharing one
// *gorm.DB. WithTx returns a copy bound to a transaction.
type Repository[T any, ID comparable] struct {
	db      *gorm.DB // the shared connection, never transaction-bound
	c       *cache.Cache
	opts    Options
	sch     *schema.Schema
	table   string
	ns      string
	keys    *keyPlan
	ver     *schema.Field // nil when the model has no Version column
	uniques map[string]*schema.Field
	omit    []string // columns a whole-row Update leaves alone
	readOpt []cache.ReadOption
	rows    *rowcodec.Plan   // how rows are stored in the cache
	format  *cache.Format[T] // rows.Decode, for the cache
	hooked  bool             // T has AfterFind
	tx      *Tx              // non-nil for a transaction-bound copy
	loadRow func(ctx context.Context, key string, a rowArg[T, ID]) ([]byte, uint64, error)
}

// rowArg is what the cache loader of a row needs. With the repository in its
// argument, a hit allocates no closure.
type rowArg[T any, ID comparable] struct {
	r  *Repository[T, ID]
	id ID
}

func loadRowArg[T any, ID comparable](ctx context.Context, _ string, a rowArg[T, ID]) ([]byte, uint64, error) {
	return a.r.loadPayload(ctx, a.id)
}

// New returns a repository of T over db (the shared connection, not a
// transaction) and c. T must be a struct model with a primary key; ID is the
// key field's type or, for a composite primary key, a struct with one
// exported field per key field, of the same name and type:
//
//	type Membership struct {
//		OrgID  uint `gorm:"primaryKey"`
//		UserID uint `gorm:"primaryKey"`
//		Role   string
//	}
//	type MembershipKey struct{ OrgID, UserID uint }
//	members, err := repository.New[Membership, MembershipKey](db, c, repository.Options{})
func New[T any, ID comparable](db *gorm.DB, c *cache.Cache, opts Options) (*Repository[T, ID], error) {
	if db == nil || c == nil {
		return nil, fmt.Errorf("%w: nil *gorm.DB or *cache.Cache", ErrInvalidArgument)
	}
	if isTxBound(db) {
		return nil, fmt.Errorf("%w: repository.New needs the shared connection; bind to a transaction with WithTx", ErrTxBound)
	}
	mt := reflect.TypeFor[T]()
	if mt.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w: %v is not a struct", ErrUnsupportedModel, mt)
	}
	stmt := &gorm.Statement{DB: db}
	if err := stmt.Parse(new(T)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedModel, err)
	}
	sch := stmt.Schema
	keys, err := newKeyPlan(sch, reflect.TypeFor[ID]())
	if err != nil {
		return nil, err
	}
	plan, err := rowcodec.Compile(sch)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedModel, err)
	}
	r := &Repository[T, ID]{db: db, c: c, opts: opts, sch: sch, table: sch.Table, keys: keys, rows: plan,
		loadRow: loadRowArg[T, ID]}
	r.format = &cache.Format[T]{Fingerprint: plan.Fingerprint(), Decode: r.decodeRow}
	_, r.hooked = any(new(T)).(afterFinder)
	for _, f := range sch.Fields {
		if f.FieldType == reflect.TypeFor[Version]() && f.DBName != "" {
			r.ver = f
		}
		if f.AutoCreateTime != 0 || f.PrimaryKey {
			r.omit = append(r.omit, f.DBName)
		}
	}
	if r.uniques, err = uniqueColumns(sch, opts.UniqueColumns); err != nil {
		return nil, err
	}
	r.ns = opts.Namespace
	if r.ns == "" {
		r.ns = r.table
	}
	if strings.ContainsAny(r.ns, "{}") {
		return nil, fmt.Errorf("%w: namespace %q contains '{' or '}'", ErrInvalidArgument, r.ns)
	}
	if opts.TTL > 0 {
		r.readOpt = append(r.readOpt, cache.WithTTL(opts.TTL))
	}
	if opts.SkipL1 {
		r.readOpt = append(r.readOpt, cache.SkipL1())
	}
	bt := bind.Table{Cache: c, Namespace: r.ns, Uniques: r.uniques}
	if !keys.composite() {
		bt.Read, bt.Model = r.readAny, mt
	}
	bind.For(db).Add(r.table, bt)
	return r, nil
}

// uniqueColumns returns the columns GetBy may look rows up by: those with a
// single-column unique constraint (tag unique, or a uniqueIndex no other
// field shares, without a WHERE or an expression), and extra, which the
// caller vouches for. A column that is only part of a composite unique index
// is not unique by itself.
func uniqueColumns(sch *schema.Schema, extra []string) (map[string]*schema.Field, error) {
	out := bind.UniqueFields(sch)
	for _, col := range extra {
		f := sch.LookUpField(col)
		if f == nil || f.DBName == "" {
			return nil, fmt.Errorf("%w: UniqueColumns: %s has no column %q", ErrUnknownColumn, sch.Name, col)
		}
		out[f.DBName] = f
	}
	return out, nil
}

// isTxBound reports whether db runs inside a transaction.
func isTxBound(db *gorm.DB) bool {
	if db.Statement == nil || db.Statement.ConnPool == nil {
		return false
	}
	_, ok := db.Statement.ConnPool.(gorm.TxCommitter)
	return ok
}

// Versioned reports whether the model has a Version column (optimistic
// locking); without one, the repository stamps invalidations instead (see
// the package documentation).
func (r *Repository[T, ID]) Versioned() bool { return r.ver != nil }

// Table returns the model's table name.
func (r *Repository[T, ID]) Table() string { return r.table }

// Cache returns the cache the repository reads through.
func (r *Repository[T, ID]) Cache() *cache.Cache { return r.c }

// WithTx returns a copy of r bound to tx: its reads go to the transaction
// (never reading or filling the shared tiers, which must not see uncommitted
// rows) and its writes queue their invalidations on tx, applied only after
// the outermost COMMIT.
func (r *Repository[T, ID]) WithTx(tx *Tx) *Repository[T, ID] {
	cp := *r
	cp.tx = tx
	return &cp
}

// conn is the connection for ctx: the transaction for a bound copy, else the
// shared pool.
// conn returns the connection for ctx: the bound transaction, or the shared
// pool. Statements on it are marked as handled, so the plain-GORM plugin
// does not invalidate the repository's writes a second time.
func (r *Repository[T, ID]) conn(ctx context.Context) *gorm.DB {
	if r.tx != nil {
		return r.tx.db.WithContext(ctx).Set(bind.Handled, true)
	}
	return r.db.WithContext(ctx).Set(bind.Handled, true)
}

// versionOf returns v's Version (0 for unversioned models).
func (r *Repository[T, ID]) versionOf(ctx context.Context, v *T) uint64 {
	if r.ver == nil {
		return 0
	}
	return r.ver.ReflectValueOf(ctx, reflect.ValueOf(v).Elem()).Uint()
}

func (r *Repository[T, ID]) setVersion(ctx context.Context, v *T, n uint64) {
	if r.ver != nil {
		r.ver.ReflectValueOf(ctx, reflect.ValueOf(v).Elem()).SetUint(n)
	}
}

// now is the start time of an operation, or zero when nobody observes.
func (r *Repository[T, ID]) now() time.Time {
	if r.opts.Observe == nil {
		return time.Time{}
	}
	return time.Now()
}

func (r *Repository[T, ID]) observe(ctx context.Context, op string, rows int, start time.Time, err error) {
	if r.opts.Observe != nil {
		r.opts.Observe(ctx, Event{Op: op, Table: r.table, Rows: rows, Duration: time.Since(start), Err: err})
	}
}

// served is where a read counts the tiers that answered it: nil when
// nobody observes, so that reads pay nothing for it.
func (r *Repository[T, ID]) served() *cache.Served {
	if r.opts.Observe == nil {
		return nil
	}
	return new(cache.Served)
}

// observeRead is observe for a read, with the tiers that served it.
func (r *Repository[T, ID]) observeRead(ctx context.Context, op string, rows int, start time.Time, err error, s *cache.Served) {
	if r.opts.Observe != nil {
		r.opts.Observe(ctx, Event{Op: op, Table: r.table, Rows: rows, Duration: time.Since(start), Err: err, Tier: TierOf(*s), Served: *s})
	}
}

// readOpts are the repository's read options, plus ReportServed(s) when s
// is set.
func (r *Repository[T, ID]) readOpts(s *cache.Served) []cache.ReadOption {
	if s == nil {
		return r.readOpt
	}
	return append(r.readOpt[:len(r.readOpt):len(r.readOpt)], cache.ReportServed(s))
}
