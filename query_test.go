package gormcache

import (
	"context"
	"reflect"
	"testing"
	"time"

	"gorm.io/gorm"
)

// listOf is the cached query of the tests: org 1's users, by name.
func listOf(db *gorm.DB) ([]user, error) {
	var us []user
	err := db.Clauses(Cached).Where("org_id = ?", 1).Order("name").Find(&us).Error
	return us, err
}

// TestQueryCacheHit: a second run of a cached query reads no database list
// (the list comes from the cache, its rows from the row cache).
func TestQueryCacheHit(t *testing.T) {
	f := newFleet(t, 1, nil)
	seedUsers(t, f)
	in := f.in[0]
	p := in.db.Config.Plugins[Name].(*Plugin)
	first, err := listOf(in.db)
	if err != nil {
		t.Fatal(err)
	}
	loads := p.Stats().QueryLoads
	for range 3 {
		again, err := listOf(in.db)
		if err != nil || !reflect.DeepEqual(again, first) {
			t.Fatalf("again: %+v %v, first %+v", again, err, first)
		}
	}
	if st := p.Stats(); st.QueryLoads != loads || st.QueryReads < 4 {
		t.Fatalf("hits ran the query: %+v", st)
	}
	var want []user
	f.base.Where("org_id = ?", 1).Order("name").Find(&want)
	if !reflect.DeepEqual(first, want) {
		t.Fatalf("cached query %+v; GORM reads %+v", first, want)
	}
}

// TestQueryCacheCoherent: after any write that changes what a cached query
// returns — an insert, an update of the filtered column, a delete, a raw
// statement, a repository write — the writer reads the new list at once and
// another instance within B.
func TestQueryCacheCoherent(t *testing.T) {
	ctx := context.Background()
	writes := []struct {
		name  string
		write func(f *fleet) error
	}{
		{"Create matching", func(f *fleet) error {
			return f.in[0].db.Create(&user{ID: 20, Token: "t20", OrgID: 1, Name: "aa"}).Error
		}},
		{"Update filter column", func(f *fleet) error { return f.in[0].db.Model(&user{ID: 2}).Update("org_id", 2).Error }},
		{"Update into the filter", func(f *fleet) error {
			return f.in[0].db.Model(&user{}).Where("id = ?", 4).Update("org_id", 1).Error
		}},
		{"Update sort column", func(f *fleet) error { return f.in[0].db.Model(&user{ID: 2}).Update("name", "0").Error }},
		{"Delete", func(f *fleet) error { return f.in[0].db.Delete(&user{ID: 1}).Error }},
		{"Exec raw INSERT", func(f *fleet) error {
			return f.in[0].db.Exec(`INSERT INTO ` + table(f.base, &user{}) + ` (id, token, org_id, name) VALUES (21, 't21', 1, 'zz')`).Error
		}},
		{"Repository Create", func(f *fleet) error {
			return f.in[0].users.Create(ctx, &user{ID: 22, Token: "t22", OrgID: 1, Name: "mm"})
		}},
		{"Repository Delete", func(f *fleet) error { return f.in[0].users.Delete(ctx, &user{ID: 2}) }},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			f := newFleet(t, 2, nil)
			seedUsers(t, f)
			f.seed(t, user{ID: 4, Token: "t4", OrgID: 2, Name: "d"})
			for _, in := range f.in {
				if _, err := listOf(in.db); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.write(f); err != nil {
				t.Fatal(err)
			}
			var want []user
			f.base.Where("org_id = ?", 1).Order("name").Find(&want)
			if got, _ := listOf(f.in[0].db); !reflect.DeepEqual(got, want) {
				t.Fatalf("the writer reads %+v; the database has %+v", got, want)
			}
			deadline := time.Now().Add(B)
			for {
				got, err := listOf(f.in[1].db)
				if err != nil {
					t.Fatal(err)
				}
				if reflect.DeepEqual(got, want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the other instance reads %+v %v after the write; the database has %+v", got, B, want)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// TestQueryNotCached: queries whose result depends on more than the table
// and their arguments go to the database every time.
func TestQueryNotCached(t *testing.T) {
	f := newFleet(t, 1, nil)
	seedUsers(t, f)
	db := f.in[0].db
	p := db.Config.Plugins[Name].(*Plugin)
	tb := table(f.base, &user{})
	for name, q := range map[string]func(db *gorm.DB, us *[]user) error{
		"subquery": func(db *gorm.DB, us *[]user) error {
			return db.Where("org_id IN (?)", f.base.Table(tb).Select("org_id").Where("id = 1")).Find(us).Error
		},
		"raw subquery": func(db *gorm.DB, us *[]user) error {
			return db.Where("org_id IN (SELECT org_id FROM " + tb + " WHERE id = 1)").Find(us).Error
		},
		"now()": func(db *gorm.DB, us *[]user) error { return db.Where("id < extract(epoch from now())").Find(us).Error },
		"Group": func(db *gorm.DB, us *[]user) error { return db.Select("org_id").Group("org_id").Find(us).Error },
	} {
		t.Run(name, func(t *testing.T) {
			var want, got []user
			werr := q(f.base, &want)
			passed := p.Stats().Passed
			gerr := q(db.Clauses(Cached), &got)
			if p.Stats().Passed != passed+1 || !reflect.DeepEqual(got, want) || (werr == nil) != (gerr == nil) {
				t.Fatalf("got %+v (%v), want %+v (%v); %+v", got, gerr, want, werr, p.Stats())
			}
		})
	}
}
