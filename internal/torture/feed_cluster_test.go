package torture

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/internal/testenv"
)

// prefixedOn is testenv.PostgresPrefixed on dsn (the logical cluster): a
// GORM handle whose tables carry a prefix unique to t, dropped when t ends.
func prefixedOn(t *testing.T, dsn string) *gorm.DB {
	t.Helper()
	prefix := testenv.Name(t) + "_"
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard, NamingStrategy: schema.NamingStrategy{TablePrefix: prefix}})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var tables []string
		db.Raw(`SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND starts_with(tablename, ?)`, prefix).Scan(&tables)
		for _, tb := range tables {
			db.Exec(`DROP TABLE IF EXISTS "` + tb + `" CASCADE`)
		}
		sqlDB.Close()
	})
	return db
}

// startFeed names the relays' slot and publication (each instance runs a
// relay on them), drops both when the test ends (after the instances are
// killed: the cleanup is registered before theirs), and opens the external
// writer on dsn.
func (cl *cluster) startFeed(dsn string) {
	t := cl.t
	cl.slot = testenv.Name(t)
	t.Cleanup(func() { testenv.DropSlot(t, dsn, cl.slot, cl.slot) })
	stmt := &gorm.Statement{DB: cl.db}
	if err := stmt.Parse(&Row{}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cl.dir, "ops-external.jsonl")
	log, err := CreateLog(path)
	if err != nil {
		t.Fatal(err)
	}
	p := cl.p
	x, err := NewExternalWriter(instanceDSN(dsn, cl.appName+"_external", nil), stmt.Quote(stmt.Table), log,
		min(p.hotRows, p.rows), int64(p.rows+p.outsideRows+p.longRows), p.externalRows, cl.rng.Uint64())
	if err != nil {
		t.Fatal(err)
	}
	cl.ext, cl.extTail = x, NewTail(path)
	t.Cleanup(func() {
		x.Close()
		log.Close()
	})
}

// externalBurst runs the external writer for d. Every other burst (the
// first included) it also kills -9 the instance whose relay holds the
// feed's lease while the writes go on (for at least two lease lifetimes:
// the takeover happens under them), then starts a replacement.
func (cl *cluster) externalBurst(d time.Duration) error {
	cl.ext.Start(2)
	defer cl.ext.Stop()
	begun := time.Now()
	if cl.faults[fExternal]%2 == 0 && len(cl.live()) >= 2 && !cl.p.noRelays {
		// The bound is stated for one leader's death: a write committed
		// during a takeover waits for that takeover only. Killing the new
		// leader before it applied its backlog would stack two.
		caughtUp := cl.feedCaughtUp(30 * time.Second)
		leader, err := cl.feedLeader()
		if err != nil {
			return err
		}
		switch {
		case !caughtUp:
			cl.notes["external writer: kill skipped, the feed had not caught up within 30 s"]++
		case leader < 0:
			cl.notes["external writer: no feed leader when a kill was due (election in progress)"]++
		default:
			if err := cl.crash(leader); err != nil {
				return err
			}
			cl.t.Logf("%s: %s: killed instance %d, the feed's leader", stamp(begun.UnixNano()), fExternal, cl.kids[leader].n)
			cl.notes["external writer: feed leader killed -9 (lease takeover)"]++
			time.Sleep(max(time.Until(begun.Add(d)), 2*feedLeaseTTL))
			return cl.replace()
		}
	}
	time.Sleep(d)
	return nil
}

// feedCaughtUp waits up to limit until the relays acknowledged (so applied)
// every transaction committed before the call: the slot's confirmed
// position reaches the WAL position read first.
func (cl *cluster) feedCaughtUp(limit time.Duration) bool {
	var lsn string
	if err := cl.db.Raw(`SELECT pg_current_wal_lsn()::text`).Scan(&lsn).Error; err != nil {
		return false
	}
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var done bool
		err := cl.db.Raw(`SELECT COALESCE(confirmed_flush_lsn >= ?::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = ?`, lsn, cl.slot).Scan(&done).Error
		if err == nil && done {
			return true
		}
	}
	return false
}

