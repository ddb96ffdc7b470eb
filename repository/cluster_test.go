package repository

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/testenv"
	"github.com/gormcache/gormcache/invalidation"
)

// TestCluster runs two instances of the repository (each its own cluster
// client, cache and bus) on a real Redis Cluster and the real PostgreSQL:
// every write on one is read at once by itself and within the bus's bound
// by the other.
func TestCluster(t *testing.T) {
	rc := testenv.StartCluster(t)
	db := testenv.PostgresPrefixed(t)
	if err := db.AutoMigrate(&account{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	admin := rc.NewClient(nil)
	ns := testenv.Namespace(t, admin)
	type inst struct {
		c   *cache.Cache
		bus *invalidation.Bus
		r   *Repository[account, int64]
	}
	var ins []inst
	for i := range 2 {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs(), ContextTimeoutEnabled: true})
		c, err := cache.New(ctx, cache.Options{Redis: rdb, Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		bus, err := invalidation.New(ctx, c, invalidation.Options{InstanceID: fmt.Sprintf("i%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bus.Close(); c.Close(); rdb.Close() })
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err = bus.WaitHealthy(wctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		r, err := New[account, int64](db, c, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, inst{c, bus, r})
	}
	a, b := ins[0], ins[1]
	var ids []int64
	for i := range 12 {
		v := &account{Email: fmt.Sprintf("c%d@example.com", i), Name: "v1"}
		if err := a.r.Create(ctx, v); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	// fresh polls b until row id reads name, failing on a stale read that
	// began more than B plus a slack after the write returned.
	fresh := func(in inst, id int64, name string, acked time.Time) {
		t.Helper()
		bound := acked.Add(invalidation.DefaultHealthWindow + 250*time.Millisecond)
		testenv.Eventually(t, 15*time.Second, func() bool {
			began := time.Now()
			v, err := in.r.Get(ctx, id)
			if err == nil && v.Name == name {
				return true
			}
			if err == nil && began.After(bound) {
				t.Fatalf("stale read of %d: %q %v after the write", id, v.Name, began.Sub(acked))
			}
			return false
		}, "row %d never read as %q", id, name)
	}
	for _, in := range ins { // warm both tiers on both instances
		got, err := in.r.GetMany(ctx, ids)
		if err != nil || len(got) != len(ids) {
			t.Fatalf("GetMany: %d rows, %v", len(got), err)
		}
		for _, id := range ids {
			if _, err := in.r.Get(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}

	v, err := a.r.Get(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	v.Name = "v2"
	if err := a.r.Update(ctx, v); err != nil {
		t.Fatal(err)
	}
	acked := time.Now()
	if got, _ := a.r.Get(ctx, ids[0]); got.Name != "v2" {
		t.Fatalf("the writer read %q", got.Name)
	}
	fresh(b, ids[0], "v2", acked)

	// A transaction's writes span the cluster's nodes.
	err = Transaction(ctx, db, func(tx *Tx) error {
		for _, id := range ids[1:7] {
			v, err := a.r.WithTx(tx).Get(ctx, id)
			if err != nil {
				return err
			}
			v.Name = "tx"
			if err := a.r.WithTx(tx).Update(ctx, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	acked = time.Now()
	for _, id := range ids[1:7] {
		fresh(b, id, "tx", acked)
	}
	got, err := b.r.GetMany(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range got {
		if (g.ID == ids[0] && g.Name != "v2") || (g.ID != ids[0] && g.ID <= ids[6] && g.Name != "tx") {
			t.Fatalf("GetMany on b: row %d %q", g.ID, g.Name)
		}
	}

	// A delete on b, and a write around the library followed by Invalidate.
	del, err := b.r.Get(ctx, ids[7])
	if err != nil {
		t.Fatal(err)
	}
	if err := b.r.Delete(ctx, del); err != nil {
		t.Fatal(err)
	}
	acked = time.Now()
	testenv.Eventually(t, 15*time.Second, func() bool {
		began := time.Now()
		_, err := a.r.Get(ctx, ids[7])
		if err == nil && began.After(acked.Add(invalidation.DefaultHealthWindow+250*time.Millisecond)) {
			t.Fatalf("deleted row %d still served %v after the delete", ids[7], began.Sub(acked))
		}
		return errors.Is(err, gorm.ErrRecordNotFound)
	}, "deleted row still served")
	if err := db.Model(&account{}).Where("id = ?", ids[8]).Update("name", "outside").Error; err != nil {
		t.Fatal(err)
	}
	if err := a.r.Invalidate(ctx, ids[8]); err != nil {
		t.Fatal(err)
	}
	fresh(b, ids[8], "outside", time.Now())
}
