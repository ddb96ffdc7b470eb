package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/gormcache/gormcache/benchmarks
cpu: AMD EPYC
BenchmarkL1Hit/raw-gorm-2         	    2000	    100000 ns/op	      1000 dbq/1000reads	         0 redis-rtt/op	    5700 B/op	      83 allocs/op
BenchmarkL1Hit/raw-gorm-2         	    2000	    120000 ns/op	      1000 dbq/1000reads	         0 redis-rtt/op	    5700 B/op	      83 allocs/op
BenchmarkL1Hit/raw-gorm-2         	    2000	    110000 ns/op	      1000 dbq/1000reads	         0 redis-rtt/op	    5700 B/op	      83 allocs/op
BenchmarkL1Hit/gormcache-full-2   	    2000	      1000 ns/op	         0 dbq/1000reads	         0 redis-rtt/op	     824 B/op	       9 allocs/op
BenchmarkL1Hit/gormcache-full-2   	    2000	      3000 ns/op	         0 dbq/1000reads	         0 redis-rtt/op	     824 B/op	       9 allocs/op
BenchmarkL1Hit/jetcache-go-2      	    2000	      2500 ns/op	         0 dbq/1000reads	         0 redis-rtt/op	    1480 B/op	      20 allocs/op
--- BENCH: BenchmarkL1Hit/jetcache-go-2
    bench_test.go:1: a log line
BenchmarkMixed/raw-gorm-2         	   15736	     85848 ns/op	         0 conflicts	      1000 dbq/1000reads	         0 stale-reads	    6242 B/op	      89 allocs/op
BenchmarkMixed/gormcache-full-2   	   18051	      8584 ns/op	       951.0 conflicts	        44.94 dbq/1000reads	         0 stale-reads	    2557 B/op	      30 allocs/op
BenchmarkMixed/gormcache-full-2   	   18051	      8584 ns/op	       951.0 conflicts	        44.94 dbq/1000reads	         2 stale-reads	    2557 B/op	      30 allocs/op
BenchmarkMixed/gocache-2          	   34698	     33234 ns/op	         0 conflicts	         9.742 dbq/1000reads	       479.0 stale-reads	    1728 B/op	      24 allocs/op
BenchmarkStampede/gormcache-full-2	       5	   3521949 ns/op	         1.000 dbq/1000reads	         1.000 dbq/stampede	    612916 B/op	   11174 allocs/op
PASS
`

func parsed(t *testing.T) *results {
	t.Helper()
	res := newResults()
	if err := res.parse(strings.NewReader(sample)); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestParseAndMedians(t *testing.T) {
	res := parsed(t)
	if got, want := strings.Join(res.workloads, ","), "L1Hit,Mixed,Stampede"; got != want {
		t.Fatalf("workloads = %s, want %s", got, want)
	}
	if got, want := strings.Join(res.contestants, ","), "raw-gorm,gormcache-full,jetcache-go,gocache"; got != want {
		t.Fatalf("contestants = %s, want %s", got, want)
	}
	for _, tc := range []struct {
		workload, contestant, unit string
		want                       float64
	}{
		{"L1Hit", "raw-gorm", "ns/op", 110000}, // odd count: the middle
		{"L1Hit", "gormcache-full", "ns/op", 2000},
		{"L1Hit", "jetcache-go", "B/op", 1480},
		{"Mixed", "gocache", "stale-reads", 479},
		{"Mixed", "gormcache-full", "stale-reads", 1},
		{"Stampede", "gormcache-full", "dbq/stampede", 1},
	} {
		if got, ok := res.value(tc.workload, tc.contestant, tc.unit); !ok || got != tc.want {
			t.Errorf("%s/%s %s = %v (%v), want %v", tc.workload, tc.contestant, tc.unit, got, ok, tc.want)
		}
	}
	if res.cpu != "AMD EPYC" {
		t.Errorf("cpu = %q", res.cpu)
	}
}

func TestMarkdown(t *testing.T) {
	md := parsed(t).markdown()
	for _, want := range []string{
		"| gormcache-full | 2.00 µs (55×) |", // summary: 110000/2000
		"| L1Hit: gormcache-full ≥ 1.20× the best peer | 1.25× (best peer: jetcache-go) | met |",
		"| Mixed: gormcache-full throughput ≥ 30× raw GORM | 10× | **not met** |",
		"| Mixed: gormcache-full serves 0 stale reads (worst run) | 2 | **not met** |",
		"| Stampede: gormcache-full makes 1 query per stampede | 1 | met |",
		"| gocache | 33.2 µs | 2.58× |  | 0 | 9.74 | 479 | 1728 | 24 | 1 |",
		"![speed-up over raw GORM",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestReplaceSection(t *testing.T) {
	in := []byte("# Title\n\n" + markerStart + "\nold\n" + markerEnd + "\n\nafter\n")
	out, err := replaceSection(in, "new\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "# Title\n\n" + markerStart + "\nnew\n" + markerEnd + "\n\nafter\n"; string(out) != want {
		t.Fatalf("got %q, want %q", out, want)
	}
	if _, err := replaceSection([]byte("no markers"), "x"); err == nil {
		t.Fatal("no error without markers")
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	bench := filepath.Join(dir, "bench.txt")
	readme := filepath.Join(dir, "README.md")
	svg := filepath.Join(dir, "results.svg")
	if err := os.WriteFile(bench, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(readme, []byte(markerStart+"\n"+markerEnd+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(readme, svg, []string{bench}); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(readme)
	if !bytes.Contains(md, []byte("### Summary")) {
		t.Fatalf("README not filled:\n%s", md)
	}
	img, _ := os.ReadFile(svg)
	if !bytes.HasPrefix(bytes.TrimSpace(img), []byte("<?xml")) || !bytes.Contains(img, []byte("L1Hit")) {
		t.Fatalf("not an SVG with the workloads: %.200s", img)
	}
}
