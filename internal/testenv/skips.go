package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// A passing package's output is hidden by `go test` without -v, so a plain
// `go test ./...` on a machine without the services would end in a column of
// "ok" lines that say nothing of the tests that did not run. The first skip
// for a missing service therefore writes one notice to the terminal (the
// controlling tty, which go test does not capture), once per `go test`
// invocation: the test binaries of one invocation share a parent process,
// and the first to create the marker file for that parent prints. Under
// `make test` (services set) nothing is skipped and nothing is printed; with
// no terminal (CI) the notice has nowhere to go and -v shows the skips.

var noticeOnce sync.Once

// noticeSkip tells the user at the terminal, once per go test invocation,
// that tests needing env are being skipped and how to run them.
func noticeSkip(env string) {
	noticeOnce.Do(func() {
		if !firstInInvocation() {
			return
		}
		tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer tty.Close()
		fmt.Fprintf(tty, "gormcache: tests that need Redis or PostgreSQL are skipped (%s not set);\n"+
			"gormcache: `make test` starts (or installs) the services and runs every test; `go test -v` lists the skips.\n", env)
	})
}

// firstInInvocation reports whether this test binary is the first of its go
// test invocation to ask, by creating a marker named for the parent (go
// test's) process. Markers of parents that have exited are removed, so
// nothing outlives the invocation but the newest marker.
func firstInInvocation() bool {
	dir := os.TempDir()
	const prefix = "gormcache-skipnotice-"
	if old, _ := filepath.Glob(filepath.Join(dir, prefix+"*")); len(old) > 0 {
		for _, p := range old {
			pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(p), prefix))
			if err == nil && syscall.Kill(pid, 0) == syscall.ESRCH {
				os.Remove(p)
			}
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, prefix+strconv.Itoa(os.Getppid())), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return false
	}
	f.Close()
	return true
}
