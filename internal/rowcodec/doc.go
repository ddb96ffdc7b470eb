// Package rowcodec caches GORM rows "disassembled": an entry holds each
// column exactly as the database driver returned it (one of the driver value
// kinds database/sql defines: nil, bool, int64, float64, string, []byte,
// time.Time), and a hit is reassembled through GORM's own schema, the way
// GORM's Scan builds a model from a result row: for every column, the
// field's scan value from its NewValuePool, database/sql's own conversion
// into it (convertAssign, the function sql.Rows.Scan calls), then the
// field's Set (which runs serializers and Scanner methods). The value rebuilt
// from an entry is therefore what GORM would build from the same row, for
// every field type GORM can load, whatever the struct's JSON tags,
// unexported state or process time zone.
//
// For the field shapes that dominate real models (integers, strings, bools,
// float64, []byte, time.Time, pointers to them, the sql.Null* types and
// gorm.DeletedAt) a Plan sets the field directly instead, with exactly the
// result of the generic path; a differential test holds the two paths
// equal for every driver value kind, NULL and out-of-range values included
// (the fast paths hand anything but their natural driver type to the
// generic path).
//
// An entry's layout is keyed by the fingerprint of the readable columns of
// the model (table, column names, soft-delete clause), not by the Go type:
// the driver values of a row do not depend on the struct that reads them, so
// a struct change that keeps its columns (a new `gorm:"-"` field, a method,
// another serializer on the same column) keeps hitting the entries written
// by the previous build.
package rowcodec
