package testenv

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a throwaway Redis Cluster on loopback ports: three primaries,
// each with one replica, created with redis-cli --cluster create. Every
// server is a RedisServer of its own (its own directory, nodes.conf and
// cluster bus port), stopped by PID when the test ends.
//
// The nodes run with cluster-node-timeout 1000, so a killed primary is
// replaced by its replica about 2 s later.
type Cluster struct {
	t     testing.TB
	Nodes []*ClusterNode
}

// ClusterNode is one redis-server of a Cluster.
type ClusterNode struct {
	*RedisServer
	BusPort int           // the cluster bus port (cluster-port)
	ID      string        // the node id (stable across restarts: it is in nodes.conf)
	admin   *redis.Client // administrative client (no retries)
}

// ClusterNodeTimeout is the cluster-node-timeout of every node.
const ClusterNodeTimeout = time.Second

// StartCluster starts six cluster-enabled redis-servers, joins them into a
// cluster of three primaries with a replica each, and waits until every
// node agrees on the slot map and reports cluster_state:ok. It skips like
// StartRedis when the shared Redis is not configured, and fails if
// redis-server lacks cluster support.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	RedisAddr(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli not found: %v", err)
	}
	c := &Cluster{t: t}
	for range 6 {
		dir := t.TempDir()
		bus := freePort(t)
		s := StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(bus), "--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout.Milliseconds())),
			"--dir", dir, "--cluster-require-full-coverage", "yes", "--cluster-allow-replica-migration", "no")
		n := &ClusterNode{RedisServer: s, BusPort: bus}
		n.admin = redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { n.admin.Close() })
		c.Nodes = append(c.Nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		id, err := n.admin.ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatalf("CLUSTER MYID on %s (does redis-server support cluster mode?): %v", n.Addr(), err)
		}
		n.ID = id
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitOK(60 * time.Second); err != nil {
		t.Fatalf("cluster not ready: %v", err)
	}
	return c
}

// Addrs are the addresses of every node, primaries and replicas.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// NewClient returns a cluster client of the cluster (ContextTimeoutEnabled,
// otherwise go-redis defaults, then edit applied if not nil), closed when
// the test ends.
func (c *Cluster) NewClient(edit func(*redis.ClusterOptions)) *redis.ClusterClient {
	o := &redis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true}
	if edit != nil {
		edit(o)
	}
	rdb := redis.NewClusterClient(o)
	c.t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Node returns the node listening on addr, or nil.
func (c *Cluster) Node(addr string) *ClusterNode {
	for _, n := range c.Nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// Admin returns an administrative client of the node at addr (no retries,
// deadlines honoured); it belongs to the cluster.
func (c *Cluster) Admin(addr string) *redis.Client {
	if n := c.Node(addr); n != nil {
		return n.admin
	}
	return nil
}

// Slot returns the hash slot of key (as CRC16 mod 16384 with hash tags, the
// cluster's own rule).
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % 16384)
}

// crc16 is CRC-16/XMODEM, the cluster's key hash.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// slotMap is one node's view of the cluster: slot owner by slot range, and
// each primary's replicas.
type slotMap struct {
	owner    [16384]string       // primary address of each slot
	replicas map[string][]string // primary → its replicas' addresses
}

// view reads the slot map as the node at addr sees it (CLUSTER NODES).
func (c *Cluster) view(ctx context.Context, addr string) (*slotMap, error) {
	s, err := c.Admin(addr).ClusterNodes(ctx).Result()
	if err != nil {
		return nil, err
	}
	m := &slotMap{replicas: map[string][]string{}}
	byID := map[string]string{}
	type rep struct{ addr, master string }
	var reps []rep
	for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		a, _, _ := strings.Cut(f[1], "@")
		byID[f[0]] = a
		flags := f[2]
		if strings.Contains(flags, "fail") && !strings.Contains(flags, "fail?") {
			continue
		}
		switch {
		case strings.Contains(flags, "master"):
			for _, r := range f[8:] {
				if strings.HasPrefix(r, "[") { // a slot being migrated or imported
					continue
				}
				lo, hi, ok := strings.Cut(r, "-")
				if !ok {
					hi = lo
				}
				l, err1 := strconv.Atoi(lo)
				h, err2 := strconv.Atoi(hi)
				if err1 != nil || err2 != nil {
					continue
				}
				for i := l; i <= h; i++ {
					m.owner[i] = a
				}
			}
		case strings.Contains(flags, "slave"):
			reps = append(reps, rep{a, f[3]})
		}
	}
	for _, r := range reps {
		if p := byID[r.master]; p != "" {
			m.replicas[p] = append(m.replicas[p], r.addr)
		}
	}
	for p := range m.replicas {
		sort.Strings(m.replicas[p])
	}
	return m, nil
}

