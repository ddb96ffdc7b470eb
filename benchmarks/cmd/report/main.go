// Command report turns the output of the side-by-side benchmarks (go test
// -bench, any -count) into the results section of benchmarks/README.md and a
// chart.
//
// It takes the median of every metric per benchmark and contestant, the
// ratio of each contestant's time to raw GORM's, and for gormcache the ratio
// to the fastest peer, then
//
//   - writes Markdown tables between the lines <!-- results:start --> and
//     <!-- results:end --> of the README (everything between them is
//     replaced), and
//   - draws one panel per workload (each contestant's speed-up over raw
//     GORM, labelled with its median time) into an SVG file with
//     gonum.org/v1/plot.
//
// Usage, from benchmarks/:
//
//	go test -run '^$' -bench . -benchmem -count=6 -timeout 60m . | tee results/bench.txt
//	go run ./cmd/report -readme README.md -svg results.svg results/bench.txt
//
// With no file arguments it reads standard input.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Markers delimit the generated part of the README.
const (
	markerStart = "<!-- results:start -->"
	markerEnd   = "<!-- results:end -->"
)

// Contestant names with a special role in the tables.
const (
	baseline     = "raw-gorm"
	ownPrefix    = "gormcache"
	headline     = "gormcache-full"
	timeUnit     = "ns/op"
	staleUnit    = "stale-reads"
	stampedeUnit = "dbq/stampede"
)

