package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelGroup is a throwaway Redis Sentinel deployment on loopback ports:
// a primary, replicas, and three sentinels (quorum 2) watching them, for
// tests of failovers. Every process is stopped by PID when the test ends.
//
// The sentinels are configured for fast failovers: down-after-milliseconds
// 500 and failover-timeout 2000 (so a demoted primary that comes back is
// reconfigured as a replica about 2 s later, and a new failover may start 4
// s after the previous one).
type SentinelGroup struct {
	t         testing.TB
	Master    string         // the monitored master's name
	Servers   []*RedisServer // Servers[0] is the first primary
	Sentinels []*SentinelProc
	admin     map[string]*redis.Client // by server address
}

// SentinelProc is one redis-sentinel process.
type SentinelProc struct {
	Port int
	conf string
	mu   sync.Mutex // protects cmd
	cmd  *exec.Cmd
}

// Addr is the sentinel's address.
func (s *SentinelProc) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// StartSentinelGroup starts a primary, replicas replicas of it and three
// sentinels, and waits until the sentinels agree and every replica is in
// sync. extra arguments are given to every redis-server; each has its own
// --dir, with --dbfilename dump.rdb.
func StartSentinelGroup(t testing.TB, replicas int, extra ...string) *SentinelGroup {
	t.Helper()
	RedisAddr(t)
	g := &SentinelGroup{t: t, Master: "tmaster", admin: map[string]*redis.Client{}}
	// Each server has a directory of its own for its dump.rdb (SAVE, and a
	// replica's full synchronisations).
	own := func(args ...string) []string {
		return append(append([]string{"--dir", t.TempDir(), "--dbfilename", "dump.rdb"}, args...), extra...)
	}
	// Each server runs from a config file of its own, and the replicas are
	// made replicas at run time (REPLICAOF, CONFIG REWRITE), not by an
	// argument: a server restarts as the sentinels last configured it (they
	// rewrite the file on every reconfiguration), not as a replica of the
	// first primary whatever happened since, which made a restarted primary
	// a replica of its own replica.
	for range 1 + replicas {
		s := &RedisServer{t: t, Port: freePort(t), Args: own(), Conf: filepath.Join(t.TempDir(), "redis.conf")}
		if err := os.WriteFile(s.Conf, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(s.Stop)
		g.Servers = append(g.Servers, s)
		c := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
		g.admin[s.Addr()] = c
		t.Cleanup(func() { c.Close() })
	}
	primary := g.Servers[0]
	for _, s := range g.Servers[1:] {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := g.admin[s.Addr()].ReplicaOf(ctx, "127.0.0.1", strconv.Itoa(primary.Port)).Err()
		if err == nil {
			err = g.admin[s.Addr()].ConfigRewrite(ctx).Err()
		}
		cancel()
		if err != nil {
			t.Fatalf("replica %s: %v", s.Addr(), err)
		}
	}
	dir := t.TempDir()
	for i := range 3 {
		sp := &SentinelProc{Port: freePort(t), conf: filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))}
		cfg := strings.Join([]string{
			"port " + strconv.Itoa(sp.Port),
			"bind 127.0.0.1",
			"daemonize no",
			"dir " + dir,
			"loglevel warning",
			"sentinel resolve-hostnames no",
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2", g.Master, primary.Port),
			fmt.Sprintf("sentinel down-after-milliseconds %s 500", g.Master),
			fmt.Sprintf("sentinel failover-timeout %s 2000", g.Master),
			fmt.Sprintf("sentinel parallel-syncs %s 1", g.Master),
		}, "\n") + "\n"
		if err := os.WriteFile(sp.conf, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		sp.start(t)
		t.Cleanup(sp.Stop)
		g.Sentinels = append(g.Sentinels, sp)
	}
	if err := g.WaitReady(30 * time.Second); err != nil {
		t.Fatalf("sentinel group not ready: %v", err)
	}
	return g
}

func (s *SentinelProc) start(t testing.TB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command("redis-server", s.conf, "--sentinel")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // a killed test binary leaves no server behind
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-sentinel: %v", err)
	}
	s.cmd = cmd
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-sentinel on %s did not answer: %v", s.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the sentinel by PID.
func (s *SentinelProc) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
}

// SentinelAddrs are the sentinels' addresses, for redis.FailoverOptions.
func (g *SentinelGroup) SentinelAddrs() []string {
	out := make([]string, len(g.Sentinels))
	for i, s := range g.Sentinels {
		out[i] = s.Addr()
	}
	return out
}

func (g *SentinelGroup) sentinel(i int) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: g.Sentinels[i].Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
}

// MasterAddr asks each sentinel for the master's address and returns it
// when every sentinel that answers agrees (else an error).
func (g *SentinelGroup) MasterAddr(ctx context.Context) (string, error) {
	var addr string
	for i := range g.Sentinels {
		sc := g.sentinel(i)
		r, err := sc.GetMasterAddrByName(ctx, g.Master).Result()
		sc.Close()
		if err != nil || len(r) != 2 {
			return "", fmt.Errorf("sentinel %d: %v", i, err)
		}
		a := r[0] + ":" + r[1]
		if addr != "" && a != addr {
			return "", fmt.Errorf("sentinels disagree: %s vs %s", addr, a)
		}
		addr = a
	}
	return addr, nil
}

