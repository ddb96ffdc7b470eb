package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// EnvPostgresLogical names the PostgreSQL with wal_level = logical that the
// change-feed tests use (`make services` creates it: .ci/logical-pg.sh).
const EnvPostgresLogical = "GORMCACHE_PG_LOGICAL_DSN"

// DefaultPostgresLogical is the DSN tried when EnvPostgresLogical is unset.
const DefaultPostgresLogical = "host=127.0.0.1 port=5433 user=postgres dbname=test sslmode=disable"

// LogicalPG returns the DSN of a PostgreSQL with wal_level = logical, whose
// role may replicate. With EnvPostgresLogical unset it tries
// DefaultPostgresLogical and skips t if that does not answer; with it set,
// a server that does not answer (or is not logical) fails t.
func LogicalPG(t testing.TB) string {
	t.Helper()
	dsn, set := os.LookupEnv(EnvPostgresLogical)
	if !set || dsn == "" {
		dsn = DefaultPostgresLogical
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	level, err := walLevel(ctx, dsn)
	switch {
	case err == nil && level == "logical":
		return dsn
	case !set:
		noticeSkip(EnvPostgresLogical)
		t.Skipf("%s not set and no PostgreSQL with wal_level = logical answers at %q: run `make services` (or `make test`)", EnvPostgresLogical, dsn)
	case err != nil:
		t.Fatalf("postgres (%s) does not answer: %v", dsn, err)
	default:
		t.Fatalf("postgres (%s) has wal_level = %s, not logical: run `make services`", dsn, level)
	}
	return ""
}

func walLevel(ctx context.Context, dsn string) (string, error) {
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	res := conn.ExecParams(ctx, "SHOW wal_level", nil, nil, nil, nil).Read()
	if res.Err != nil {
		return "", res.Err
	}
	if len(res.Rows) != 1 {
		return "", fmt.Errorf("SHOW wal_level: %d rows", len(res.Rows))
	}
	return string(res.Rows[0][0]), nil
}

// RestartLogicalPG restarts the cluster serving LogicalPG (pg_ctlcluster
// restart, fast shutdown) and waits until it answers again. It skips t when
// the cluster is not a local pg_ctlcluster one this process may restart.
func RestartLogicalPG(t testing.TB) {
	t.Helper()
	dsn := LogicalPG(t)
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pg_lsclusters", "-h").Output()
	if err != nil {
		t.Skipf("pg_lsclusters: %v", err)
	}
	var ver, name string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == fmt.Sprint(cfg.Port) {
			ver, name = f[0], f[1]
		}
	}
	if ver == "" || name == "main" {
		t.Skipf("no local cluster other than main on port %d to restart", cfg.Port)
	}
	cmd := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", ver, name, "restart", "-m", "fast")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_ctlcluster %s %s restart: %v: %s", ver, name, err, b)
	}
	Eventually(t, 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		l, err := walLevel(ctx, dsn)
		return err == nil && l == "logical"
	}, "postgres %s %s did not answer after restart", ver, name)
}

// DropSlot drops a replication slot of the logical cluster at dsn, ending a
// walsender that still streams it (retried until that walsender is gone),
// and, if publication is not empty, the publication. A failure is reported
// with t.Errorf: cleanup must not stop at the first error.
func DropSlot(t testing.TB, dsn, slot, publication string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Errorf("drop slot %s: %v", slot, err)
		return
	}
	defer conn.Close(context.Background())
	lit := "'" + strings.ReplaceAll(slot, "'", "''") + "'"
	for {
		conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = `+lit+` AND active_pid IS NOT NULL`).ReadAll()
		_, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = `+lit).ReadAll()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Errorf("drop slot %s: %v", slot, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	if publication == "" {
		return
	}
	if _, err := conn.Exec(ctx, `DROP PUBLICATION IF EXISTS "`+strings.ReplaceAll(publication, `"`, `""`)+`"`).ReadAll(); err != nil {
		t.Errorf("drop publication %s: %v", publication, err)
	}
}
