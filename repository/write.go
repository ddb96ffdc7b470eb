package repository

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"gorm.io/gorm/clause"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/bind"
	"github.com/gormcache/gormcache/internal/failpoint"
)

// Create inserts v. A versioned model with a zero Version is created at
// version 1. After the insert commits (at once, or with the transaction a
// bound repository belongs to), any cached "not found" for its key and its
// unique values is invalidated.
func (r *Repository[T, ID]) Create(ctx context.Context, v *T) error {
	start := r.now()
	err := r.create(ctx, v)
	r.observe(ctx, "create", 1, start, err)
	return err
}

func (r *Repository[T, ID]) create(ctx context.Context, v *T) error {
	if v == nil {
		return ErrNilModel
	}
	if r.ver != nil && r.versionOf(ctx, v) == 0 {
		r.setVersion(ctx, v, 1)
	}
	if err := r.conn(ctx).Create(v).Error; err != nil {
		return r.uncertain(ctx, v, r.versionOf(ctx, v), nil, err)
	}
	return r.afterWrite(ctx, v, r.versionOf(ctx, v), nil)
}

// Update writes every column of v (but its primary key and creation time),
// and nothing else: loaded associations are left alone unless
// Options.SaveAssociations asks for GORM's upsert of them.
// For a versioned model it runs "... SET ..., version = version+1 WHERE pk =
// ? AND version = ?" and, if no row matched, returns ErrConflict and changes
// and invalidates nothing; on success v.Version is the new version. An
// unversioned row that does not exist is ErrNotFound.
func (r *Repository[T, ID]) Update(ctx context.Context, v *T) error {
	start := r.now()
	err := r.update(ctx, v, nil)
	r.observe(ctx, "update", 1, start, err)
	return err
}

// Updates writes the given columns of v's row (keys are column or field
// names; unknown ones are ErrUnknownColumn), with the same optimistic
// locking and invalidation as Update. v must carry the primary key (and,
// for a versioned model, the version it was read at); GORM assigns the new
// values to v.
func (r *Repository[T, ID]) Updates(ctx context.Context, v *T, fields map[string]any) error {
	start := r.now()
	var err error
	if len(fields) == 0 {
		err = fmt.Errorf("%w: no fields to update", ErrInvalidArgument)
	} else {
		err = r.update(ctx, v, fields)
	}
	r.observe(ctx, "updates", 1, start, err)
	return err
}

func (r *Repository[T, ID]) update(ctx context.Context, v *T, fields map[string]any) error {
	if v == nil {
		return ErrNilModel
	}
	if err := r.checkID(r.idOf(ctx, v)); err != nil {
		return err
	}
	var changed []string // unique columns whose value may have changed
	var assign any = v
	db := r.conn(ctx).Model(v)
	if fields != nil {
		m := make(map[string]any, len(fields)+1)
		for name, val := range fields {
			f := r.sch.LookUpField(name)
			if f == nil || f.DBName == "" {
				return fmt.Errorf("%w: %s has no column %q", ErrUnknownColumn, r.table, name)
			}
			if f.PrimaryKey || f == r.ver {
				return fmt.Errorf("%w: %s.%s is managed by the repository", ErrInvalidArgument, r.table, f.DBName)
			}
			m[f.DBName] = val
			if r.uniques[f.DBName] != nil {
				changed = append(changed, f.DBName)
			}
		}
		assign = m
	} else {
		db = db.Select("*").Omit(r.omit...)
		if !r.opts.SaveAssociations {
			db = db.Omit(clause.Associations)
		}
		for col := range r.uniques {
			changed = append(changed, col)
		}
	}
	old := r.versionOf(ctx, v)
	if r.ver != nil {
		db = db.Where(clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: r.ver.DBName}, Value: old})
		if m, ok := assign.(map[string]any); ok {
			m[r.ver.DBName] = old + 1
		}
		r.setVersion(ctx, v, old+1)
	}
	res := db.Updates(assign)
	if res.Error == nil && res.RowsAffected == 0 {
		res.Error = ErrConflict
		if r.ver == nil {
			res.Error = fmt.Errorf("%w: %s %v", ErrNotFound, r.table, r.idOf(ctx, v))
		}
	}
	if res.Error != nil {
		r.setVersion(ctx, v, old)
		if errors.Is(res.Error, ErrConflict) || errors.Is(res.Error, ErrNotFound) {
			return res.Error // nothing was written: nothing to invalidate
		}
		next := uint64(0)
		if r.ver != nil {
			next = old + 1
		}
		return r.uncertain(ctx, v, next, changed, res.Error)
	}
	if r.ver != nil {
		r.setVersion(ctx, v, old+1)
	}
	return r.afterWrite(ctx, v, r.versionOf(ctx, v), changed)
}

// Delete deletes v's row (soft-deletes it if the model has gorm.DeletedAt).
// For a versioned model the version must match (else ErrConflict), and the
// cache keeps a tombstone at version+1, so neither a reader that loaded the
// row before the delete nor one that will find it missing can bring it back
// — and a later re-insert, restarting at version 1, is never shadowed by a
// cached "not found" (it is served from the database until the tombstone
// expires).
func (r *Repository[T, ID]) Delete(ctx context.Context, v *T) error {
	start := r.now()
	err := r.delete(ctx, v)
	r.observe(ctx, "delete", 1, start, err)
	return err
}

