package testenv

import (
	"flag"
	"fmt"
	"os"
)

// SkipExamplesWithout adds the examples (functions named Example...) to
// -test.skip when one of the environment variables envs is unset, as tests
// that need a service skip: an example cannot call t.Skip, and its output
// would not match. Call it from TestMain, before m.Run; it parses the
// command line.
func SkipExamplesWithout(envs ...string) {
	var missing []string
	for _, e := range envs {
		if os.Getenv(e) == "" {
			missing = append(missing, e)
		}
	}
	if len(missing) == 0 {
		return
	}
	if !flag.Parsed() {
		flag.Parse()
	}
	skip := flag.Lookup("test.skip")
	if skip == nil {
		return
	}
	re := "^Example"
	if v := skip.Value.String(); v != "" {
		re = v + "|" + re
	}
	if err := skip.Value.Set(re); err != nil {
		return
	}
	fmt.Printf("examples skipped: %v not set: run `make test` to start Redis and PostgreSQL and run them\n", missing)
}