// Server returns the server listening on addr, or nil.
func (g *SentinelGroup) Server(addr string) *RedisServer {
	for _, s := range g.Servers {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// Admin returns an administrative client of the server at addr (no
// retries, deadlines honoured); it belongs to the group.
func (g *SentinelGroup) Admin(addr string) *redis.Client { return g.admin[addr] }

// Primary returns the current primary (as the sentinels agree on it) and
// an administrative client of it.
func (g *SentinelGroup) Primary(ctx context.Context) (*RedisServer, *redis.Client, error) {
	addr, err := g.MasterAddr(ctx)
	if err != nil {
		return nil, nil, err
	}
	s := g.Server(addr)
	if s == nil {
		return nil, nil, fmt.Errorf("master %s is not one of the group's servers", addr)
	}
	return s, g.admin[addr], nil
}

// WaitReady waits until the sentinels agree on a running master that
// answers as one, every sentinel knows the two others, and every other
// server is a replica of the master with its link up and in sync.
func (g *SentinelGroup) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = g.ready(); last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return last
}

func (g *SentinelGroup) ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, admin, err := g.Primary(ctx)
	if err != nil {
		return err
	}
	if s.PID() == 0 {
		return fmt.Errorf("master %s is not running", s.Addr())
	}
	info, err := admin.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "role:master") {
		return fmt.Errorf("%s is not a master yet", s.Addr())
	}
	for i := range g.Sentinels {
		sc := g.sentinel(i)
		m, err := sc.Master(ctx, g.Master).Result()
		sc.Close()
		if err != nil {
			return err
		}
		if m["num-other-sentinels"] != "2" {
			return fmt.Errorf("sentinel %d knows %s other sentinels", i, m["num-other-sentinels"])
		}
		if m["num-slaves"] != strconv.Itoa(len(g.Servers)-1) {
			return fmt.Errorf("sentinel %d knows %s replicas", i, m["num-slaves"])
		}
		if strings.Contains(m["flags"], "down") || strings.Contains(m["flags"], "failover") {
			return fmt.Errorf("sentinel %d: master flags %s", i, m["flags"])
		}
	}
	offset := infoInt(info, "master_repl_offset")
	for _, r := range g.Servers {
		if r == s {
			continue
		}
		if r.PID() == 0 {
			return fmt.Errorf("replica %s is not running", r.Addr())
		}
		ri, err := g.admin[r.Addr()].Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(ri, "master_port:"+strconv.Itoa(s.Port)) || !strings.Contains(ri, "master_link_status:up") {
			return fmt.Errorf("replica %s not linked to %s", r.Addr(), s.Addr())
		}
		if lag := offset - infoInt(ri, "slave_repl_offset"); lag > 1<<20 {
			return fmt.Errorf("replica %s lags by %d bytes", r.Addr(), lag)
		}
	}
	return nil
}

func infoInt(info, field string) int64 {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// Failover asks a sentinel to fail over now (SENTINEL FAILOVER) and waits
// until the sentinels agree on a new master; it returns the new master's
// address.
func (g *SentinelGroup) Failover(timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	old, err := g.MasterAddr(ctx)
	if err != nil {
		return "", err
	}
	sc := g.sentinel(0)
	err = sc.Failover(ctx, g.Master).Err()
	sc.Close()
	if err != nil {
		return "", err
	}
	return g.waitNewMaster(ctx, old)
}

func (g *SentinelGroup) waitNewMaster(ctx context.Context, old string) (string, error) {
	for {
		if a, err := g.MasterAddr(ctx); err == nil && a != old {
			return a, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no new master after %s: %w", old, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// KillLaggingPrimary makes the replica replicaAddr stop receiving the
// primary's writes (it gets a wrong masterauth and its replication link is
// killed, so it cannot resynchronise), lets writes go on for lag, kills the
// primary with SIGKILL, and waits until the sentinels promote the replica
// (which then lacks every write of the lag window). The old primary is
// started again afterwards, from its config file (a primary) and whatever
// dump.rdb its directory holds; the sentinels reconfigure it as a replica.
// It returns the new master's address.
func (g *SentinelGroup) KillLaggingPrimary(lag, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, admin, err := g.Primary(ctx)
	if err != nil {
		return "", err
	}
	var replicas []*redis.Client
	for _, r := range g.Servers {
		if r != s {
			replicas = append(replicas, g.admin[r.Addr()])
		}
	}
	for _, r := range replicas {
		if err := r.ConfigSet(ctx, "masterauth", "wrong-on-purpose").Err(); err != nil {
			return "", err
		}
	}
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err(); err != nil {
		return "", err
	}
	time.Sleep(lag)
	s.Stop()
	killed := time.Now()
	addr, werr := g.waitNewMaster(ctx, s.Addr())
	g.t.Logf("%s: killed the primary %s (replicas cut %v before); %s promoted %v later",
		killed.Add(-lag).Format("15:04:05.000"), s.Addr(), lag, addr, time.Since(killed).Round(time.Millisecond))
	for _, r := range replicas {
		// A sentinel's reconfiguration may have rewritten the wrong
		// password into the file: rewrite it without.
		r.ConfigSet(context.Background(), "masterauth", "")
		r.ConfigRewrite(context.Background())
	}
	s.Start()
	return addr, werr
}
