// Package gormcache makes an existing GORM codebase cached and coherent
// without rewriting its writes: install the plugin on the *gorm.DB and every
// Create, Save, Updates, Update, Delete and Exec through it invalidates the
// rows it changed, after its transaction commits.
//
//	c, _ := cache.New(ctx, cache.Options{Redis: rdb})
//	bus, _ := invalidation.New(ctx, c, invalidation.Options{})
//	db.Use(&gormcache.Plugin{Cache: c})
//
// Rows are cached by repository.Repository (or read through the plugin's
// transparent reads) under "<table>:<primary key>"; the plugin retires those
// keys. The write path:
//
//   - Outside a transaction (SkipDefaultTransaction), a write's keys are
//     invalidated as soon as the statement returns: it has committed.
//   - In a transaction — GORM's default one around each write,
//     db.Transaction, db.Begin/Commit, nested transactions and savepoints,
//     PrepareStmt sessions — they are queued on the transaction and applied
//     once COMMIT returns (also when COMMIT fails: its outcome may be
//     unknown), dropped on ROLLBACK, and those queued since a savepoint are
//     dropped on ROLLBACK TO it. One transaction costs one Redis pipeline
//     per cache.
//   - The keys come from the rows GORM wrote (Create, with the primary keys
//     the database returned) or from the WHERE clause when it names primary
//     keys (db.Model(&u), db.Save(&u), db.Delete(&u), Where("id IN ?", ids)).
//     When it does not (Where("org_id = ?", o).Update(...), raw SQL that may
//     write), the rows cannot be known without a read, and every namespace
//     is retired instead (cache.RetireAll): a cold cache, never a stale row.
//   - A write in a transaction the plugin did not begin (inside
//     db.Connection, which takes a connection around the pool; a *sql.Tx
//     handed to GORM) is refused with ErrUntrackedTx rather than invalidated
//     before its COMMIT.
//
// The plugin wraps the pool the database was opened with: install it after
// gorm.Open (and after a dialector that sets its own pool). With
// gorm.Config.PrepareStmt it wraps the pool under GORM's prepared-statement
// pool. db.DB() keeps returning the *sql.DB.
package gormcache