// running returns the nodes whose process is running.
func (c *Cluster) running() []*ClusterNode {
	var out []*ClusterNode
	for _, n := range c.Nodes {
		if n.PID() != 0 {
			out = append(out, n)
		}
	}
	return out
}

// WaitOK waits until every running node reports cluster_state:ok, they all
// see the same owner of every slot, every slot's owner is a running node
// that says it is a primary, and every running replica's link to its
// primary is up.
func (c *Cluster) WaitOK(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = c.ok(); last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return last
}

func (c *Cluster) ok() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var ref *slotMap
	for _, n := range c.running() {
		info, err := n.admin.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr(), err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state not ok", n.Addr())
		}
		m, err := c.view(ctx, n.Addr())
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr(), err)
		}
		if ref == nil {
			ref = m
			continue
		}
		if m.owner != ref.owner {
			return fmt.Errorf("%s disagrees on the slot map", n.Addr())
		}
	}
	if ref == nil {
		return errors.New("no node running")
	}
	for i, o := range ref.owner {
		if o == "" {
			return fmt.Errorf("slot %d has no owner", i)
		}
		if c.Node(o) == nil || c.Node(o).PID() == 0 {
			return fmt.Errorf("slot %d: owner %s is not running", i, o)
		}
	}
	for _, n := range c.running() {
		info, err := n.admin.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if strings.Contains(info, "role:slave") && !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("replica %s: link to its primary is down", n.Addr())
		}
	}
	return nil
}

// Owner returns the address of the primary that serves slot, as the first
// running node sees it.
func (c *Cluster) Owner(ctx context.Context, slot int) (string, error) {
	for _, n := range c.running() {
		m, err := c.view(ctx, n.Addr())
		if err != nil {
			continue
		}
		if o := m.owner[slot]; o != "" {
			return o, nil
		}
	}
	return "", fmt.Errorf("no running node knows the owner of slot %d", slot)
}

// Primaries returns the addresses of the primaries that own slots.
func (c *Cluster) Primaries(ctx context.Context) ([]string, error) {
	for _, n := range c.running() {
		m, err := c.view(ctx, n.Addr())
		if err != nil {
			continue
		}
		seen := map[string]bool{}
		var out []string
		for _, o := range m.owner {
			if o != "" && !seen[o] {
				seen[o] = true
				out = append(out, o)
			}
		}
		sort.Strings(out)
		return out, nil
	}
	return nil, errors.New("no running node answers")
}

// Replica returns a running replica of the primary at addr.
func (c *Cluster) Replica(ctx context.Context, primary string) (string, error) {
	for _, n := range c.running() {
		m, err := c.view(ctx, n.Addr())
		if err != nil {
			continue
		}
		for _, r := range m.replicas[primary] {
			if c.Node(r) != nil && c.Node(r).PID() != 0 {
				return r, nil
			}
		}
	}
	return "", fmt.Errorf("no running replica of %s", primary)
}

// Failover makes the replica of slot's primary take over (CLUSTER FAILOVER
// on the replica: a coordinated failover that loses no acknowledged write)
// and waits until the cluster is ok with it as the owner. It returns the
// old and the new primary.
func (c *Cluster) Failover(slot int, timeout time.Duration) (old, primary string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if old, err = c.Owner(ctx, slot); err != nil {
		return "", "", err
	}
	if primary, err = c.Replica(ctx, old); err != nil {
		return old, "", err
	}
	if err = c.Admin(primary).Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		return old, primary, fmt.Errorf("CLUSTER FAILOVER on %s: %w", primary, err)
	}
	return old, primary, c.waitOwner(ctx, slot, primary)
}

