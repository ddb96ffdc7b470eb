package main

import (
	"os"
	"testing"
	"time"
)

// TestMain lets the test binary serve as an instance process: the demo
// launches copies of its own executable.
func TestMain(m *testing.M) {
	for _, a := range os.Args[1:] {
		if a == "-child" {
			main()
			os.Exit(0)
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
