package main

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"
)

// TestMain lets the test binary serve as an instance process (the demo
// launches copies of its own executable) and as a CPU hog.
func TestMain(m *testing.M) {
	for _, a := range os.Args[1:] {
		switch a {
		case "-child":
			main()
			os.Exit(0)
		case "-hog":
			hog()
		}
	}
	os.Exit(m.Run())
}

// TestDemo runs the whole scenario on embedded servers, as a new user would,
// with a short load phase; it fails if any stale read is observed.
func TestDemo(t *testing.T) {
	if err := runParent("", "", 3, time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestDemoStarved runs the scenario on a starved machine: every process of
// it (the parent with the embedded servers, and the instances) on one
// thread (GOMAXPROCS=1), beside a CPU hog spinning on as many threads as
// the machine has cores. Slower propagation is allowed; a stale read, older
// than a write acknowledged more than the bound before it began, is not.
func TestDemoStarved(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := exec.Command(exe, "-hog")
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.Process.Kill(); _ = h.Wait() }()
	t.Setenv("GOMAXPROCS", "1")
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	if err := runParent("", "", 3, 4*time.Second); err != nil {
		t.Fatal(err)
	}
}

// hog spins on every core until it is killed (the test's deferred Kill; a
// parent that died without killing it is noticed within a second).
func hog() {
	parent := os.Getppid()
	for range runtime.NumCPU() {
		go func() {
			for n := 0; ; n++ { // spins by design
				_ = n * n
			}
		}()
	}
	for os.Getppid() == parent {
		time.Sleep(time.Second)
	}
	os.Exit(0)
}