// KillPrimary kills slot's primary with SIGKILL, waits until its replica
// is promoted and the cluster is ok again, then restarts the old primary
// (from its nodes.conf, without data: it rejoins as a replica of the new
// one and resynchronises). It returns the old and the new primary.
func (c *Cluster) KillPrimary(slot int, timeout time.Duration) (old, primary string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if old, err = c.Owner(ctx, slot); err != nil {
		return "", "", err
	}
	if primary, err = c.Replica(ctx, old); err != nil {
		return old, "", err
	}
	c.Kill(old)
	err = c.waitOwner(ctx, slot, primary)
	c.Restart(old)
	if err == nil {
		err = c.waitOK(ctx)
	}
	return old, primary, err
}

// Kill stops the node at addr with SIGKILL.
func (c *Cluster) Kill(addr string) {
	if n := c.Node(addr); n != nil {
		n.Stop()
	}
}

// Restart starts the node at addr again (after Kill), on the same ports
// and nodes.conf, and waits until it answers.
func (c *Cluster) Restart(addr string) {
	if n := c.Node(addr); n != nil {
		n.Start()
	}
}

func (c *Cluster) waitOwner(ctx context.Context, slot int, want string) error {
	for {
		if o, err := c.Owner(ctx, slot); err == nil && o == want && c.ok() == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			o, _ := c.Owner(context.Background(), slot)
			return fmt.Errorf("slot %d still served by %q, not %s: %w (%v)", slot, o, want, ctx.Err(), c.ok())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) waitOK(ctx context.Context) error {
	for {
		err := c.ok()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// MigrateSlot moves slot, with its keys, from its primary to the primary
// at to (another primary), as redis-cli --cluster reshard does: SETSLOT
// IMPORTING and MIGRATING, MIGRATE of its keys in batches, then SETSLOT
// NODE on every primary. Clients see ASK redirections while it runs and
// MOVED afterwards. It returns the slot's former owner.
func (c *Cluster) MigrateSlot(slot int, to string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	from, err := c.Owner(ctx, slot)
	if err != nil {
		return "", err
	}
	if from == to {
		return from, fmt.Errorf("slot %d is already on %s", slot, to)
	}
	src, dst := c.Node(from), c.Node(to)
	if src == nil || dst == nil {
		return from, fmt.Errorf("unknown node %s or %s", from, to)
	}
	if err := dst.admin.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", src.ID).Err(); err != nil {
		return from, fmt.Errorf("SETSLOT IMPORTING on %s: %w", to, err)
	}
	if err := src.admin.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst.ID).Err(); err != nil {
		return from, fmt.Errorf("SETSLOT MIGRATING on %s: %w", from, err)
	}
	for {
		keys, err := src.admin.ClusterGetKeysInSlot(ctx, slot, 100).Result()
		if err != nil {
			return from, err
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", "127.0.0.1", dst.Port, "", 0, 5000, "REPLACE", "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := src.admin.Do(ctx, args...).Err(); err != nil && !strings.HasPrefix(err.Error(), "NOKEY") {
			return from, fmt.Errorf("MIGRATE: %w", err)
		}
	}
	// The target first, so that the slot is never owned by nobody; then the
	// source, then every other primary (redis-cli's order).
	if err := dst.admin.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dst.ID).Err(); err != nil {
		return from, fmt.Errorf("SETSLOT NODE on %s: %w", to, err)
	}
	if err := src.admin.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dst.ID).Err(); err != nil {
		return from, fmt.Errorf("SETSLOT NODE on %s: %w", from, err)
	}
	prim, err := c.Primaries(ctx)
	if err != nil {
		return from, err
	}
	for _, p := range prim {
		if p != from && p != to {
			_ = c.Admin(p).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dst.ID).Err()
		}
	}
	return from, c.waitOwner(ctx, slot, to)
}

// OtherPrimary returns a primary other than addr.
func (c *Cluster) OtherPrimary(ctx context.Context, addr string) (string, error) {
	prim, err := c.Primaries(ctx)
	if err != nil {
		return "", err
	}
	for _, p := range prim {
		if p != addr {
			return p, nil
		}
	}
	return "", errors.New("no other primary")
}
