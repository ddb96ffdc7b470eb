package repository

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/cache"
)

// Repository is a cached, versioned repository of rows of model T with
// primary key type ID. Reads go L1 → Redis → PostgreSQL (one query per key
// per process on a miss storm); writes go to the database and, after they
// commit, invalidate both tiers with the row's new version.
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
	pk      *schema.Field
	ver     *schema.Field // nil when the model has no Version column
	uniques map[string]*schema.Field
	omit    []string // columns a whole-row Update leaves alone
	readOpt []cache.ReadOption
	tx      *Tx // non-nil for a transaction-bound copy

	// loadRow is the cache loader, created once: with the repository in
	// its argument, a hit allocates no closure.
	loadRow func(ctx context.Context, key string, a rowArg[T, ID]) (T, uint64, error)
}

// rowArg is what the cache loader of a row needs.
type rowArg[T any, ID comparable] struct {
	r  *Repository[T, ID]
	id ID
}

func loadRowArg[T any, ID comparable](ctx context.Context, _ string, a rowArg[T, ID]) (T, uint64, error) {
	p, err := a.r.load(ctx, a.id)
	if err != nil {
		var zero T
		return zero, 0, err
	}
	return *p, a.r.versionOf(ctx, p), nil
}

// New returns a repository of T over db (the shared connection, not a
// transaction) and c. T must be a struct model with a single primary key
// of type ID.
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
	if len(sch.PrimaryFields) != 1 {
		return nil, fmt.Errorf("%w: %s has %d primary key fields; one is required", ErrUnsupportedModel, sch.Name, len(sch.PrimaryFields))
	}
	r := &Repository[T, ID]{db: db, c: c, opts: opts, sch: sch, table: sch.Table, pk: sch.PrimaryFields[0], uniques: map[string]*schema.Field{},
		loadRow: loadRowArg[T, ID]}
	if it := reflect.TypeFor[ID](); r.pk.FieldType != it {
		return nil, fmt.Errorf("%w: primary key %s.%s is %v, not %v", ErrUnsupportedModel, sch.Name, r.pk.Name, r.pk.FieldType, it)
	}
	for _, f := range sch.Fields {
		if f.FieldType == reflect.TypeFor[Version]() && f.DBName != "" {
			r.ver = f
		}
		if f.DBName != "" && (f.Unique || hasTag(f, "UNIQUEINDEX")) && !f.PrimaryKey {
			r.uniques[f.DBName] = f
		}
		if f.AutoCreateTime != 0 || f.PrimaryKey {
			r.omit = append(r.omit, f.DBName)
		}
	}
	for _, col := range opts.UniqueColumns {
		f := sch.LookUpField(col)
		if f == nil || f.DBName == "" {
			return nil, fmt.Errorf("%w: UniqueColumns: %s has no column %q", ErrUnknownColumn, sch.Name, col)
		}
		r.uniques[f.DBName] = f
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
	return r, nil
}

func hasTag(f *schema.Field, name string) bool {
	_, ok := f.TagSettings[name]
	return ok
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
func (r *Repository[T, ID]) conn(ctx context.Context) *gorm.DB {
	if r.tx != nil {
		return r.tx.db.WithContext(ctx)
	}
	return r.db.WithContext(ctx)
}

// key is the cache key of the row with primary key id. Integer ids, the
// common case, are formatted without boxing: one allocation, the key.
func (r *Repository[T, ID]) key(id ID) string {
	var buf [20]byte
	switch x := any(id).(type) {
	case int64:
		return r.ns + ":" + string(strconv.AppendInt(buf[:0], x, 10))
	case uint64:
		return r.ns + ":" + string(strconv.AppendUint(buf[:0], x, 10))
	case uint:
		return r.ns + ":" + string(strconv.AppendUint(buf[:0], uint64(x), 10))
	case int:
		return r.ns + ":" + string(strconv.AppendInt(buf[:0], int64(x), 10))
	case uint32:
		return r.ns + ":" + string(strconv.AppendUint(buf[:0], uint64(x), 10))
	case int32:
		return r.ns + ":" + string(strconv.AppendInt(buf[:0], int64(x), 10))
	}
	return r.ns + ":" + formatKey(id)
}

// uniqueKey is the cache key mapping a unique column's value to an id.
func (r *Repository[T, ID]) uniqueKey(col string, v any) string {
	return r.ns + ":" + col + "=" + formatKey(v)
}

// formatKey renders an id or column value for use in a key: integers in
// decimal, strings escaped so they cannot form a Redis hash tag.
func formatKey(v any) string {
	switch x := v.(type) {
	case string:
		return escapeKey(x)
	case int:
		return strconv.FormatInt(int64(x), 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case uint:
		return strconv.FormatUint(uint64(x), 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case uint32:
		return strconv.FormatUint(uint64(x), 10)
	case fmt.Stringer:
		return escapeKey(x.String())
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10)
	case reflect.String:
		return escapeKey(rv.String())
	}
	return escapeKey(fmt.Sprint(v))
}

var keyEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")

func escapeKey(s string) string {
	if !strings.ContainsAny(s, "%{}") {
		return s
	}
	return keyEscaper.Replace(s)
}

// checkID refuses the zero ID.
func checkID[ID comparable](id ID) error {
	var zero ID
	if id == zero {
		return fmt.Errorf("%w: zero %T", ErrInvalidID, id)
	}
	return nil
}

// pkEq is "<table>.<pk> = id".
func (r *Repository[T, ID]) pkEq(id any) clause.Expression {
	return clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: r.pk.DBName}, Value: id}
}

// idOf returns the primary key of v.
func (r *Repository[T, ID]) idOf(ctx context.Context, v *T) ID {
	x, _ := r.pk.ValueOf(ctx, reflect.ValueOf(v).Elem())
	id, _ := x.(ID)
	return id
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
