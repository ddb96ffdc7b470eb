package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/gormcache/gormcache/example/internal/demoenv"
)

// proc is a running instance process.
type proc struct {
	n   int
	cmd *exec.Cmd
	in  *json.Encoder
	out *bufio.Scanner
}

func (p *proc) call(req request) (response, error) {
	if err := p.in.Encode(req); err != nil {
		return response{}, fmt.Errorf("instance %d: %w", p.n, err)
	}
	if !p.out.Scan() {
		return response{}, fmt.Errorf("instance %d exited: %v", p.n, p.out.Err())
	}
	var r response
	if err := json.Unmarshal(p.out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("instance %d: %w", p.n, err)
	}
	if r.Err != "" {
		return r, fmt.Errorf("instance %d: %s", p.n, r.Err)
	}
	return r, nil
}

// all sends req to every instance at once and returns the responses in order.
func all(ps []*proc, req func(p *proc) request) ([]response, error) {
	out := make([]response, len(ps))
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = p.call(req(p))
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func step(name, format string, args ...any) {
	fmt.Printf("[%-9s] %s\n", name, fmt.Sprintf(format, args...))
}

func runParent(redisAddr, dsn string, n int, duration time.Duration) error {
	if n < 2 {
		return errors.New("-instances must be at least 2")
	}
	ctx := context.Background()
	env, err := demoenv.Open(redisAddr, dsn)
	if err != nil {
		return err
	}
	defer env.Close()
	fmt.Println("gormcache multi-instance demo:", env.Describe())

	const rows = 1000
	db := env.DB
	db.Migrator().DropTable(&Product{})
	if err := db.AutoMigrate(&Product{}); err != nil {
		return err
	}
	defer db.Migrator().DropTable(&Product{})
	seed := make([]Product, rows)
	for i := range seed {
		seed[i] = Product{ID: int64(i + 1), SKU: fmt.Sprintf("SKU-%04d", i+1), Name: "Product " + strconv.Itoa(i+1), PriceCents: 1000, Version: 1}
	}
	if err := db.CreateInBatches(seed, 200).Error; err != nil {
		return err
	}
	step("setup", "seeded %d products at version 1", rows)

	var tag [4]byte
	rand.Read(tag[:])
	namespace := "demo-" + hex.EncodeToString(tag[:])
	defer func() {
		keys, _ := env.Redis.Keys(ctx, namespace+":*").Result()
		if len(keys) > 0 {
			env.Redis.Del(ctx, keys...)
		}
	}()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	defer dropFeed(env, namespace) // after the instances (and their relays) stopped
	var ps []*proc
	defer func() {
		for _, p := range ps {
			p.in.Encode(request{Cmd: "quit"})
			p.cmd.Wait()
		}
	}()
	for i := 1; i <= n; i++ {
		cmd := exec.Command(exe, "-child", strconv.Itoa(i), "-redis", env.RedisAddr, "-dsn", env.DSN, "-namespace", namespace)
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		ps = append(ps, &proc{n: i, cmd: cmd, in: json.NewEncoder(io.Writer(stdin)), out: sc})
	}
	// The first exchange waits for every instance to be up and subscribed.
	if _, err := all(ps, func(*proc) request { return request{Cmd: "read"} }); err != nil {
		return err
	}
	pids := make([]string, len(ps))
	for i, p := range ps {
		pids[i] = strconv.Itoa(p.cmd.Process.Pid)
	}
	step("start", "%d instances running (pids %s), each with its own L1, subscribed to the bus", n, strings.Join(pids, ", "))

	// Reads: misses, then hits.
	ids := []int64{1, 2, 3, 4, 5}
	for pass := 1; pass <= 2; pass++ {
		for _, p := range ps {
			r, err := p.call(request{Cmd: "read", IDs: ids})
			if err != nil {
				return err
			}
			step("read", "pass %d, instance %d reads products 1-5: %s", pass, p.n, countTiers(r.Tiers))
		}
	}

	// An update on instance 1, seen by all.
	up, err := ps[0].call(request{Cmd: "update", ID: 1})
	if err != nil {
		return err
	}
	step("update", "instance 1 updates product 1: version 1 -> %d (committed)", up.Version)
	ws, err := all(ps, func(*proc) request { return request{Cmd: "watch", ID: 1, Version: up.Version, Since: up.At} })
	if err != nil {
		return err
	}
	for i, w := range ws {
		step("propagate", "instance %d reads product 1 at version %d from %s, %v after the commit returned", i+1, w.Version, w.Tiers[0], w.Took.Round(time.Microsecond))
	}

	// A stampede on a cold key.
	const readers = 200
	st, err := all(ps, func(*proc) request { return request{Cmd: "stampede", ID: 999, N: readers} })
	if err != nil {
		return err
	}
	var qs []string
	for i, s := range st {
		qs = append(qs, fmt.Sprintf("instance %d: %d", i+1, s.Queries))
	}
	step("stampede", "%d concurrent readers per instance on cold product 999; database queries (at most one per instance): %s", readers, strings.Join(qs, ", "))

	// Lost messages: kill every subscription.
	before, err := all(ps, func(*proc) request { return request{Cmd: "stats"} })
	if err != nil {
		return err
	}
	if err := env.KillSubscriptions(ctx); err != nil {
		return err
	}
	rec, err := all(ps, func(p *proc) request {
		return request{Cmd: "wait-recovery", N: int(before[p.n-1].Stats.Subscribes) + 1}
	})
	if err != nil {
		return err
	}
	for i, r := range rec {
		step("kill", "instance %d lost its subscription, stopped serving L1, resubscribed, flushed L1 and recovered in %v", i+1, r.Took.Round(time.Millisecond))
	}
	if r, err := ps[1].call(request{Cmd: "read", IDs: []int64{2}}); err == nil {
		step("kill", "instance 2 re-reads product 2 after the flush: from %s", r.Tiers[0])
	}

	// Mixed traffic, every read checked.
	step("load", "%v of mixed traffic: 4 readers per instance on 20 hot products, instance 1 also writing; every read checked against the log of acknowledged writes", duration)
	if _, err := all(ps, func(p *proc) request {
		return request{Cmd: "load", Duration: duration, Writer: p.n == 1}
	}); err != nil {
		return err
	}

	// The change feed: a write no instance made.
	if err := runFeed(ctx, env, ps, namespace); err != nil {
		return err
	}

	// Summary.
	final, err := all(ps, func(*proc) request { return request{Cmd: "stats"} })
	if err != nil {
		return err
	}
	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 2, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "instance\treads L1\treads L2\treads loaded\tDB queries\tinval sent\tinval recv\tkeys evicted\tprop p50\tprop p99\treads checked\tstale reads\t")
	var stale int64
	for i, r := range final {
		s := r.Stats
		stale += s.Stale
		fmt.Fprintf(w, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%v\t%v\t%d\t%d\t\n", i+1, s.L1, s.L2, s.DBReads, s.Queries, s.Sent, s.Received, s.Applied,
			s.LagP50.Round(time.Microsecond), s.LagP99.Round(time.Microsecond), s.Checked, s.Stale)
	}
	w.Flush()
	fmt.Printf("\nwrites during the load: %d (conflicts retried: %d, degraded: %d); stale reads observed: %d\n", final[0].Stats.Writes, final[0].Stats.Conflicts, final[0].Stats.Degraded, stale)
	if stale != 0 {
		for i, r := range final {
			if r.Stats.StaleExample != "" {
				fmt.Printf("instance %d, first stale read: %s\n", i+1, r.Stats.StaleExample)
			}
		}
		return fmt.Errorf("%d stale reads", stale)
	}
	return nil
}

func countTiers(tiers []string) string {
	counts := map[string]int{}
	for _, t := range tiers {
		counts[t]++
	}
	var parts []string
	for _, t := range []string{"database", "L2", "L1"} {
		if counts[t] > 0 {
			parts = append(parts, fmt.Sprintf("%d from %s", counts[t], t))
		}
	}
	return strings.Join(parts, ", ")
}
