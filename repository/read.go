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
// database (one query however many callers miss at once), then cached. The
// value is what db.First(&v, id) would return (AfterFind included). A
// missing or soft-deleted row is ErrNotFound. The returned value is the
// caller's own: mutating it never changes the cache.
func (r *Repository[T, ID]) Get(ctx context.Context, id ID) (*T, error) {
	start, s := r.now(), r.served()
	v, err := r.get(ctx, id, s)
	r.observeRead(ctx, "get", 1, start, err, s)
	return v, err
}

// get reads the row of id, counting the tiers that served it in s (if set).
func (r *Repository[T, ID]) get(ctx context.Context, id ID, s *cache.Served) (*T, error) {
	if err := r.checkID(id); err != nil {
		return nil, err
	}
	if r.tx != nil && !failpoint.Disabled(failpoint.GuardNoTxFill) {
		if s != nil {
			s.Loaded++
		}
		return r.load(ctx, id) // uncommitted rows never meet the shared tiers
	}
	v, err := cache.LoadEncoded(ctx, r.c, r.key(id), rowArg[T, ID]{r, id}, r.format, r.loadRow, r.readOpts(s)...)
	if err != nil {
		return nil, r.mapErr(err, id)
	}
	if err := r.afterFind(ctx, v); err != nil {
		return nil, err
	}
	return v, nil
}