// feedLeader returns the index of the live instance whose relay holds the
// lease, or -1.
func (cl *cluster) feedLeader() (int, error) {
	for _, i := range cl.live() {
		r, err := cl.kids[i].call(request{Cmd: "status"}, 10*time.Second)
		if err != nil {
			return -1, err
		}
		if r.Status != nil && r.Status.FeedLeader {
			return i, nil
		}
	}
	return -1, nil
}

// crash makes instance i kill itself (-9) with no write in flight.
func (cl *cluster) crash(i int) error {
	k := cl.kids[i]
	if err := k.enc.Encode(request{Cmd: "crash"}); err != nil {
		return err
	}
	select {
	case <-k.exited:
	case <-time.After(20 * time.Second):
		return fmt.Errorf("instance %d did not crash", k.n)
	}
	for range k.lines {
	}
	k.gone = true
	return nil
}

// clusterSlot draws the slot a cluster fault moves: a hot row's (1-5,
// the busiest keys), the epoch key's, or the bus channel's (sharded
// pub/sub: the subscription is dropped and made again).
func (cl *cluster) clusterSlot() (string, int) {
	var key, what string
	switch n := cl.rng.IntN(5); n {
	case 0:
		key, what = cl.ns+":epoch{e}", "epoch key"
	case 1:
		key, what = cl.ns+":invalidations", "bus channel"
	default:
		id := 1 + cl.rng.IntN(min(5, cmp.Or(cl.p.hotRows, cl.p.rows)))
		key, what = cl.ns+":{"+RowKey(int64(id))+"}", "hot row "+strconv.Itoa(id)
	}
	return what, testenv.Slot(key)
}

// clusterFailover moves the drawn slot's primary to its replica: CLUSTER
// FAILOVER on the replica (coordinated: no acknowledged write lost), or a
// kill -9 of the primary (the replica is promoted after
// cluster-node-timeout, without what it had not replicated; the old
// primary comes back as its replica).
func (cl *cluster) clusterFailover() error {
	if err := cl.rc.WaitOK(30 * time.Second); err != nil {
		return err
	}
	what, slot := cl.clusterSlot()
	var old, now string
	var err error
	variant := "CLUSTER FAILOVER"
	if cl.rng.IntN(2) == 0 {
		old, now, err = cl.rc.Failover(slot, 20*time.Second)
	} else {
		variant = "kill -9 of the primary"
		old, now, err = cl.rc.KillPrimary(slot, 30*time.Second)
	}
	if err != nil {
		return fmt.Errorf("%s of slot %d (%s): %w", variant, slot, what, err)
	}
	cl.t.Logf("%s of slot %d (%s): %s → %s", variant, slot, what, old, now)
	cl.notes[fmt.Sprintf("cluster failover: %s, %s", variant, kindOf(what))]++
	return nil
}

// clusterMigrate moves the drawn slot, with its keys, to another primary.
func (cl *cluster) clusterMigrate() error {
	if err := cl.rc.WaitOK(30 * time.Second); err != nil {
		return err
	}
	what, slot := cl.clusterSlot()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	owner, err := cl.rc.Owner(ctx, slot)
	if err != nil {
		return err
	}
	to, err := cl.rc.OtherPrimary(ctx, owner)
	if err != nil {
		return err
	}
	if _, err := cl.rc.MigrateSlot(slot, to, 20*time.Second); err != nil {
		return fmt.Errorf("migrating slot %d (%s) to %s: %w", slot, what, to, err)
	}
	cl.t.Logf("slot %d (%s) migrated %s → %s", slot, what, owner, to)
	cl.notes["cluster migrate: "+kindOf(what)]++
	return nil
}

// kindOf drops a hot row's number, for the summary's counts.
func kindOf(what string) string {
	if strings.HasPrefix(what, "hot row") {
		return "hot row"
	}
	return what
}
