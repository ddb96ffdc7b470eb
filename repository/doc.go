// Package repository is the GORM face of gormcache: a generic, cached,
// versioned repository that existing GORM models drop into, transactions
// that invalidate only after COMMIT, and a decorator for the read methods of
// repositories you already have.
//
//	users, err := repository.New[User, uint](db, c, repository.Options{})
//	u, err := users.Get(ctx, 42)               // L1 → Redis → one SELECT
//	err = users.Update(ctx, u)                 // optimistic lock, then invalidate
//	err = repository.Transaction(ctx, db, func(tx *repository.Tx) error {
//		return users.WithTx(tx).Update(ctx, u) // invalidated after COMMIT
//	})
//
// # Faithful rows
//
// Every read returns what GORM itself would read for the row at that
// version: Get and GetBy what db.First(&v, id) returns, GetMany what
// db.Find(&vs, ids) returns, reflect.DeepEqual field for field, on a miss,
// an L1 hit and a Redis hit alike, whatever the process time zone. The
// cache does not serialize the struct: an entry holds each column as the
// database driver returned it (nil, bool, int64, float64, string, []byte or
// time.Time, with its location), and a hit is rebuilt through GORM's own
// schema, as GORM's Scan builds a model from a result row (the field's scan
// value, database/sql's conversion, the field's setter, so Scanner types,
// serializers, embedded structs and JSON columns behave exactly as in GORM);
// then the model's AfterFind hook runs, as after a query. So `json:"-"`
// columns, Scanner types with unexported state and fields set by AfterFind
// survive, and Get → edit one field → Update changes exactly that column.
// An entry is keyed by the model's columns, not its Go type: a deploy that
// adds a `gorm:"-"` field or a method keeps hitting the entries written
// before it.
//
// Reads run GORM's Row callbacks ("SELECT * FROM <table> WHERE ..." with
// the model's query clauses such as soft delete), not its Query callbacks: a
// plugin that scopes queries must register on both, as dbresolver does.
// Inside a transaction (WithTx) reads are plain GORM queries.
//
// Refused, with an error naming the reason: a model GORM cannot parse, one
// without a primary key, an ID type that does not match the key (for a
// composite key, ID must be a struct with one field per key field, same
// names and types), GetBy on a column that is neither the primary key nor
// covered by a single-column unique constraint (a column that is only part
// of a composite unique index is not unique), and a GetBy that finds two
// rows (ErrNotUnique). A driver value of another kind than database/sql's
// fails the read and is never cached.
//
// Writes touch the model's own table only: Update and Updates omit
// associations (GORM's Save would upsert the child rows loaded into the
// model) unless Options.SaveAssociations is set.
//
// # Versioned and unversioned models
//
// A model with a Version column gets optimistic locking, and every cached
// entry carries the row's version: the cache rejects any fill older than the
// last committed write, so a reader that loaded the old row can never store
// it after the write's invalidation.
//
// A model without one (most existing schemas) works too. Its invalidations
// are stamped by Redis with a generation newer than anything stored for the
// key (its server clock in µs, never lower than the last stamp + 1), and a
// read fills its entry at the generation it observed before querying the
// database. A write that commits while a read is in flight therefore still
// rejects that read's fill. The trade-offs: writes cannot detect lost
// updates (no ErrConflict), the stamps rely on the Redis clock not jumping
// back by more than the tombstone lifetime, and while Redis is unreachable
// the generation cannot be read (the cache then serves from L1 and the
// database, and bumps the namespace epoch when Redis returns).
//
// # Connections
//
// A Repository is safe for concurrent use by any number of goroutines that
// share one *gorm.DB. The pool is yours to size: a cache in front of the
// database means misses come in bursts of distinct keys (singleflight folds
// same-key storms into one query), so SetMaxOpenConns near the database's
// comfortable concurrency (for PostgreSQL, a few per core) and
// SetMaxIdleConns equal to it avoid reconnect churn; SetConnMaxLifetime of
// some minutes lets the pool follow failovers. Never hand New a
// transaction-bound *gorm.DB: it is refused (ErrTxBound); use WithTx.
//
// # Writes made elsewhere
//
// Writes through the repository invalidate after they commit. A write made
// around it (raw SQL, another program) is bounded by the cache TTLs unless
// you call Invalidate after it commits.
package repository
