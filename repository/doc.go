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
