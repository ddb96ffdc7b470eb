package leakcheck

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// envChild makes the test binary leave a goroutine behind after its
// tests (TestVerifyTestMainFails runs it so).
const envChild = "LEAKCHECK_TEST_LEAK"

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		VerifyTestMain(leakingM{m})
	}
	VerifyTestMain(m)
}

// leakingM runs the tests of m, then leaves a goroutine blocked.
type leakingM struct{ m *testing.M }

func (l leakingM) Run() int {
	code := l.m.Run()
	leak()
	return code
}

// TestVerifyTestMainFails: a test binary whose tests pass but leave a
// goroutine running exits 1 and names the goroutine's function.
func TestVerifyTestMainFails(t *testing.T) {
	if testing.Short() {
		t.Skip("waits DefaultWait in a child process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestParse$", "-test.count=1")
	cmd.Env = append(os.Environ(), envChild+"=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("leaking binary: %v, want exit status 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "leakcheck.parkLeak") {
		t.Errorf("the report does not list the leaked goroutine:\n%s", out)
	}
}

// parkLeak is the function a leaked goroutine of these tests blocks in, so
// that its frame is easy to find in a dump.
func parkLeak(release <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	<-release
}

// leak starts a goroutine blocked until the returned function is called;
// the function waits until it has ended.
func leak() (stop func()) {
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go parkLeak(release, &wg)
	return func() { close(release); wg.Wait() }
}

// TestFindCatchesALeak: a goroutine still blocked after the wait is
// reported with its stack, and once it ends Find passes.
func TestFindCatchesALeak(t *testing.T) {
	stop := leak()
	err := Find(50 * time.Millisecond)
	if !errors.Is(err, ErrLeak) {
		stop()
		t.Fatalf("Find with a blocked goroutine: %v, want ErrLeak", err)
	}
	found := false
	for _, g := range leaked(current()) {
		if g.has("github.com/gormcache/gormcache/internal/leakcheck.parkLeak") && strings.HasPrefix(g.state, "chan receive") {
			found = true
		}
	}
	stop()
	if !found {
		t.Error("the leaked goroutine is not among those listed")
	}
	if err := Find(5 * time.Second); err != nil {
		t.Errorf("Find after the goroutine ended: %v", err)
	}
}

// TestFindWaits: a goroutine that ends while Find polls is not a leak.
func TestFindWaits(t *testing.T) {
	stop := leak()
	go func() { time.Sleep(20 * time.Millisecond); stop() }()
	if err := Find(5 * time.Second); err != nil {
		t.Errorf("Find while the goroutine ends: %v", err)
	}
}

// fakeM is a testing.M whose Run returns code, leaving a goroutine blocked
// when leaks is set.
type fakeM struct {
	code  int
	leaks bool
	stop  func()
}

func (m *fakeM) Run() int {
	if m.leaks {
		m.stop = leak()
	}
	return m.code
}

// TestRun: a passing run that leaks exits 1; a failing run keeps its code;
// a clean one exits 0.
func TestRun(t *testing.T) {
	for _, c := range []struct {
		name  string
		m     *fakeM
		want  int
		wantW bool
	}{
		{"leak", &fakeM{leaks: true}, 1, true},
		{"failed tests", &fakeM{code: 3, leaks: true}, 3, false},
		{"clean", &fakeM{}, 0, false},
	} {
		var w strings.Builder
		got := Run(c.m, &w, 50*time.Millisecond)
		if c.m.stop != nil {
			c.m.stop()
		}
		if got != c.want || (w.Len() > 0) != c.wantW {
			t.Errorf("%s: exit %d, report %q; want %d, a report: %v", c.name, got, w.String(), c.want, c.wantW)
		}
	}
}

// TestParse reads a dump with a durable state, elided frames and creators.
func TestParse(t *testing.T) {
	dump := "goroutine 1 [running]:\nmain.main()\n\t/x/main.go:5 +0x1d\n\n" +
		"goroutine 7 [chan receive, 2 minutes]:\ntesting.(*T).Run(0xc000007, {0x5, 0x3}, 0xc00)\n\t/go/testing.go:1 +0x2\n" +
		"main.helper[...](...)\n\t/x/h.go:3\n...additional frames elided...\ncreated by main.start in goroutine 1\n\t/x/main.go:9 +0x5\n\n" +
		"goroutine 9 gp=0xc0 m=nil [syscall, locked to thread]:\nruntime.goexit({})\n\t/go/asm.s:1\n"
	gs := parse([]byte(dump))
	if len(gs) != 3 {
		t.Fatalf("%d goroutines, want 3", len(gs))
	}
	if g := gs[1]; g.id != 7 || g.state != "chan receive" || g.first != "testing.(*T).Run" || !g.has("main.helper[...]") || g.has("main.start") {
		t.Errorf("goroutine 7: %+v", g)
	}
	if g := gs[2]; g.id != 9 || g.state != "syscall" || !ignored(g) {
		t.Errorf("goroutine 9: %+v", g)
	}
	if ignored(gs[0]) || !ignored(gs[1]) {
		t.Errorf("ignored: main %v, testing.(*T).Run %v", ignored(gs[0]), ignored(gs[1]))
	}
}