func (r *Repository[T, ID]) delete(ctx context.Context, v *T) error {
	if v == nil {
		return ErrNilModel
	}
	id := r.idOf(ctx, v)
	if err := r.checkID(id); err != nil {
		return err
	}
	db := r.conn(ctx)
	ver := r.versionOf(ctx, v)
	if r.ver != nil {
		db = db.Where(clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: r.ver.DBName}, Value: ver})
	}
	res := db.Delete(v)
	if res.Error != nil {
		tomb := uint64(0)
		if r.ver != nil {
			tomb = ver + 1
		}
		return r.uncertain(ctx, v, tomb, nil, res.Error)
	}
	if res.RowsAffected == 0 {
		if r.ver != nil {
			return ErrConflict
		}
		return fmt.Errorf("%w: %s %v", ErrNotFound, r.table, id)
	}
	cols := make([]string, 0, len(r.uniques))
	for col := range r.uniques {
		cols = append(cols, col)
	}
	tomb := uint64(0)
	if r.ver != nil {
		tomb = ver + 1
	}
	return r.afterWrite(ctx, v, tomb, cols)
}

// Invalidate retires the cached row with primary key id and the unique-key
// mappings of its current values. Call it after committing a write made
// outside the repository (plain GORM, raw SQL, another program): the row's
// entries are retired whatever version they carry, so it works when the
// write left the version as it was, or a row was deleted and inserted
// again at a lower version. For a model with unique columns it reads the
// row (one query) to learn the values whose mappings to retire; otherwise
// it does not touch the database.
func (r *Repository[T, ID]) Invalidate(ctx context.Context, id ID) error {
	start := r.now()
	err := r.invalidateID(ctx, id)
	r.observe(ctx, "invalidate", 1, start, err)
	return err
}

func (r *Repository[T, ID]) invalidateID(ctx context.Context, id ID) error {
	if err := r.checkID(id); err != nil {
		return err
	}
	invs := []cache.Invalidation{{Key: r.key(id), Retire: true}, r.genInvalidation()}
	var readErr error
	if len(r.uniques) > 0 {
		v, err := r.load(ctx, id)
		switch {
		case err == nil:
			rv := reflect.ValueOf(v).Elem()
			for col, f := range r.uniques {
				invs = append(invs, cache.Invalidation{Key: r.uniqueKey(col, f.ReflectValueOf(ctx, rv).Interface())})
			}
		case !errors.Is(err, ErrNotFound):
			readErr = err // the row's own entries are retired all the same
		}
	}
	return errors.Join(r.queue(ctx, invs), readErr)
}

// uncertain handles a write that failed with err: the database may still
// have committed it (a COMMIT whose reply was lost, a connection reset
// mid-statement), and a committed write that is never invalidated would be
// served stale until the TTLs. So it is invalidated as if it had committed
// at version, which costs at most a miss if it did not. Inside a bound
// transaction the error aborts the transaction, so nothing is queued. err is
// returned.
func (r *Repository[T, ID]) uncertain(ctx context.Context, v *T, version uint64, cols []string, err error) error {
	if r.tx == nil {
		_ = r.afterWrite(ctx, v, version, cols)
	}
	return err
}

// afterWrite invalidates v's row at version (0: stamped) and the unique-key
// mappings of v's values in cols (nil: every unique column): at once, or
// when the bound transaction commits.
func (r *Repository[T, ID]) afterWrite(ctx context.Context, v *T, version uint64, cols []string) error {
	if r.tx == nil {
		failpoint.Hit(ctx, failpoint.AfterCommitBeforeInvalidate, "")
	}
	if cols == nil {
		for col := range r.uniques {
			cols = append(cols, col)
		}
	}
	invs := make([]cache.Invalidation, 0, 2+len(cols))
	invs = append(invs, cache.Invalidation{Key: r.key(r.idOf(ctx, v)), Version: version}, r.genInvalidation())
	rv := reflect.ValueOf(v).Elem()
	for _, col := range cols {
		val := r.uniques[col].ReflectValueOf(ctx, rv).Interface()
		invs = append(invs, cache.Invalidation{Key: r.uniqueKey(col, val)})
	}
	return r.queue(ctx, invs)
}

// genInvalidation moves the table's generation: cached queries of the
// table (which may list the row, or should now) are retired with it.
func (r *Repository[T, ID]) genInvalidation() cache.Invalidation {
	return cache.Invalidation{Key: bind.GenKey(r.ns)}
}

// queue applies invs now, or on the bound transaction's commit.
func (r *Repository[T, ID]) queue(ctx context.Context, invs []cache.Invalidation) error {
	if r.tx != nil {
		r.tx.st.add(r.c, invs)
		return nil
	}
	if err := r.c.InvalidateMany(ctx, invs); err != nil {
		return fmt.Errorf("gormcache: the write committed but its invalidation failed: %w", err)
	}
	return nil
}
