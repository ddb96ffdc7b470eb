// Package fidelity is a test suite, in a module of its own so that its test
// dependencies (uuid, gorm.io/datatypes, shopspring/decimal) stay out of the
// library's go.mod, that proves gormcache's repository returns what plain
// GORM returns: for model shapes covering the field types GORM can load
// (soft delete, UUID, string and composite keys, integer and float extremes
// with NaN and signed zeros, times in several zones, pre-1900 and zero,
// timestamp and date columns, the sql.Null types, bytea, unicode, named
// types, Scanner/Valuer types with exported or only unexported state, JSON
// serializers, datatypes JSON, decimals, embedded structs, hooks, unexported
// and `json:"-"` fields, associations and rows too large for L1), every row
// read through Get, GetMany and GetBy on a cache miss, an L1 hit and a Redis
// hit, with both cache codecs and in two process time zones, is
// reflect.DeepEqual to what db.First or db.Find returns for it (NaN equal to
// the same NaN), soft-deleted rows are not found on every path; that Update
// writes back a row read from the cache without changing any column but the
// one the caller changed (nor the associations it carries); and that
// mutating a returned value, however deeply, never changes what the cache
// serves next. The tests need the PostgreSQL and Redis that `make test`
// starts (GORMCACHE_PG_DSN, GORMCACHE_REDIS_ADDR) and skip without them.
package fidelity