// load reads the row from the database with GORM (in a transaction: GORM's
// own result, hooks included).
func (r *Repository[T, ID]) load(ctx context.Context, id ID) (*T, error) {
	v := new(T)
	if err := r.conn(ctx).Where(r.pkWhere(id)).Take(v).Error; err != nil {
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
// pass, one Redis round trip and one "WHERE pk IN (...)" for the rest. Each
// row is what db.Find would return for it. The slice has an element per id;
// ids that do not exist get nil and are listed in a *MissingError (for which
// errors.Is(err, ErrNotFound) holds), returned together with the rows that
// were found.
func (r *Repository[T, ID]) GetMany(ctx context.Context, ids []ID) ([]*T, error) {
	start, s := r.now(), r.served()
	out, err := r.getMany(ctx, ids, s)
	r.observeRead(ctx, "get_many", len(ids), start, err, s)
	return out, err
}

func (r *Repository[T, ID]) getMany(ctx context.Context, ids []ID, s *cache.Served) ([]*T, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	byKey := make(map[string]ID, len(ids))
	for i, id := range ids {
		if err := r.checkID(id); err != nil {
			return nil, err
		}
		keys[i] = r.key(id)
		byKey[keys[i]] = id
	}
	var found map[string]*T
	var err error
	if r.tx != nil {
		if s != nil {
			s.Loaded += len(byKey)
		}
		found, err = r.findMany(ctx, ids)
	} else {
		found, err = cache.GetManyEncoded(ctx, r.c, keys, r.format, func(ctx context.Context, missing []string) (map[string]cache.Encoded, error) {
			mids := make([]ID, len(missing))
			for i, k := range missing {
				mids[i] = byKey[k]
			}
			return r.loadPayloads(ctx, mids)
		}, r.readOpts(s)...)
		if err == nil {
			err = r.afterFindAll(ctx, found)
		}
	}
	if err != nil {
		return nil, err
	}
	out := make([]*T, len(ids))
	var handed map[*T]bool // with duplicate ids: each element is its own value
	if len(byKey) < len(ids) {
		handed = make(map[*T]bool, len(byKey))
	}
	var miss []ID
	for i, k := range keys {
		v, ok := found[k]
		if !ok {
			miss = append(miss, ids[i])
			continue
		}
		if handed[v] { // read again: a shallow copy would share slices, maps and pointees
			if v, err = r.get(ctx, ids[i], nil); err != nil { // counted once in s already
				return nil, err
			}
		} else if handed != nil {
			handed[v] = true
		}
		out[i] = v
	}
	if len(miss) > 0 {
		return out, &MissingError[ID]{Table: r.table, IDs: miss}
	}
	return out, nil
}

func (r *Repository[T, ID]) afterFindAll(ctx context.Context, rows map[string]*T) error {
	if !r.hooked {
		return nil
	}
	for _, v := range rows {
		if err := r.afterFind(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

// findMany reads rows by primary key with GORM in the bound transaction,
// keyed by cache key.
func (r *Repository[T, ID]) findMany(ctx context.Context, ids []ID) (map[string]*T, error) {
	var rows []T
	if err := r.conn(ctx).Where(r.pkIn(ids)).Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make(map[string]*T, len(rows))
	for i := range rows {
		out[r.key(r.idOf(ctx, &rows[i]))] = &rows[i]
	}
	return out, nil
}

// GetBy returns the row whose unique column col equals value, through two
// cached steps: value → primary key → row. The first step is checked against
// the row it leads to, so a mapping left behind when the row's value changed
// is detected and reloaded, never served. col must be the primary key (of a
// single-column key) or have a single-column unique constraint (or be listed
// in Options.UniqueColumns); any other column is ErrNotUnique, and so is a
// lookup that finds two rows.
func (r *Repository[T, ID]) GetBy(ctx context.Context, col string, value any) (*T, error) {
	start, s := r.now(), r.served()
	v, err := r.getBy(ctx, col, value, s)
	r.observeRead(ctx, "get_by", 1, start, err, s)
	return v, err
}

func (r *Repository[T, ID]) getBy(ctx context.Context, col string, value any, s *cache.Served) (*T, error) {
	f := r.sch.LookUpField(col)
	if f == nil || f.DBName == "" {
		return nil, fmt.Errorf("%w: %s has no column %q", ErrUnknownColumn, r.table, col)
	}
	if value == nil {
		return nil, fmt.Errorf("%w: nil value for %s.%s", ErrInvalidArgument, r.table, f.DBName)
	}
	if f.PrimaryKey && !r.keys.composite() {
		id, ok := value.(ID)
		if !ok {
			rv := reflect.ValueOf(value)
			if !rv.Type().ConvertibleTo(reflect.TypeFor[ID]()) {
				return nil, fmt.Errorf("%w: %T value for %s.%s, a %v", ErrInvalidArgument, value, r.table, f.DBName, reflect.TypeFor[ID]())
			}
			id = rv.Convert(reflect.TypeFor[ID]()).Interface().(ID)
		}
		return r.get(ctx, id, s)
	}
	if r.uniques[f.DBName] == nil {
		return nil, fmt.Errorf("%w: %s.%s (only the primary key and single-column unique constraints)", ErrNotUnique, r.table, f.DBName)
	}
	where := clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: f.DBName}, Value: value}
	if r.tx != nil {
		return r.takeUnique(ctx, r.conn(ctx), where, value, f.DBName)
	}
	key := r.uniqueKey(f.DBName, value)
	want := formatKey(value)
	for attempt := 0; attempt < 2; attempt++ {
		id, err := cache.Get(ctx, r.c, key, func(ctx context.Context, _ string) (ID, uint64, error) {
			id, err := r.lookupID(ctx, where, f.DBName)
			return id, 0, err // the mapping is unversioned: stamped on invalidation
		}, r.readOpt...)
		if err != nil {
			return nil, r.mapErr(err, value)
		}
		if s != nil {
			*s = cache.Served{} // the row's read is the one reported
		}
		v, err := r.get(ctx, id, s)
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
	if s != nil {
		*s = cache.Served{Loaded: 1}
	}
	return r.takeUnique(ctx, r.db.WithContext(ctx), where, value, f.DBName)
}

// lookupID returns the primary key of the row matching where, ErrNotFound if
// none does, and ErrNotUnique if two do.
func (r *Repository[T, ID]) lookupID(ctx context.Context, where clause.Expression, col string) (ID, error) {
	var zero ID
	var rows []T
	pks := make([]string, len(r.keys.pks))
	for i, f := range r.keys.pks {
		pks[i] = f.DBName
	}
	if err := r.db.WithContext(ctx).Select(pks).Where(where).Limit(2).Find(&rows).Error; err != nil {
		return zero, err
	}
	switch len(rows) {
	case 0:
		return zero, cache.ErrNotFound
	case 1:
		return r.idOf(ctx, &rows[0]), nil
	}
	return zero, fmt.Errorf("%w: two rows of %s have this %s", ErrNotUnique, r.table, col)
}

// takeUnique reads the row matching where with GORM, refusing a second match.
func (r *Repository[T, ID]) takeUnique(ctx context.Context, db *gorm.DB, where clause.Expression, value any, col string) (*T, error) {
	var rows []T
	if err := db.Where(where).Limit(2).Find(&rows).Error; err != nil {
		return nil, err
	}
	switch len(rows) {
	case 0:
		return nil, r.mapErr(gorm.ErrRecordNotFound, value)
	case 1:
		return &rows[0], nil
	}
	return nil, fmt.Errorf("%w: two rows of %s have this %s", ErrNotUnique, r.table, col)
}
