package main

import "testing"

// TestDecorator runs the program on embedded servers, as a new user would.
func TestDecorator(t *testing.T) {
	if err := run("", ""); err != nil {
		t.Fatal(err)
	}
}
