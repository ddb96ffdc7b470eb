package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gormcache/gormcache/example/internal/demoenv"
	"github.com/gormcache/gormcache/internal/testenv"
)

// bound is how soon the other instance must see a write (the bus delivers
// in milliseconds; its health window bounds a lost message to 150 ms).
const bound = 2 * time.Second

// TestTwoInstances runs the service as two instances (A and B: each its own
// connection pool, cache, bus and HTTP server) on one database and one Redis
// — the real ones when GORMCACHE_PG_DSN and GORMCACHE_REDIS_ADDR are set,
// else embedded ones — and drives them through HTTP. Every write style of
// store.go is made on A against rows both instances hold cached; A must
// read it at once and B within bound.
func TestTwoInstances(t *testing.T) {
	ns := "existing-test-" + randomHex()
	redisAddr, dsn := servers(t, ns)
	a, b := start(t, "A", redisAddr, dsn, ns), start(t, "B", redisAddr, dsn, ns)
	both := []*instance{a, b}

	// Create (on A): users in two organisations, and tokens.
	ann := a.createUser(1, "Ann")
	bob := a.createUser(1, "Bob")
	cy := a.createUser(2, "Cy")
	annLaptop := a.issue(ann.ID, "laptop")
	annCI := a.issue(ann.ID, "ci")
	bobTok := a.issue(bob.ID, "laptop")
	cyTok := a.issue(cy.ID, "laptop")
	for _, in := range both {
		in.wantUser(ann.ID, "Ann", true)
		in.wantAuth(annLaptop, ann.ID, "laptop")
		in.wantAuth(annCI, ann.ID, "ci")
		in.wantAuth(bobTok, bob.ID, "laptop")
		in.wantAuth(cyTok, cy.ID, "laptop")
	}

	// Warm reads on B (users and authentication) do not reach the database.
	warm := func(users []int64, tokens []string) {
		b.warm(func() {
			for _, id := range users {
				b.call("GET", fmt.Sprintf("/users/%d", id), "", nil)
			}
			for _, tok := range tokens {
				b.call("GET", "/whoami", tok, nil)
			}
		})
	}
	warm([]int64{ann.ID, bob.ID, cy.ID}, []string{annLaptop, annCI, bobTok, cyTok})

	// Updates: rename.
	a.mustDo("PATCH", fmt.Sprintf("/users/%d", ann.ID), map[string]any{"name": "Ann B."}, nil)
	seen(t, both, "rename (Updates)", func(in *instance) error {
		return firstErr(in.checkUser(ann.ID, "Ann B.", true), in.checkAuth(annLaptop, ann.ID, "laptop"))
	})

	// A transaction with a savepoint: rotate the laptop token asking for
	// the label "ci", which a live token has: the relabel is rolled back to
	// the savepoint, the rotation commits.
	var rot tokenOut
	a.mustDo("POST", fmt.Sprintf("/tokens/%s/rotate", tokenID(annLaptop)), map[string]any{"label": "ci"}, &rot)
	if rot.Label != "laptop" {
		t.Fatalf("rotation with a taken label: label %q, want the old one", rot.Label)
	}
	annLaptop2 := rot.Secret
	seen(t, both, "rotate, relabel rolled back to the savepoint", func(in *instance) error {
		return firstErr(in.checkRejected(annLaptop), in.checkAuth(annLaptop2, ann.ID, "laptop"))
	})

	// Save: revoke (read, set revoked_at, Save).
	a.mustDo("DELETE", fmt.Sprintf("/tokens/%s", tokenID(annCI)), nil, nil)
	seen(t, both, "revoke (Save)", func(in *instance) error { return in.checkRejected(annCI) })

	// The savepoint's other branch: "ci" is free now, the relabel stays.
	for _, in := range both {
		in.wantAuth(annLaptop2, ann.ID, "laptop")
	}
	a.mustDo("POST", fmt.Sprintf("/tokens/%s/rotate", tokenID(annLaptop2)), map[string]any{"label": "ci"}, &rot)
	annCI2 := rot.Secret
	seen(t, both, "rotate and relabel", func(in *instance) error {
		return firstErr(in.checkRejected(annLaptop2), in.checkAuth(annCI2, ann.ID, "ci"))
	})

	// The per-user list goes through the query cache (Token is listed in
	// CachedModels): exact on B after the writes, and free the second time.
	before := b.selects()
	var list []Token
	b.mustDo("GET", fmt.Sprintf("/users/%d/tokens", ann.ID), nil, &list)
	live := 0
	for _, tk := range list {
		if tk.RevokedAt == nil {
			live++
		}
	}
	if len(list) != 4 || live != 1 {
		t.Fatalf("B lists %d tokens of Ann, %d live; want 4 and 1: %+v", len(list), live, list)
	}
	if n := b.selects() - before; n > 2 {
		t.Fatalf("the list cost %d SELECTs, want at most 2 (its ids, then rows not cached yet)", n)
	}
	before = b.selects()
	var again []Token
	b.mustDo("GET", fmt.Sprintf("/users/%d/tokens", ann.ID), nil, &again)
	if n := b.selects() - before; n != 0 || len(again) != len(list) {
		t.Fatalf("the list again cost %d SELECTs (%d tokens), want 0 (cached)", n, len(again))
	}

	// Where().Update, many rows: deactivate organisation 1 (Ann and Bob).
	for _, in := range both {
		in.wantUser(bob.ID, "Bob", true)
		in.wantAuth(bobTok, bob.ID, "laptop")
		in.wantAuth(annCI2, ann.ID, "ci")
	}
	var deact map[string]int64
	a.mustDo("POST", "/orgs/1/deactivate", nil, &deact)
	if deact["deactivated"] != 2 {
		t.Fatalf("deactivated %v, want 2", deact)
	}
	seen(t, both, "deactivate an organisation (Where().Update)", func(in *instance) error {
		return firstErr(in.checkUser(bob.ID, "Bob", false), in.checkRejected(bobTok), in.checkRejected(annCI2),
			in.checkAuth(cyTok, cy.ID, "laptop"))
	})

	// Delete (soft): Cy, whose token then stops authenticating.
	for _, in := range both {
		in.wantUser(cy.ID, "Cy", true)
	}
	a.mustDo("DELETE", fmt.Sprintf("/users/%d", cy.ID), nil, nil)
	seen(t, both, "delete (Delete)", func(in *instance) error {
		return firstErr(in.checkGone(cy.ID), in.checkRejected(cyTok))
	})

	// After all that, warm reads on B still do not reach the database,
	// revoked tokens and deactivated users included. Cy is left out: the
	// cache does not yet keep "not found" for a row deleted less than its
	// TombstoneTTL ago, so reads of Cy still go to the database.
	warm([]int64{ann.ID, bob.ID}, []string{annLaptop, annCI, annLaptop2, annCI2, bobTok})
}

