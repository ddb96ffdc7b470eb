package repository

import (
	"context"
	"reflect"
	"testing"

	"gorm.io/gorm"
)

// TestFind: a cached query returns what GORM's Find returns, a second run
// reads no list from the database, and writes through the repository that
// change the result (an insert, an update of the filtered column, a delete)
// make the next run correct.
func TestFind(t *testing.T) {
	e := newEnv(t, nil)
	r := accounts(t, e)
	ctx := context.Background()
	for i, name := range []string{"a", "b", "c"} {
		if err := r.Create(ctx, &account{ID: int64(i + 1), Email: name + "@x", Name: name, Balance: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	rich := func(q *gorm.DB) *gorm.DB { return q.Where("balance >= ?", 1).Order("name DESC") }
	check := func(what string) {
		t.Helper()
		got, err := r.Find(ctx, rich)
		if err != nil {
			t.Fatal(err)
		}
		var want []account
		e.db.Where("balance >= ?", 1).Order("name DESC").Find(&want)
		if len(got) != len(want) {
			t.Fatalf("%s: %d rows, want %d", what, len(got), len(want))
		}
		for i := range want {
			if !reflect.DeepEqual(*got[i], want[i]) {
				t.Fatalf("%s: row %d is %+v, want %+v", what, i, *got[i], want[i])
			}
		}
	}
	check("first run")
	before := e.c.Stats().Loads
	check("second run")
	if n := e.c.Stats().Loads - before; n != 0 {
		t.Fatalf("the second run loaded %d entries from the database", n)
	}
	if err := r.Create(ctx, &account{ID: 4, Email: "d@x", Name: "d", Balance: 5}); err != nil {
		t.Fatal(err)
	}
	check("after an insert")
	a, _ := r.Get(ctx, 1)
	a.Balance = 9
	if err := r.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	check("after an update into the filter")
	b, _ := r.Get(ctx, 2)
	if err := r.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	check("after a delete")
	if _, err := r.Find(ctx, nil); err == nil {
		t.Fatal("nil scope accepted")
	}
	// Not cacheable: runs on the database, still right.
	got, err := r.Find(ctx, func(q *gorm.DB) *gorm.DB { return q.Where("created_at < now()") })
	if err != nil || len(got) != 3 {
		t.Fatalf("volatile query: %d rows, %v", len(got), err)
	}
}
