// Command existing is an HTTP service whose data access is written in plain
// GORM, made cached and coherent across instances by adding the gormcache
// plugin and nothing else.
//
//	go run ./example/existing                        # embedded Redis and SQLite, on 127.0.0.1:8080
//	go run ./example/existing -addr 127.0.0.1:9000 -redis 127.0.0.1:6379 \
//	    -dsn 'host=127.0.0.1 user=postgres dbname=test sslmode=disable'
//
// It prints curl lines to try, and the command that starts a second
// instance on the same servers.
//
// What to look at:
//
//   - store.go is the service's store as it was: users and API tokens,
//     written with Create, Save, Updates, Where().Update, Delete, a
//     transaction with a savepoint, a per-user list and token
//     authentication. It does not know about the cache.
//   - cached.go is the whole change: a cache, an invalidation bus and the
//     plugin on the *gorm.DB (plus a repository per cached model, which
//     registers its table). newService below calls it in one line.
//   - main_test.go runs two instances and checks, through HTTP, that each
//     write on one is seen at once by it and within 2 s by the other, that
//     revoked and rotated tokens stop authenticating on both, and that
//     warm reads on the other do not reach the database (GET /debug/queries
//     counts the SELECTs that did).
//
// Reads of the listed models are served from the cache: primary-key reads
// (First(&u, id)) through the row cache, other queries (the per-user list)
// through the query cache, which retires a list with every write to its
// table.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/gormcache/gormcache/example/internal/demoenv"
)

func main() {
	var (
		redisAddr, dsn = demoenv.Flags()
		addr           = flag.String("addr", "127.0.0.1:8080", "address to listen on")
		namespace      = flag.String("namespace", "gormcache-existing", "cache namespace; instances that share it stay coherent")
	)
	flag.Parse()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, *addr, *redisAddr, *dsn, *namespace, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "existing:", err)
		os.Exit(1)
	}
}

// run serves one instance on addr until ctx ends.
func run(ctx context.Context, addr, redisAddr, dsn, namespace string, out io.Writer) error {
	env, err := demoenv.Open(redisAddr, dsn)
	if err != nil {
		return err
	}
	defer env.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	h, stop, err := newService(ctx, env.DB, env.Redis, namespace)
	if err != nil {
		ln.Close()
		return err
	}
	defer stop()
	printHelp(out, env, ln.Addr().String(), namespace)

	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newService is one instance of the service on db: its tables, its HTTP
// API, and the cache.
func newService(ctx context.Context, db *gorm.DB, rdb redis.UniversalClient, namespace string) (http.Handler, func(), error) {
	if err := db.AutoMigrate(&User{}, &Token{}); err != nil {
		return nil, nil, err
	}
	selects := countSelects(db)

	stop, err := enableCache(ctx, db, rdb, namespace) // ← the one line that adds the cache (cached.go)
	if err != nil {
		return nil, nil, err
	}
	return routes(&Store{db: db}, selects), stop, nil
}

// countSelects counts the SELECTs db sends to the database (a read the
// cache served sends none), for GET /debug/queries.
func countSelects(db *gorm.DB) *atomic.Int64 {
	n := new(atomic.Int64)
	count := func(tx *gorm.DB) {
		if tx.Statement.SQL.Len() > 0 {
			n.Add(1)
		}
	}
	db.Callback().Query().After("gorm:query").Register("existing:count", count)
	db.Callback().Row().After("gorm:row").Register("existing:count", count)
	return n
}

// routes is the HTTP API.
func routes(s *Store, selects *atomic.Int64) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /users", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			OrgID int64  `json:"org_id"`
			Name  string `json:"name"`
		}
		if !decode(w, r, &in) {
			return
		}
		u, err := s.CreateUser(r.Context(), in.OrgID, in.Name)
		reply(w, http.StatusCreated, u, err)
	})
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		u, err := s.User(r.Context(), pathID(r))
		reply(w, http.StatusOK, u, err)
	})
	mux.HandleFunc("PATCH /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Name string `json:"name"`
		}
		if !decode(w, r, &in) {
			return
		}
		err := s.RenameUser(r.Context(), pathID(r), in.Name)
		if err != nil {
			reply(w, 0, nil, err)
			return
		}
		u, err := s.User(r.Context(), pathID(r))
		reply(w, http.StatusOK, u, err)
	})
	mux.HandleFunc("DELETE /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusNoContent, nil, s.DeleteUser(r.Context(), pathID(r)))
	})
	mux.HandleFunc("POST /orgs/{id}/deactivate", func(w http.ResponseWriter, r *http.Request) {
		n, err := s.DeactivateOrg(r.Context(), pathID(r))
		reply(w, http.StatusOK, map[string]int64{"deactivated": n}, err)
	})
	mux.HandleFunc("POST /users/{id}/tokens", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Label string `json:"label"`
		}
		if !decode(w, r, &in) {
			return
		}
		t, token, err := s.IssueToken(r.Context(), pathID(r), in.Label)
		reply(w, http.StatusCreated, tokenOut{t, token}, err)
	})
	mux.HandleFunc("GET /users/{id}/tokens", func(w http.ResponseWriter, r *http.Request) {
		ts, err := s.Tokens(r.Context(), pathID(r))
		reply(w, http.StatusOK, ts, err)
	})
	mux.HandleFunc("POST /tokens/{id}/rotate", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Label string `json:"label"`
		}
		if !decode(w, r, &in) {
			return
		}
		t, token, err := s.RotateToken(r.Context(), pathID(r), in.Label)
		reply(w, http.StatusCreated, tokenOut{t, token}, err)
	})
	mux.HandleFunc("DELETE /tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusNoContent, nil, s.RevokeToken(r.Context(), pathID(r)))
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		u, t, err := s.Authenticate(r.Context(), strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		reply(w, http.StatusOK, map[string]any{"user": u, "token": t}, err)
	})
	mux.HandleFunc("GET /debug/queries", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, map[string]int64{"selects": selects.Load()}, nil)
	})
	return mux
}