func main() {
	readme := flag.String("readme", "README.md", "Markdown file whose results section is replaced (empty: print the section to stdout)")
	svg := flag.String("svg", "results.svg", "chart to write, SVG or (by its .png extension) PNG; empty: none")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: report [-readme README.md] [-svg results.svg] [bench-output-file ...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*readme, *svg, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(readme, svg string, files []string) error {
	res := newResults()
	if len(files) == 0 {
		if err := res.parse(os.Stdin); err != nil {
			return err
		}
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		err = res.parse(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if len(res.workloads) == 0 {
		return errors.New("no benchmark results in the input")
	}
	section := res.markdown()
	if readme == "" {
		fmt.Print(section)
	} else {
		old, err := os.ReadFile(readme)
		if err != nil {
			return err
		}
		updated, err := replaceSection(old, section)
		if err != nil {
			return fmt.Errorf("%s: %w", readme, err)
		}
		if err := os.WriteFile(readme, updated, 0o644); err != nil {
			return err
		}
	}
	if svg != "" {
		f, err := os.Create(svg)
		if err != nil {
			return err
		}
		if err := res.chart(f, strings.HasSuffix(svg, ".png")); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	return nil
}

// results holds every sample of every metric, by workload and contestant,
// in the order they first appeared.
type results struct {
	workloads   []string
	contestants []string
	samples     map[string]map[string]map[string][]float64 // workload → contestant → unit → values
	units       map[string][]string                        // workload → units in order of appearance
	cpu         string
}

func newResults() *results {
	return &results{samples: map[string]map[string]map[string][]float64{}, units: map[string][]string{}}
}

// benchLine matches "BenchmarkWorkload/contestant-2   	 1234	 5678 ns/op	 ...".
var benchLine = regexp.MustCompile(`^Benchmark([^/\s]+)/(\S+?)(?:-\d+)?\s+(\d+)\s+(.+)$`)

// parse adds the results in r.
func (res *results) parse(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if cpu, ok := strings.CutPrefix(line, "cpu: "); ok {
			res.cpu = strings.TrimSpace(cpu)
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		workload, contestant := m[1], m[2]
		fields := strings.Fields(m[4])
		if len(fields)%2 != 0 {
			return fmt.Errorf("malformed result line: %q", line)
		}
		byContestant := res.samples[workload]
		if byContestant == nil {
			byContestant = map[string]map[string][]float64{}
			res.samples[workload] = byContestant
			res.workloads = append(res.workloads, workload)
		}
		byUnit := byContestant[contestant]
		if byUnit == nil {
			byUnit = map[string][]float64{}
			byContestant[contestant] = byUnit
		}
		if !slices.Contains(res.contestants, contestant) {
			res.contestants = append(res.contestants, contestant)
		}
		for i := 0; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return fmt.Errorf("malformed value %q in %q", fields[i], line)
			}
			unit := fields[i+1]
			byUnit[unit] = append(byUnit[unit], v)
			if !slices.Contains(res.units[workload], unit) {
				res.units[workload] = append(res.units[workload], unit)
			}
		}
	}
	return sc.Err()
}

// median returns the median of xs (NaN for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// value returns the median of unit for a workload and contestant.
func (res *results) value(workload, contestant, unit string) (float64, bool) {
	xs := res.samples[workload][contestant][unit]
	if len(xs) == 0 {
		return 0, false
	}
	return median(xs), true
}

// count returns the number of samples of a workload and contestant.
func (res *results) count(workload, contestant string) int {
	return len(res.samples[workload][contestant][timeUnit])
}

// isPeer reports whether name is a peer library (neither raw GORM nor gormcache).
func isPeer(name string) bool { return name != baseline && !strings.HasPrefix(name, ownPrefix) }

// bestPeer returns the peer with the lowest median time in a workload.
func (res *results) bestPeer(workload string) (string, float64, bool) {
	best, bestNS, ok := "", math.Inf(1), false
	for _, c := range res.contestants {
		if !isPeer(c) {
			continue
		}
		if ns, found := res.value(workload, c, timeUnit); found && ns < bestNS {
			best, bestNS, ok = c, ns, true
		}
	}
	return best, bestNS, ok
}

// bestFreshPeer returns the fastest peer in a workload that served no stale
// read in any run (ok is false if the workload does not count them).
func (res *results) bestFreshPeer(workload string) (string, float64, bool) {
	best, bestNS, ok := "", math.Inf(1), false
	for _, c := range res.contestants {
		xs := res.samples[workload][c][staleUnit]
		if !isPeer(c) || len(xs) == 0 || slices.Max(xs) > 0 {
			continue
		}
		if ns, found := res.value(workload, c, timeUnit); found && ns < bestNS {
			best, bestNS, ok = c, ns, true
		}
	}
	return best, bestNS, ok
}

// fmtDuration renders nanoseconds with three significant digits.
func fmtDuration(ns float64) string {
	switch {
	case ns >= 1e9:
		return sig3(ns/1e9) + " s"
	case ns >= 1e6:
		return sig3(ns/1e6) + " ms"
	case ns >= 1e3:
		return sig3(ns/1e3) + " µs"
	default:
		return sig3(ns) + " ns"
	}
}

func sig3(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// fmtNum renders a metric value compactly.
func fmtNum(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func fmtRatio(r float64) string {
	if r >= 10 {
		return strconv.FormatFloat(r, 'f', 0, 64) + "×"
	}
	return strconv.FormatFloat(r, 'f', 2, 64) + "×"
}

// markdown renders the results section: a summary, the targets, and one
// table per workload.
func (res *results) markdown() string {
	var b strings.Builder
	runs := 0
	for _, w := range res.workloads {
		for _, c := range res.contestants {
			runs = max(runs, res.count(w, c))
		}
	}
	fmt.Fprintf(&b, "Generated by `go run ./cmd/report` from %d run(s) per benchmark (medians)", runs)
	if res.cpu != "" {
		fmt.Fprintf(&b, "; cpu: %s", res.cpu)
	}
	b.WriteString(".\n\n")

	// Summary: contestants × workloads, median time and speed-up over raw GORM.
	b.WriteString("### Summary: median time per operation (speed-up over raw GORM)\n\n| contestant |")
	for _, w := range res.workloads {
		fmt.Fprintf(&b, " %s |", w)
	}
	b.WriteString("\n|---|")
	for range res.workloads {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, c := range res.contestants {
		fmt.Fprintf(&b, "| %s |", c)
		for _, w := range res.workloads {
			ns, ok := res.value(w, c, timeUnit)
			if !ok {
				b.WriteString(" — |")
				continue
			}
			cell := fmtDuration(ns)
			if raw, ok := res.value(w, baseline, timeUnit); ok && c != baseline {
				cell += " (" + fmtRatio(raw/ns) + ")"
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n— : the library has no such operation (GetMany) or the workload does not apply.\n\n")

	res.targets(&b)

	for _, w := range res.workloads {
		fmt.Fprintf(&b, "### %s\n\n| contestant | time/op | vs raw GORM | vs best peer |", w)
		var extra []string
		for _, u := range res.units[w] {
			if u != timeUnit {
				extra = append(extra, u)
			}
		}
		for _, u := range extra {
			fmt.Fprintf(&b, " %s |", u)
		}
		b.WriteString(" runs |\n|---|---:|---:|---:|")
		for range extra {
			b.WriteString("---:|")
		}
		b.WriteString("---:|\n")
		peer, peerNS, havePeer := res.bestPeer(w)
		raw, haveRaw := res.value(w, baseline, timeUnit)
		for _, c := range res.contestants {
			ns, ok := res.value(w, c, timeUnit)
			if !ok {
				continue
			}
			vsRaw, vsPeer := "", ""
			if haveRaw && c != baseline {
				vsRaw = fmtRatio(raw / ns)
			}
			if havePeer && strings.HasPrefix(c, ownPrefix) {
				vsPeer = fmtRatio(peerNS/ns) + " (" + peer + ")"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |", c, fmtDuration(ns), vsRaw, vsPeer)
			for _, u := range extra {
				if v, ok := res.value(w, c, u); ok {
					fmt.Fprintf(&b, " %s |", fmtNum(v))
				} else {
					b.WriteString(" |")
				}
			}
			fmt.Fprintf(&b, " %d |\n", res.count(w, c))
		}
		b.WriteString("\n")
	}
	b.WriteString("![speed-up over raw GORM per workload and contestant, labelled with the median time](results.svg)\n")
	return b.String()
}

// targets writes the project's targets as measured: each row is computed
// from the medians, never asserted.
func (res *results) targets(b *strings.Builder) {
	type row struct{ target, measured, verdict string }
	var rows []row
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
	}
	// Ahead of every peer on every latency row, ≥ 1.2× on L1 hits and mixed;
	// mixed throughput ≥ 30× raw GORM. For every gormcache configuration
	// with the in-process tier (the msgpack headline and the default codec).
	var full []string
	for _, c := range res.contestants {
		if strings.HasPrefix(c, headline) {
			full = append(full, c)
		}
	}
	for _, w := range res.workloads {
		peer, peerNS, havePeer := res.bestPeer(w)
		for _, c := range full {
			ns, ok := res.value(w, c, timeUnit)
			if !ok || !havePeer {
				continue
			}
			need := 1.0
			if strings.HasPrefix(w, "L1Hit") || strings.HasPrefix(w, "Mixed") {
				need = 1.2
			}
			r := peerNS / ns
			rows = append(rows, row{
				target:   fmt.Sprintf("%s: %s ≥ %s the best peer", w, c, fmtRatio(need)),
				measured: fmt.Sprintf("%s (best peer: %s)", fmtRatio(r), peer),
				verdict:  mark(r >= need),
			})
			if fresh, freshNS, ok := res.bestFreshPeer(w); ok && fresh != peer {
				r := freshNS / ns
				rows = append(rows, row{
					target:   fmt.Sprintf("%s: %s ≥ %s the best peer that served no stale read", w, c, fmtRatio(need)),
					measured: fmt.Sprintf("%s (%s)", fmtRatio(r), fresh),
					verdict:  mark(r >= need),
				})
			}
		}
	}
	for _, w := range res.workloads {
		if !strings.HasPrefix(w, "Mixed") {
			continue
		}
		raw, haveRaw := res.value(w, baseline, timeUnit)
		for _, c := range full {
			if ns, ok := res.value(w, c, timeUnit); ok && haveRaw {
				r := raw / ns
				rows = append(rows, row{fmt.Sprintf("%s: %s throughput ≥ 30× raw GORM", w, c), fmtRatio(r), mark(r >= 30)})
			}
		}
	}
	for _, c := range res.contestants {
		if !strings.HasPrefix(c, ownPrefix) {
			continue
		}
		for _, w := range res.workloads {
			if v, ok := res.value(w, c, stampedeUnit); ok {
				rows = append(rows, row{fmt.Sprintf("%s: %s makes 1 query per stampede", w, c), fmtNum(v), mark(v <= 1)})
			}
		}
	}
	for _, c := range res.contestants {
		if !strings.HasPrefix(c, ownPrefix) {
			continue
		}
		for _, w := range res.workloads {
			// The worst run counts here, not the median.
			if xs := res.samples[w][c][staleUnit]; len(xs) > 0 {
				worst := slices.Max(xs)
				rows = append(rows, row{fmt.Sprintf("%s: %s serves 0 stale reads (worst run)", w, c), fmtNum(worst), mark(worst == 0)})
			}
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("### Targets, as measured\n\n| target | measured | |\n|---|---:|---|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s | %s | %s |\n", r.target, r.measured, r.verdict)
	}
	b.WriteString("\n")
}

// replaceSection replaces what lies between the markers of readme.
func replaceSection(readme []byte, section string) ([]byte, error) {
	start := bytes.Index(readme, []byte(markerStart))
	end := bytes.Index(readme, []byte(markerEnd))
	if start < 0 || end < 0 || end < start {
		return nil, fmt.Errorf("no %s … %s section", markerStart, markerEnd)
	}
	var out bytes.Buffer
	out.Write(readme[:start+len(markerStart)])
	out.WriteString("\n")
	out.WriteString(section)
	out.Write(readme[end:])
	return out.Bytes(), nil
}

// chart draws one panel per workload: each contestant's speed-up over raw
// GORM (raw GORM's median time divided by its own; raw GORM is 1) as a
// horizontal bar labelled with its median time, as SVG (or PNG). Workloads
// without raw GORM show the median time instead.
func (res *results) chart(w io.Writer, png bool) error {
	const cols = 2
	rows := (len(res.workloads) + cols - 1) / cols
	plots := make([][]*plot.Plot, rows)
	for r := range plots {
		plots[r] = make([]*plot.Plot, cols)
	}
	for i, wl := range res.workloads {
		raw, haveRaw := res.value(wl, baseline, timeUnit)
		var names, labels []string
		var vals plotter.Values
		var at plotter.XYs
		// Bars are drawn bottom-up: reverse so the first contestant is on top.
		for _, c := range slices.Backward(res.contestants) {
			ns, ok := res.value(wl, c, timeUnit)
			if !ok {
				continue
			}
			v := ns / 1e3
			if haveRaw {
				v = raw / ns
			}
			at = append(at, plotter.XY{X: v, Y: float64(len(vals))})
			vals = append(vals, v)
			names = append(names, c)
			labels = append(labels, " "+fmtDuration(ns))
		}
		p := plot.New()
		p.Title.Text = wl
		p.X.Label.Text = "speed-up over raw GORM (×)"
		if !haveRaw {
			p.X.Label.Text = "median time per operation (µs)"
		}
		p.X.Min = 0
		p.X.Max = slices.Max(vals) * 1.35 // room for the labels
		bars, err := plotter.NewBarChart(vals, vg.Points(10))
		if err != nil {
			return fmt.Errorf("%s: %w", wl, err)
		}
		bars.Horizontal = true
		bars.LineStyle.Width = 0
		bars.Color = barColor
		text, err := plotter.NewLabels(plotter.XYLabels{XYs: at, Labels: labels})
		if err != nil {
			return fmt.Errorf("%s: %w", wl, err)
		}
		for k := range text.TextStyle {
			text.TextStyle[k].Font.Size = vg.Points(7)
			text.TextStyle[k].YAlign = draw.YCenter
		}
		p.Add(bars, text)
		p.NominalY(names...)
		plots[i/cols][i%cols] = p
	}
	width := vg.Length(cols) * 9.5 * vg.Centimeter
	height := vg.Length(rows) * 7 * vg.Centimeter
	var canvas interface {
		vg.CanvasSizer
		io.WriterTo
	}
	if png {
		canvas = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(110))}
	} else {
		canvas = vgsvg.New(width, height)
	}
	dc := draw.New(canvas)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Centimeter, PadY: vg.Centimeter,
		PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	canvases := plot.Align(plots, tiles, dc)
	for r := range plots {
		for c := range plots[r] {
			if plots[r][c] != nil {
				plots[r][c].Draw(canvases[r][c])
			}
		}
	}
	_, err := canvas.WriteTo(w)
	return err
}

// barColor is the fill of every bar.
var barColor = color.RGBA{R: 0x44, G: 0x77, B: 0xaa, A: 0xff}
