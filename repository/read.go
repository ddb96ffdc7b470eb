package repository

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/failpoint"
)

// Get returns the row with primary key id: from the cache, or from the
// database (one query however many callers miss at once), then cached.
// A missing or soft-deleted row is ErrNotFound. The returned value is the
// caller's own: mutating it never changes the cache.
func (r *Repository[T, ID]) Get(ctx context.Context, id ID) (*T, error) {
	start := r.now()
	v, err := r.get(ctx, id)
	r.observe(ctx, "get", 1, start, err)
	return v, err
}

func (r *Repository[T, ID]) get(ctx context.Context, id ID) (*T, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if r.tx != nil && !failpoint.Disabled(failpoint.GuardNoTxFill) {
		return r.load(ctx, id) // uncommitted rows never meet the shared tiers
	}
	v, err := cache.Load(ctx, r.c, r.key(id), rowArg[T, ID]{r, id}, r.loadRow, r.readOpt...)
	if err != nil {
		return nil, r.mapErr(err, id)
	}
	return v, nil
}

// load reads the row from the database.
func (r *Repository[T, ID]) load(ctx context.Context, id ID) (*T, error) {
	v := new(T)
	if err := r.conn(ctx).Where(r.pkEq(id)).Take(v).Error; err != nil {
		return nil, r.mapErr(err, id)
	}
	return v, nil
}

// mapErr gives not-found errors the package's sentinel and the id.
func (r *Repository[T, ID]) mapErr(err error, id any) error {
	if errors.Is(err, gorm.ErrRecordNotFound) || errors.Is(err, cache.ErrNotFound) {
		return fmt.Errorf("%w: %s %v", ErrNotFound, r.table, id)
	}
	return err
}

// GetMany returns the rows with the given ids in the caller's order: one L1
// pass, one Redis round trip and one "WHERE pk IN (...)" for the rest. The
// slice has an element per id; ids that do not exist get nil and are listed
// in a *MissingError (for which errors.Is(err, ErrNotFound) holds), returned
// together with the rows that were found.
func (r *Repository[T, ID]) GetMany(ctx context.Context, ids []ID) ([]*T, error) {
	start := r.now()
	out, err := r.getMany(ctx, ids)
	r.observe(ctx, "get_many", len(ids), start, err)
	return out, err
}

func (r *Repository[T, ID]) getMany(ctx context.Context, ids []ID) ([]*T, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	byKey := make(map[string]ID, len(ids))
	for i, id := range ids {
		if err := checkID(id); err != nil {
			return nil, err
		}
		keys[i] = r.key(id)
		byKey[keys[i]] = id
	}
	var found map[string]T
	if r.tx != nil {
		rows, err := r.loadMany(ctx, ids)
		if err != nil {
			return nil, err
		}
		found = make(map[string]T, len(rows))
		for k, v := range rows {
			found[k] = v.Value
		}
	} else {
		var err error
		found, err = cache.GetMany(ctx, r.c, keys, func(ctx context.Context, missing []string) (map[string]cache.Versioned[T], error) {
			mids := make([]ID, len(missing))
			for i, k := range missing {
				mids[i] = byKey[k]
			}
			return r.loadMany(ctx, mids)
		}, r.readOpt...)
		if err != nil {
			return nil, err
		}
	}
	out := make([]*T, len(ids))
	var miss []ID
	for i, k := range keys {
		if v, ok := found[k]; ok {
			out[i] = &v
		} else {
			miss = append(miss, ids[i])
		}
	}
	if len(miss) > 0 {
		return out, &MissingError[ID]{Table: r.table, IDs: miss}
	}
	return out, nil
}

// loadMany reads rows by primary key in one query, keyed by cache key.
func (r *Repository[T, ID]) loadMany(ctx context.Context, ids []ID) (map[string]cache.Versioned[T], error) {
	vals := make([]any, len(ids))
	for i, id := range ids {
		vals[i] = id
	}
	var rows []T
	col := clause.Column{Table: clause.CurrentTable, Name: r.pk.DBName}
	if err := r.conn(ctx).Where(clause.IN{Column: col, Values: vals}).Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make(map[string]cache.Versioned[T], len(rows))
	for i := range rows {
		out[r.key(r.idOf(ctx, &rows[i]))] = cache.Versioned[T]{Value: rows[i], Version: r.versionOf(ctx, &rows[i])}
	}
	return out, nil
}

// GetBy returns the row whose unique column col equals value, through two
// cached steps: value → primary key → row. The first step is checked against
// the row it leads to, so a mapping left behind when the row's value changed
// is detected and reloaded, never served.
func (r *Repository[T, ID]) GetBy(ctx context.Context, col string, value any) (*T, error) {
	start := r.now()
	v, err := r.getBy(ctx, col, value)
	r.observe(ctx, "get_by", 1, start, err)
	return v, err
}

func (r *Repository[T, ID]) getBy(ctx context.Context, col string, value any) (*T, error) {
	f := r.sch.LookUpField(col)
	if f == nil || f.DBName == "" {
		return nil, fmt.Errorf("%w: %s has no column %q", ErrUnknownColumn, r.table, col)
	}
	if r.uniques[f.DBName] == nil {
		return nil, fmt.Errorf("%w: %s.%s", ErrNotUnique, r.table, f.DBName)
	}
	if value == nil {
		return nil, fmt.Errorf("%w: nil value for %s.%s", ErrInvalidArgument, r.table, f.DBName)
	}
	where := clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: f.DBName}, Value: value}
	if r.tx != nil {
		v := new(T)
		if err := r.conn(ctx).Where(where).Take(v).Error; err != nil {
			return nil, r.mapErr(err, value)
		}
		return v, nil
	}
	key := r.uniqueKey(f.DBName, value)
	want := formatKey(value)
	for attempt := 0; attempt < 2; attempt++ {
		id, err := cache.Get(ctx, r.c, key, func(ctx context.Context, _ string) (ID, uint64, error) {
			v := new(T)
			if err := r.db.WithContext(ctx).Where(where).Take(v).Error; err != nil {
				var zero ID
				return zero, 0, err
			}
			return r.idOf(ctx, v), 0, nil // the mapping is unversioned: stamped on invalidation
		}, r.readOpt...)
		if err != nil {
			return nil, r.mapErr(err, value)
		}
		v, err := r.get(ctx, id)
		if err == nil && formatKey(f.ReflectValueOf(ctx, reflect.ValueOf(v).Elem()).Interface()) == want {
			return v, nil
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		// The mapping is stale (the row changed its value or vanished):
		// retire it and resolve again.
		if err := r.c.Invalidate(ctx, key, 0); err != nil {
			return nil, err
		}
	}
	// Two stale mappings in a row: concurrent writes keep moving the value.
	// Answer from the database without caching.
	v := new(T)
	if err := r.db.WithContext(ctx).Where(where).Take(v).Error; err != nil {
		return nil, r.mapErr(err, value)
	}
	return v, nil
}
