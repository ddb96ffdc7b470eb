// Package benchmarks is the side-by-side benchmark suite of gormcache: one
// `go test -bench` run measures gormcache, raw GORM and peer caching
// libraries on the same PostgreSQL table, the same Redis and the same
// workloads, and counts the database queries each makes and the stale rows
// each serves.
//
// It is a module of its own so that the peers' dependencies never reach the
// library's users. Everything lives in _test.go files; cmd/report turns the
// output into the README's results table and chart. See README.md.
package benchmarks
