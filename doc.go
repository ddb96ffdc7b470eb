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
//   - A default transaction begun on a pool the plugin did not wrap (a
//     connection of db.Connection, a dbresolver source) is tracked too. A
//     write in a transaction begun by hand around the pool (db.Connection
//     then Transaction, a *sql.Tx handed to GORM) is refused with
//     ErrUntrackedTx rather than invalidated before its COMMIT.
//
// Versioned models (a repository.Version column) get optimistic locking on
// plain GORM writes too: an update or delete of one row by its model runs
// "... AND version = v" and sets version = v+1, a stale one fails with an
// error wrapping repository.ErrConflict and changes nothing, and the row is
// invalidated at exactly its new version. Other updates of the table raise
// the version by one. InstallVersionTrigger installs a PostgreSQL trigger
// that raises it for every other writer too, in any language.
//
// Reads (see Cached and Plugin.CachedModels) and the query cache are served
// by the model's repository; strict writes (Plugin.StrictModels) wait until
// every live instance has applied their invalidation.
//
// The plugin wraps the pool the database was opened with: install it after
// gorm.Open (and after a dialector that sets its own pool). With
// gorm.Config.PrepareStmt it wraps the pool under GORM's prepared-statement
// pool. db.DB() keeps returning the *sql.DB.
package gormcache
