package main

import "testing"

// TestQuickstart runs the program on embedded servers, as a new user would.
func TestQuickstart(t *testing.T) {
	if err := run("", ""); err != nil {
		t.Fatal(err)
	}
}
