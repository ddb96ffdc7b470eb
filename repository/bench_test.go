package repository

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/testenv"
)

// The repository benchmarks compare, in one run, the repository against
// the cache it sits on and against raw GORM on the same PostgreSQL table
// (make bench-cache). Rows are ~300 bytes.

const benchRows = 1000

var benchNS string // the namespace of the last benchEnv (benchmarks are sequential)

// coldReset empties both tiers (outside the timer): L1 flush, Redis keys deleted.
func coldReset(b *testing.B, e env) {
	b.StopTimer()
	e.c.FlushLocal()
	testenv.DeletePrefix(e.c.Redis(), benchNS+":")
	b.StartTimer()
}

func benchEnv(b *testing.B) (env, *Repository[account, int64]) {
	e := newEnv(b, func(o *cache.Options) { o.Namespace = testenv.Name(b); benchNS = o.Namespace })
	r := accounts(b, e)
	rows := make([]account, benchRows)
	for i := range rows {
		rows[i] = account{ID: int64(i + 1), Email: fmt.Sprintf("user%d@example.com", i+1), Name: strings.Repeat("n", 200), Balance: int64(i), Version: 1}
	}
	if err := e.db.CreateInBatches(rows, 500).Error; err != nil {
		b.Fatal(err)
	}
	return e, r
}

// BenchmarkRepoGetL1Hit is repo.Get served by L1; BenchmarkCacheGetL1Hit is
// the bare cache.Get underneath it, for the repository's overhead.
func BenchmarkRepoGetL1Hit(b *testing.B) {
	_, r := benchEnv(b)
	ctx := context.Background()
	const id = 777 // above the small integers Go boxes for free
	r.Get(ctx, id)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Get(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCacheGetL1Hit(b *testing.B) {
	e, r := benchEnv(b)
	ctx := context.Background()
	row, _ := r.load(ctx, 777)
	load := func(context.Context, string) (account, uint64, error) { return *row, 1, nil }
	cache.Get(ctx, e.c, "bench:777", load)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cache.Get(ctx, e.c, "bench:777", load); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRepoGetMiss is repo.Get on a key neither tier has (each
// iteration invalidates first, outside the timer); BenchmarkRawFirst is
// db.First of the same row.
func BenchmarkRepoGetMiss(b *testing.B) {
	e, r := benchEnv(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := int64(i%benchRows + 1)
		if id == 1 {
			coldReset(b, e)
		}
		if _, err := r.Get(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawFirst(b *testing.B) {
	e, _ := benchEnv(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var a account
		if err := e.db.WithContext(ctx).First(&a, int64(i%benchRows+1)).Error; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetMany100Cold reads 100 uncached rows in one GetMany;
// BenchmarkRawFirst100 reads them with 100 db.First calls.
func BenchmarkGetMany100Cold(b *testing.B) {
	e, r := benchEnv(b)
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ids := make([]int64, 100)
		for j := range ids {
			ids[j] = next.Add(1)%benchRows + 1
		}
		if ids[0] == 2 {
			coldReset(b, e)
		}
		if _, err := r.GetMany(ctx, ids); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawFirst100(b *testing.B) {
	e, _ := benchEnv(b)
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < 100; j++ {
			var a account
			if err := e.db.WithContext(ctx).First(&a, next.Add(1)%benchRows+1).Error; err != nil {
				b.Fatal(err)
			}
		}
	}
}
