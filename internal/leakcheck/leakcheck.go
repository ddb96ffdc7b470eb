// Package leakcheck fails a test binary that leaves goroutines running.
//
// It is what the library's TestMains call, with the standard library only:
// after the tests pass, it polls the goroutine dump (runtime.Stack of every
// goroutine) for a few seconds, until only the goroutines it always ignores
// remain, and otherwise reports the ones left with their stacks.
//
// Always ignored: the goroutine doing the check; the testing package's own
// goroutines blocked in a channel receive (RunTests, (*T).Run, (*T).Parallel
// and the fuzzing drivers); goroutines in a system call that end in
// runtime.goexit (cgo's background threads); os/signal's receiver
// (signal_recv, loop, ensureSigM); and the runtime's trace reader. Runtime
// system goroutines (the garbage collector, finalizers) are not in the dump.
package leakcheck

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// ErrLeak is returned by Find when goroutines remain after the wait.
var ErrLeak = errors.New("gormcache: goroutines left running")

// DefaultWait is how long VerifyTestMain waits for goroutines to end.
const DefaultWait = 5 * time.Second

// TestingM is the part of *testing.M that VerifyTestMain uses.
type TestingM interface {
	Run() int
}

// VerifyTestMain runs the tests of m and exits with their code, or with 1
// when they passed but goroutines are still running DefaultWait later (their
// stacks are written to standard error).
func VerifyTestMain(m TestingM) {
	os.Exit(Run(m, os.Stderr, DefaultWait))
}

// Run runs the tests of m and returns the exit code VerifyTestMain exits
// with: the tests' code, or 1 when they passed and Find reports a leak
// within wait (written to w).
func Run(m TestingM, w io.Writer, wait time.Duration) int {
	code := m.Run()
	if code != 0 {
		return code
	}
	if err := Find(wait); err != nil {
		fmt.Fprintf(w, "leakcheck: errors on a successful test run: %v\n", err)
		return 1
	}
	return 0
}

// Find polls the running goroutines until only ignored ones remain, and
// returns nil then; after wait it returns ErrLeak listing the others with
// their stacks.
func Find(wait time.Duration) error {
	self := current()
	deadline := time.Now().Add(wait)
	for sleep := time.Microsecond; ; sleep = min(2*sleep, 100*time.Millisecond) {
		left := leaked(self)
		if len(left) == 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			var b strings.Builder
			for _, g := range left {
				fmt.Fprintf(&b, "\ngoroutine %d in state %s, with %s on top of the stack:\n%s", g.id, g.state, g.first, g.full)
			}
			return fmt.Errorf("%w: %d left:%s", ErrLeak, len(left), b.String())
		}
		time.Sleep(sleep)
	}
}

// leaked returns the goroutines other than self that are not ignored.
func leaked(self int) []goroutine {
	var out []goroutine
	for _, g := range parse(dump(true)) {
		if g.id != self && !ignored(g) {
			out = append(out, g)
		}
	}
	return out
}

// current is the id of the calling goroutine.
func current() int {
	gs := parse(dump(false))
	if len(gs) == 0 {
		return -1
	}
	return gs[0].id
}

// dump is runtime.Stack of the calling goroutine, or of every goroutine,
// in a buffer large enough for all of it.
func dump(all bool) []byte {
	for size := 64 << 10; ; size *= 2 {
		buf := make([]byte, size)
		if n := runtime.Stack(buf, all); n < size {
			return buf[:n]
		}
	}
}

// goroutine is one goroutine of a dump.
type goroutine struct {
	id    int
	state string              // "chan receive", "select", "syscall", ...
	first string              // the function at the top of the stack
	funcs map[string]struct{} // every function of the stack, not its creator
	full  string              // the stack as dumped
}

func (g goroutine) has(fn string) bool {
	_, ok := g.funcs[fn]
	return ok
}

// ignored reports whether g is one of the goroutines that are always there.
func ignored(g goroutine) bool {
	switch g.first {
	case "testing.RunTests", "testing.(*T).Run", "testing.(*T).Parallel", "testing.runFuzzing", "testing.runFuzzTests":
		return strings.HasPrefix(g.state, "chan receive")
	case "os/signal.signal_recv", "os/signal.loop":
		return true
	}
	switch {
	case g.has("runtime.goexit") && strings.HasPrefix(g.state, "syscall"):
		return true
	case g.has("runtime.ensureSigM"), g.has("runtime.ReadTrace"):
		return true
	}
	return false
}

// parse splits a dump into goroutines. A dump is a list of blocks separated
// by blank lines: a header "goroutine 7 [chan receive, 2 minutes]:", then
// for each frame a function line "pkg.F(args)" and a "\tfile:line" line,
// and last "created by pkg.G in goroutine 1" with its file line.
func parse(dump []byte) []goroutine {
	var out []goroutine
	for _, block := range strings.Split(strings.TrimSpace(string(dump)), "\n\n") {
		lines := strings.Split(block, "\n")
		g, ok := header(lines[0])
		if !ok {
			continue
		}
		g.funcs = map[string]struct{}{}
		g.full = block
		for _, l := range lines[1:] {
			if l == "" || strings.HasPrefix(l, "\t") || strings.HasPrefix(l, "...") {
				continue // file line, or "...additional frames elided..."
			}
			if strings.HasPrefix(l, "created by ") {
				break
			}
			fn := l
			if i := strings.LastIndexByte(l, '('); i > 0 {
				fn = l[:i]
			}
			g.funcs[fn] = struct{}{}
			if g.first == "" {
				g.first = fn
			}
		}
		out = append(out, g)
	}
	return out
}

// header parses "goroutine 7 [state, 2 minutes]:" (or with more fields
// before the bracket, as GOTRACEBACK=system prints).
func header(line string) (goroutine, bool) {
	rest, ok := strings.CutPrefix(line, "goroutine ")
	if !ok {
		return goroutine{}, false
	}
	idText, rest, _ := strings.Cut(rest, " ")
	id, err := strconv.Atoi(idText)
	if err != nil {
		return goroutine{}, false
	}
	_, state, ok := strings.Cut(rest, "[")
	if !ok {
		return goroutine{}, false
	}
	state, _, _ = strings.Cut(state, "]")
	state, _, _ = strings.Cut(state, ",") // drop ", 2 minutes", ", locked to thread"
	return goroutine{id: id, state: state}, true
}