// tokenOut is a token with the string to present, shown once.
type tokenOut struct {
	*Token
	Secret string `json:"token"`
}

func pathID(r *http.Request) int64 {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	return id
}

// decode reads an optional JSON body.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil && !errors.Is(err, io.EOF) {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

// reply writes v as JSON with status, or the error's status.
func reply(w http.ResponseWriter, status int, v any, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrUnauthorized):
		status = http.StatusUnauthorized
	case errors.Is(err, ErrRevoked), errors.Is(err, ErrLabelTaken):
		status = http.StatusConflict
	case err != nil:
		status = http.StatusInternalServerError
	}
	if err != nil {
		http.Error(w, err.Error(), status)
		return
	}
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// printHelp says where the service listens and what to try.
func printHelp(out io.Writer, env *demoenv.Env, addr, namespace string) {
	fmt.Fprintln(out, "existing: using", env.Describe())
	fmt.Fprintf(out, "listening on http://%s\n\ntry:\n", addr)
	for _, l := range [][2]string{
		{`-X POST %s/users -d '{"org_id":1,"name":"Ann"}'`, "Create"},
		{`-X POST %s/users/1/tokens -d '{"label":"laptop"}'`, "Create; prints the token, once"},
		{`%s/whoami -H 'Authorization: Bearer <token>'`, "two primary-key reads: cached"},
		{`-X PATCH %s/users/1 -d '{"name":"Ann B."}'`, "Updates"},
		{`-X POST %s/tokens/1/rotate -d '{"label":"ci"}'`, "a transaction with a savepoint"},
		{`-X DELETE %s/tokens/2`, "Save (revoke)"},
		{`%s/users/1/tokens`, "a per-user list: the database"},
		{`-X POST %s/orgs/1/deactivate`, "Where().Update, many rows"},
		{`-X DELETE %s/users/1`, "Delete"},
		{`%s/debug/queries`, "SELECTs that reached the database"},
	} {
		fmt.Fprintf(out, "  curl -s %-66s # %s\n", fmt.Sprintf(l[0], addr), l[1])
	}
	redisAddr, dsn := env.RedisAddr, env.DSN
	fmt.Fprintf(out, "\na second instance on the same servers, coherent with this one")
	if env.Embedded {
		fmt.Fprintf(out, " (the embedded servers live in this process)")
	}
	fmt.Fprintf(out, ":\n  go run ./example/existing -addr %s -redis %s -dsn %s -namespace %s\n",
		nextPort(addr), shellQuote(redisAddr), shellQuote(dsn), shellQuote(namespace))
}

func nextPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	p, perr := strconv.Atoi(port)
	if err != nil || perr != nil {
		return addr
	}
	return net.JoinHostPort(host, strconv.Itoa(p+1))
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