// TestRun starts the program as `go run ./example/existing` does, on
// embedded servers, and makes a few requests.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, "127.0.0.1:0", "", "", "existing-run-"+randomHex(), pw)
		pw.Close()
	}()
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				urls <- u
			}
		}
	}()
	var url string
	select {
	case url = <-urls:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("the program did not start listening")
	}
	in := &instance{t: t, name: "run", url: url}
	u := in.createUser(1, "Ann")
	tok := in.issue(u.ID, "laptop")
	in.wantAuth(tok, u.ID, "laptop")
	in.warm(func() { in.call("GET", "/whoami", tok, nil) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// servers returns the Redis address and DSN the instances share: the real
// servers (the test's tables in a schema of their own, its Redis keys
// deleted afterwards), or embedded ones.
func servers(t *testing.T, ns string) (redisAddr, dsn string) {
	env, err := demoenv.Open(os.Getenv("GORMCACHE_REDIS_ADDR"), os.Getenv("GORMCACHE_PG_DSN"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	t.Log(env.Describe())
	if env.Embedded {
		return env.RedisAddr, env.DSN
	}
	schema := "existing_test_" + randomHex()
	if err := env.DB.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		env.DB.Exec("DROP SCHEMA " + schema + " CASCADE")
		testenv.DeletePrefix(env.Redis, ns)
	})
	sep := " search_path="
	if strings.Contains(env.DSN, "://") {
		sep = "?search_path="
		if strings.Contains(env.DSN, "?") {
			sep = "&search_path="
		}
	}
	return env.RedisAddr, env.DSN + sep + schema
}

func randomHex() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// instance is one running instance of the service, seen through HTTP.
type instance struct {
	t    *testing.T
	name string
	url  string
}

// start runs an instance: its own connections to the shared servers, the
// service with the cache, and an HTTP server.
func start(t *testing.T, name, redisAddr, dsn, ns string) *instance {
	env, err := demoenv.Connect(redisAddr, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	h, stop, err := newService(context.Background(), env.DB, env.Redis, ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &instance{t: t, name: name, url: srv.URL}
}

// call makes a request and returns the status and body.
func (in *instance) call(method, path, token string, body any) (int, []byte) {
	in.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, in.url+path, r)
	if err != nil {
		in.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// mustDo makes a request that must succeed, decoding the reply into out.
func (in *instance) mustDo(method, path string, body, out any) {
	in.t.Helper()
	code, b := in.call(method, path, "", body)
	if code/100 != 2 {
		in.t.Fatalf("%s: %s %s: %d %s", in.name, method, path, code, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			in.t.Fatalf("%s: %s %s: %v", in.name, method, path, err)
		}
	}
}

func (in *instance) createUser(org int64, name string) *User {
	in.t.Helper()
	var u User
	in.mustDo("POST", "/users", map[string]any{"org_id": org, "name": name}, &u)
	return &u
}

// issue returns a new token's string.
func (in *instance) issue(userID int64, label string) string {
	in.t.Helper()
	var out tokenOut
	in.mustDo("POST", fmt.Sprintf("/users/%d/tokens", userID), map[string]any{"label": label}, &out)
	return out.Secret
}

func tokenID(token string) string { id, _, _ := strings.Cut(token, "."); return id }

func (in *instance) selects() int64 {
	in.t.Helper()
	var out map[string]int64
	in.mustDo("GET", "/debug/queries", nil, &out)
	return out["selects"]
}

// warm runs reads until a round of them sends no SELECT (their rows are in
// both tiers), then requires three more rounds to send none.
func (in *instance) warm(reads func()) {
	in.t.Helper()
	deadline := time.Now().Add(bound)
	for {
		n := in.selects()
		reads()
		if in.selects() == n {
			break
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("%s: reads still reach the database %v after warming up", in.name, bound)
		}
	}
	n := in.selects()
	for range 3 {
		reads()
	}
	if d := in.selects() - n; d != 0 {
		in.t.Fatalf("%s: warm cached reads sent %d SELECTs to the database", in.name, d)
	}
}

func (in *instance) checkUser(id int64, name string, active bool) error {
	code, b := in.call("GET", fmt.Sprintf("/users/%d", id), "", nil)
	var u User
	if code != http.StatusOK || json.Unmarshal(b, &u) != nil || u.Name != name || u.Active != active {
		return fmt.Errorf("user %d: %d %s, want name %q, active %v", id, code, b, name, active)
	}
	return nil
}

func (in *instance) checkGone(id int64) error {
	if code, b := in.call("GET", fmt.Sprintf("/users/%d", id), "", nil); code != http.StatusNotFound {
		return fmt.Errorf("user %d: %d %s, want 404", id, code, b)
	}
	return nil
}

func (in *instance) checkAuth(token string, userID int64, label string) error {
	code, b := in.call("GET", "/whoami", token, nil)
	var out struct {
		User  User
		Token Token
	}
	if code != http.StatusOK || json.Unmarshal(b, &out) != nil || out.User.ID != userID || out.Token.Label != label {
		return fmt.Errorf("token %s…: %d %s, want user %d with label %q", token[:6], code, b, userID, label)
	}
	return nil
}

func (in *instance) checkRejected(token string) error {
	if code, b := in.call("GET", "/whoami", token, nil); code != http.StatusUnauthorized {
		return fmt.Errorf("token %s…: %d %s, want 401", token[:6], code, b)
	}
	return nil
}

func (in *instance) wantUser(id int64, name string, active bool) {
	in.t.Helper()
	if err := in.checkUser(id, name, active); err != nil {
		in.t.Fatalf("%s: %v", in.name, err)
	}
}

func (in *instance) wantAuth(token string, userID int64, label string) {
	in.t.Helper()
	if err := in.checkAuth(token, userID, label); err != nil {
		in.t.Fatalf("%s: %v", in.name, err)
	}
}

// seen requires check to pass on the writer (the first instance) at once,
// and on the others within bound.
func seen(t *testing.T, ins []*instance, what string, check func(*instance) error) {
	t.Helper()
	if err := check(ins[0]); err != nil {
		t.Fatalf("%s: %s does not read its own write: %v", what, ins[0].name, err)
	}
	for _, in := range ins[1:] {
		start := time.Now()
		for {
			err := check(in)
			if err == nil {
				break
			}
			if time.Since(start) > bound {
				t.Fatalf("%s: %s still wrong %v after the write returned: %v", what, in.name, bound, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s: seen on %s after %v", what, in.name, time.Since(start).Round(time.Millisecond))
	}
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
