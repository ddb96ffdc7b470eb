package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/rowcodec"
)

// Rows are cached as the database returned them (package internal/rowcodec)
// and rebuilt through GORM's schema on every read, miss or hit; then the
// model's AfterFind hook runs, as GORM runs it after a query.

// afterFinder is GORM's AfterFind hook.
type afterFinder interface {
	AfterFind(tx *gorm.DB) error
}

// decodeRow rebuilds a row from its cached payload into v (zero).
func (r *Repository[T, ID]) decodeRow(ctx context.Context, b []byte, v *T) error {
	return r.rows.Decode(ctx, b, reflect.ValueOf(v))
}

// afterFind runs the model's AfterFind hook on v, with a new session on the
// repository's connection, as GORM does after a query (unless the
// connection skips hooks).
func (r *Repository[T, ID]) afterFind(ctx context.Context, v *T) error {
	if !r.hooked || r.db.Statement.SkipHooks {
		return nil
	}
	h, _ := any(v).(afterFinder)
	return h.AfterFind(r.db.WithContext(ctx).Session(&gorm.Session{NewDB: true}))
}

// rowQuery is a query of the model's rows through GORM's Row callbacks:
// "SELECT * FROM <table> WHERE <where>" with the model's query clauses
// (soft delete), as db.First and db.Find build it.
func (r *Repository[T, ID]) rowQuery(ctx context.Context, where any, limit int) (*sql.Rows, error) {
	q := r.conn(ctx).Model(new(T)).Where(where)
	if limit > 0 {
		q = q.Limit(limit)
	}
	return q.Rows()
}

// loadPayload reads the row with primary key id and returns its cache
// payload and version (cache.ErrNotFound if there is no such row).
func (r *Repository[T, ID]) loadPayload(ctx context.Context, id ID) ([]byte, uint64, error) {
	rows, err := r.rowQuery(ctx, r.pkWhere(id), 1)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, 0, err
		}
		return nil, 0, cache.ErrNotFound
	}
	m, err := r.mapping(rows)
	if err != nil {
		return nil, 0, err
	}
	p, _, ver, err := r.scanPayload(ctx, m, rows)
	if err != nil {
		return nil, 0, err
	}
	return p, ver, rows.Close()
}

// loadPayloads reads the rows with the given keys in one query, keyed by
// cache key.
func (r *Repository[T, ID]) loadPayloads(ctx context.Context, ids []ID) (map[string]cache.Encoded, error) {
	rows, err := r.rowQuery(ctx, r.pkIn(ids), 0)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]cache.Encoded, len(ids))
	var m rowcodec.Mapping
	for rows.Next() {
		if m == nil {
			if m, err = r.mapping(rows); err != nil {
				return nil, err
			}
		}
		p, id, ver, err := r.scanPayload(ctx, m, rows)
		if err != nil {
			return nil, err
		}
		out[r.key(id)] = cache.Encoded{Payload: p, Version: ver}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, rows.Close()
}

func (r *Repository[T, ID]) mapping(rows *sql.Rows) (rowcodec.Mapping, error) {
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	return r.rows.Map(cols), nil
}

// scanPayload encodes the current row and returns its key and version: read
// from the driver values where their column is an integer (or a string for a
// string key), else from the row rebuilt as a hit would be, so they are what
// GORM would read.
func (r *Repository[T, ID]) scanPayload(ctx context.Context, m rowcodec.Mapping, rows *sql.Rows) ([]byte, ID, uint64, error) {
	var id ID
	vals, err := r.rows.ScanRow(rows, m)
	if err != nil {
		return nil, id, 0, err
	}
	p, err := r.rows.AppendValues(make([]byte, 0, 256), m, vals)
	if errors.Is(err, rowcodec.ErrUnsupportedValue) {
		return nil, id, 0, fmt.Errorf("%w: %s: %w", ErrUnsupportedModel, r.table, err)
	} else if err != nil {
		return nil, id, 0, err
	}
	id, idOK := r.idFromValues(m, vals)
	ver, verOK := r.versionFromValues(m, vals)
	if !idOK || !verOK {
		v := new(T)
		if err := r.decodeRow(ctx, p, v); err != nil {
			return nil, id, 0, err
		}
		id, ver = r.idOf(ctx, v), r.versionOf(ctx, v)
	}
	return p, id, ver, nil
}

// idFromValues reads a single primary key of an integer or string type from
// the driver values, when that is exact.
func (r *Repository[T, ID]) idFromValues(m rowcodec.Mapping, vals []any) (ID, bool) {
	var id ID
	if r.keys.composite() {
		return id, false
	}
	f := r.keys.pks[0]
	if f.FieldType.PkgPath() != "" { // a named type: let GORM convert it
		return id, false
	}
	v, ok := r.rows.Value(m, vals, f)
	if !ok {
		return id, false
	}
	switch x := v.(type) {
	case int64:
		switch p := any(&id).(type) {
		case *int64:
			*p = x
		case *int:
			*p = int(x)
		case *uint64:
			if x < 0 {
				return id, false
			}
			*p = uint64(x)
		case *uint:
			if x < 0 {
				return id, false
			}
			*p = uint(x)
		default:
			return id, false
		}
		return id, true
	case string:
		if p, ok := any(&id).(*string); ok {
			*p = x
			return id, true
		}
	}
	return id, false
}

// versionFromValues reads the Version column from the driver values.
func (r *Repository[T, ID]) versionFromValues(m rowcodec.Mapping, vals []any) (uint64, bool) {
	if r.ver == nil {
		return 0, true
	}
	v, ok := r.rows.Value(m, vals, r.ver)
	if n, isInt := v.(int64); ok && isInt && n >= 0 {
		return uint64(n), true
	}
	return 0, false
}
