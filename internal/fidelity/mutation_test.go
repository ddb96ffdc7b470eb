package fidelity

import (
	"fmt"
	"testing"

	"github.com/gormcache/gormcache/cache"
)

// TestMutationIsolation mutates everything reachable from the values the
// repository returns (see mutateAll) and checks that what it serves next,
// from L1 and from Redis, is still what db.First returns.
func TestMutationIsolation(t *testing.T) {
	for _, s := range shapes() {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			s.mutation(t)
		})
	}
}

func (s *shape[T, ID]) mutation(t *testing.T) {
	f := s.seed(t)
	for _, cd := range codecs {
		t.Run(cd.name+"/Get", func(t *testing.T) { f.mutateGet(t, newCache(t, f.rdb, cd.codec)) })
		t.Run(cd.name+"/GetMany", func(t *testing.T) { f.mutateGetMany(t, newCache(t, f.rdb, cd.codec), cd.codec) })
	}
}

// mutateGet: Get (miss), mutate; Get (L1), mutate; Get (Redis), mutate;
// Get (L1 again, filled from Redis).
func (f *fixture[T, ID]) mutateGet(t *testing.T, c *cache.Cache) {
	r := f.repo(t, c)
	for i, id := range f.ids {
		if !f.live[i] {
			continue
		}
		want, err := f.first(id)
		if err != nil {
			t.Fatal(err)
		}
		for step, tr := range []tier{missTier, l1Tier, redisTier, l1Tier} {
			what := fmt.Sprintf("Get(%v) row %d, read %d (%s) after mutating every earlier result", id, i, step+1, tr)
			prepare(c, tr, f.big[i])
			before := c.Stats()
			got, err := r.Get(ctx, id)
			if step > 0 {
				checkTier(t, what, tr, before, c.Stats(), !f.big[i], f.big[i])
			}
			f.compare(t, what, got, err, want, nil)
			if got != nil {
				mutateAll(got)
			}
		}
	}
}

// mutateGetMany: GetMany of every live id, mutate all; again (L1), mutate;
// then, for each live id and tier, a GetMany with that id twice, mutating
// the first copy before comparing the second.
func (f *fixture[T, ID]) mutateGetMany(t *testing.T, c *cache.Cache, codec cache.Codec) {
	r := f.repo(t, c)
	var ids []ID
	for i, id := range f.ids {
		if f.live[i] {
			ids = append(ids, id)
		}
	}
	want := f.find(t, ids)
	for step, tr := range []tier{missTier, l1Tier, redisTier} {
		what := fmt.Sprintf("GetMany(live ids), read %d (%s) after mutating every earlier result", step+1, tr)
		prepare(c, tr, len(f.s.big) > 0)
		got, err := r.GetMany(ctx, ids)
		f.checkMany(t, what, ids, got, err, want)
		for _, v := range got {
			if v != nil {
				mutateAll(v)
			}
		}
	}
	for _, tr := range tiers {
		rr := r
		if tr == missTier { // a fresh namespace: nothing cached yet
			rr = f.repo(t, newCache(t, f.rdb, codec))
		}
		for _, id := range ids {
			dup := []ID{id, id}
			prepare(c, tr, len(f.s.big) > 0)
			got, err := rr.GetMany(ctx, dup)
			if err != nil || len(got) != 2 || got[0] == nil || got[1] == nil {
				t.Errorf("GetMany(%v), %s: %v, %v", dup, tr, got, err)
				continue
			}
			mutateAll(got[0])
			checkEqual(t, fmt.Sprintf("GetMany(%v), %s: element 1 after mutating element 0", dup, tr), got[1], want[id])
		}
	}
}
