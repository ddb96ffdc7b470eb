package cache

import (
	"context"
	"testing"
)

// TestReportServed checks that a read reports the tier that answered it:
// the loader, then L1; Redis once L1 lost the entry; per key for GetMany.
func TestReportServed(t *testing.T) {
	c, _ := newCache(t, singleInstance)
	src := newSource()
	for _, k := range []string{"a", "b", "c"} {
		src.put(k, sampleRow(1, 1))
	}
	ctx := context.Background()
	read := func(key string) Served {
		t.Helper()
		var s Served
		if _, err := Get(ctx, c, key, src.load, ReportServed(&s)); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := read("a"); s != (Served{Loaded: 1}) {
		t.Fatalf("first read: %+v", s)
	}
	c.Settle() // the Redis fill
	if s := read("a"); s != (Served{L1: 1}) {
		t.Fatalf("second read: %+v", s)
	}
	c.FlushLocal()
	if s := read("a"); s != (Served{L2: 1}) {
		t.Fatalf("read after an L1 flush: %+v", s)
	}
	var s Served
	if _, err := GetMany(ctx, c, []string{"a", "b", "c", "a", "missing"}, src.loadMany, ReportServed(&s)); err != nil {
		t.Fatal(err)
	}
	if s != (Served{L1: 1, Loaded: 3}) {
		t.Fatalf("GetMany: %+v", s)
	}
}
