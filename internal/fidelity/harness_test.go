package fidelity

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/internal/testenv"
	"github.com/gormcache/gormcache/repository"
)

// suiteShape is one model shape, whatever its types.
type suiteShape interface {
	Name() string
	fidelity(t *testing.T)
	writeBack(t *testing.T)
	mutation(t *testing.T)
}

// shape describes one model T with primary key type ID, its rows and what
// the suite may do with them.
type shape[T any, ID comparable] struct {
	name string
	// extra are models migrated before T (the other side of associations).
	extra []any
	// before seeds what the rows refer to; after, what refers to them.
	before func(t *testing.T, db *gorm.DB)
	after  func(t *testing.T, db *gorm.DB, rows []T)
	// rows are created one by one with db.Create.
	rows func() []T
	// deleted are indexes of rows soft-deleted (db.Delete) after seeding.
	deleted []int
	// big are indexes of rows whose entry exceeds cache.Options.L1MaxEntryBytes.
	big []int
	// missing is an id no row has.
	missing ID
	// unique is a column GetBy may use ("" for none).
	unique string
	// change changes exactly one column of v and returns its name
	// (TestWriteBack); nil when the shape has no column to change.
	change func(v *T) string
	// count is a model whose row count Update must not change.
	count any
	// check adds assertions to the comparison with GORM (signed zeros).
	check func(t *testing.T, what string, got, want *T)
}

func (s *shape[T, ID]) Name() string { return s.name }

// fixture is a shape migrated and seeded in tables unique to a test.
type fixture[T any, ID comparable] struct {
	s     *shape[T, ID]
	db    *gorm.DB
	rdb   *redis.Client
	sch   *schema.Schema
	seeds []T
	ids   []ID
	live  []bool
	big   []bool
}

func (s *shape[T, ID]) seed(t *testing.T) *fixture[T, ID] {
	t.Helper()
	db := testenv.PostgresPrefixed(t)
	rdb := testenv.Redis(t)
	if err := db.AutoMigrate(append(slices.Clone(s.extra), new(T))...); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if s.before != nil {
		s.before(t, db)
	}
	rows := s.rows()
	for i := range rows {
		if err := db.Create(&rows[i]).Error; err != nil {
			t.Fatalf("create row %d: %v", i, err)
		}
	}
	if s.after != nil {
		s.after(t, db, rows)
	}
	stmt := &gorm.Statement{DB: db}
	if err := stmt.Parse(new(T)); err != nil {
		t.Fatal(err)
	}
	f := &fixture[T, ID]{s: s, db: db, rdb: rdb, sch: stmt.Schema, seeds: rows,
		live: make([]bool, len(rows)), big: make([]bool, len(rows))}
	for i := range rows {
		f.ids = append(f.ids, f.idOf(&rows[i]))
		f.live[i] = true
	}
	for _, i := range s.deleted {
		if err := db.Delete(&rows[i]).Error; err != nil {
			t.Fatalf("delete row %d: %v", i, err)
		}
		f.live[i] = false
	}
	for _, i := range s.big {
		f.big[i] = true
	}
	return f
}

// idOf returns the primary key of v as an ID.
func (f *fixture[T, ID]) idOf(v *T) ID {
	rv := reflect.ValueOf(v).Elem()
	var id ID
	iv := reflect.ValueOf(&id).Elem()
	if len(f.sch.PrimaryFields) == 1 {
		iv.Set(f.sch.PrimaryFields[0].ReflectValueOf(ctx, rv))
		return id
	}
	for _, pf := range f.sch.PrimaryFields {
		iv.FieldByName(pf.Name).Set(pf.ReflectValueOf(ctx, rv))
	}
	return id
}

// pkParts returns the primary key columns and id's value for each.
func (f *fixture[T, ID]) pkParts(id ID) ([]string, []any) {
	if len(f.sch.PrimaryFields) == 1 {
		return []string{f.sch.PrimaryFields[0].DBName}, []any{id}
	}
	iv := reflect.ValueOf(id)
	var cols []string
	var vals []any
	for _, pf := range f.sch.PrimaryFields {
		cols = append(cols, pf.DBName)
		vals = append(vals, iv.FieldByName(pf.Name).Interface())
	}
	return cols, vals
}

func (f *fixture[T, ID]) pkWhere(id ID) clause.Expression {
	cols, vals := f.pkParts(id)
	eqs := make([]clause.Expression, len(cols))
	for i := range cols {
		eqs[i] = clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: cols[i]}, Value: vals[i]}
	}
	return clause.And(eqs...)
}

// first is plain GORM's db.First for the row with primary key id.
func (f *fixture[T, ID]) first(id ID) (*T, error) {
	v := new(T)
	if err := f.db.Where(f.pkWhere(id)).First(v).Error; err != nil {
		return nil, err
	}
	return v, nil
}

// firstBy is plain GORM's db.First for the row whose column col is value.
func (f *fixture[T, ID]) firstBy(col string, value any) (*T, error) {
	v := new(T)
	err := f.db.Where(clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: col}, Value: value}).First(v).Error
	if err != nil {
		return nil, err
	}
	return v, nil
}

// find is plain GORM's db.Find for the rows with the given ids, keyed by id.
func (f *fixture[T, ID]) find(t *testing.T, ids []ID) map[ID]*T {
	t.Helper()
	var where clause.Expression
	if len(f.sch.PrimaryFields) == 1 {
		vals := make([]any, len(ids))
		for i, id := range ids {
			vals[i] = id
		}
		where = clause.IN{Column: clause.Column{Table: clause.CurrentTable, Name: f.sch.PrimaryFields[0].DBName}, Values: vals}
	} else {
		ors := make([]clause.Expression, len(ids))
		for i, id := range ids {
			ors[i] = f.pkWhere(id)
		}
		where = clause.Or(ors...)
	}
	var rows []T
	if err := f.db.Where(where).Find(&rows).Error; err != nil {
		t.Fatalf("db.Find: %v", err)
	}
	out := make(map[ID]*T, len(rows))
	for i := range rows {
		out[f.idOf(&rows[i])] = &rows[i]
	}
	return out
}

func (f *fixture[T, ID]) repo(t *testing.T, c *cache.Cache) *repository.Repository[T, ID] {
	t.Helper()
	r, err := repository.New[T, ID](f.db, c, repository.Options{})
	if err != nil {
		t.Fatalf("repository.New: %v", err)
	}
	return r
}

// uniqueValue is row i's value of the shape's unique column, as seeded.
func (f *fixture[T, ID]) uniqueValue(i int) any {
	fld := f.sch.LookUpField(f.s.unique)
	return fld.ReflectValueOf(ctx, reflect.ValueOf(&f.seeds[i]).Elem()).Interface()
}

// compare checks a repository result against GORM's: the same row (by
// reflect.DeepEqual, NaNs aside), or not found for both.
func (f *fixture[T, ID]) compare(t *testing.T, what string, got *T, err error, want *T, wantErr error) {
	t.Helper()
	switch {
	case errors.Is(wantErr, gorm.ErrRecordNotFound):
		if !errors.Is(err, gorm.ErrRecordNotFound) || got != nil {
			t.Errorf("%s: got (%v, error %v), want not found (errors.Is(err, gorm.ErrRecordNotFound)) as db.First says", what, short(got), err)
		}
	case wantErr != nil:
		t.Fatalf("%s: plain GORM failed: %v", what, wantErr)
	case err != nil:
		t.Errorf("%s: error %v, want the row db.First returns", what, err)
	case got == nil:
		t.Errorf("%s: nil row and no error", what)
	default:
		if checkEqual(t, what, got, want) && f.s.check != nil {
			f.s.check(t, what, got, want)
		}
	}
}

// short prints a row without flooding the log (the 100 KB row).
func short(v any) string {
	s := fmt.Sprintf("%+v", v)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// The tiers a read is served from.
type tier int

const (
	missTier  tier = iota // first read: the database
	l1Tier                // second read: L1 (Redis for rows too large for L1)
	redisTier             // after Settle and FlushLocal: Redis
)

var tiers = []tier{missTier, l1Tier, redisTier}

func (tr tier) String() string {
	return [...]string{"miss", "L1 hit", "Redis hit"}[tr]
}

// prepare readies c for a read that must come from tier tr.
func prepare(c *cache.Cache, tr tier, big bool) {
	switch {
	case tr == redisTier:
		c.Settle()
		c.FlushLocal()
	case tr == l1Tier && big:
		c.Settle() // the row is in Redis only
	}
}

// checkTier checks from the counters that a read was served by tier tr.
// smallIn and bigIn say whether the read asked for entries that fit L1 and
// for entries that do not.
func checkTier(t *testing.T, what string, tr tier, before, after cache.Stats, smallIn, bigIn bool) {
	t.Helper()
	l1 := after.L1Hits - before.L1Hits
	l2 := after.L2Hits - before.L2Hits
	miss := after.Misses - before.Misses
	var bad string
	switch tr {
	case missTier:
		if miss == 0 {
			bad = "Misses did not rise"
		}
	case l1Tier:
		switch {
		case miss != 0:
			bad = "Misses rose"
		case smallIn && l1 == 0:
			bad = "L1Hits did not rise"
		case bigIn && l2 == 0:
			bad = "L2Hits did not rise for a row too large for L1"
		case !bigIn && l2 != 0:
			bad = "L2Hits rose"
		}
	case redisTier:
		switch {
		case miss != 0:
			bad = "Misses rose"
		case l2 == 0:
			bad = "L2Hits did not rise"
		case l1 != 0:
			bad = "L1Hits rose after FlushLocal"
		}
	}
	if bad != "" {
		t.Errorf("%s: not served by the %s tier: %s (L1Hits +%d, L2Hits +%d, Misses +%d, SchemaMismatches +%d, L1Skips +%d, RejectedFills +%d, DecodeErrors +%d, RedisErrors +%d, RedisSkips +%d, EpochChanges +%d, Incarnations +%d, Suspects +%d)",
			what, tr, bad, l1, l2, miss, after.SchemaMismatches-before.SchemaMismatches, after.L1Skips-before.L1Skips,
			after.RejectedFills-before.RejectedFills, after.DecodeErrors-before.DecodeErrors,
			after.RedisErrors-before.RedisErrors, after.RedisSkips-before.RedisSkips, after.EpochChanges-before.EpochChanges,
			after.Incarnations-before.Incarnations, after.Suspects-before.Suspects)
	}
}

// fidelity runs every path, codec and tier on a fresh namespace each.
func (s *shape[T, ID]) fidelity(t *testing.T) {
	f := s.seed(t)
	paths := []struct {
		name string
		run  func(*testing.T, *cache.Cache)
	}{
		{"Get", f.checkGet},
		{"GetMany", f.checkGetMany},
		{"GetManyDupMissing", f.checkGetManyDup},
	}
	if s.unique != "" {
		paths = append(paths, struct {
			name string
			run  func(*testing.T, *cache.Cache)
		}{"GetBy", f.checkGetBy})
	}
	for _, cd := range codecs {
		for _, p := range paths {
			t.Run(cd.name+"/"+p.name, func(t *testing.T) {
				p.run(t, newCache(t, f.rdb, cd.codec))
			})
		}
	}
}

func (f *fixture[T, ID]) checkGet(t *testing.T, c *cache.Cache) {
	r := f.repo(t, c)
	for i, id := range f.ids {
		want, wantErr := f.first(id)
		for _, tr := range tiers {
			what := fmt.Sprintf("Get(%v) row %d, %s", id, i, tr)
			prepare(c, tr, f.big[i])
			before := c.Stats()
			got, err := r.Get(ctx, id)
			checkTier(t, what, tr, before, c.Stats(), !f.big[i], f.big[i])
			f.compare(t, what, got, err, want, wantErr)
		}
	}
	// Every row again, from Redis and then L1: an entry another row's read
	// overwrote (colliding keys) would miss here.
	for _, tr := range []tier{redisTier, l1Tier} {
		prepare(c, tr, false)
		c.Settle()
		for i, id := range f.ids {
			what := fmt.Sprintf("Get(%v) row %d, %s after reading every row", id, i, tr)
			before := c.Stats()
			if _, err := r.Get(ctx, id); err != nil && f.live[i] {
				t.Errorf("%s: %v", what, err)
			}
			checkTier(t, what, tr, before, c.Stats(), !f.big[i], f.big[i] || tr == redisTier)
		}
	}
}

// missingErr checks that err lists exactly the ids missing, as GetMany
// documents (a *MissingError for which errors.Is(err, gorm.ErrRecordNotFound)).
func (f *fixture[T, ID]) missingErr(t *testing.T, what string, err error, missing []ID) {
	t.Helper()
	if len(missing) == 0 {
		if err != nil {
			t.Errorf("%s: error %v, want none", what, err)
		}
		return
	}
	var me *repository.MissingError[ID]
	if !errors.As(err, &me) || !errors.Is(err, gorm.ErrRecordNotFound) {
		t.Errorf("%s: error %v, want a *repository.MissingError[%T] listing %v", what, err, *new(ID), missing)
		return
	}
	if !reflect.DeepEqual(me.IDs, missing) {
		t.Errorf("%s: MissingError.IDs = %v, want %v", what, me.IDs, missing)
	}
}

// checkMany compares GetMany's result for ids with db.Find's.
func (f *fixture[T, ID]) checkMany(t *testing.T, what string, ids []ID, got []*T, err error, want map[ID]*T) {
	t.Helper()
	var missing []ID
	for _, id := range ids {
		if want[id] == nil {
			missing = append(missing, id)
		}
	}
	f.missingErr(t, what, err, missing)
	if len(got) != len(ids) {
		t.Errorf("%s: %d results for %d ids", what, len(got), len(ids))
		return
	}
	for i, id := range ids {
		w := want[id]
		switch {
		case w == nil && got[i] != nil:
			t.Errorf("%s: element %d (id %v): got %s, want nil (db.Find does not return it)", what, i, id, short(got[i]))
		case w == nil:
		case got[i] == nil:
			t.Errorf("%s: element %d (id %v): nil, want the row db.Find returns", what, i, id)
		default:
			el := fmt.Sprintf("%s element %d (id %v)", what, i, id)
			if checkEqual(t, el, got[i], w) && f.s.check != nil {
				f.s.check(t, el, got[i], w)
			}
		}
	}
	for i := range got {
		for j := i + 1; j < len(got); j++ {
			if got[i] != nil && got[i] == got[j] {
				t.Errorf("%s: elements %d and %d are the same pointer", what, i, j)
			}
		}
	}
}

func (f *fixture[T, ID]) manyTiers(t *testing.T, c *cache.Cache, label string, ids []ID) {
	r := f.repo(t, c)
	want := f.find(t, ids)
	small, big := false, false
	for i := range f.ids {
		if slices.Contains(ids, f.ids[i]) {
			small = small || !f.big[i]
			big = big || f.big[i]
		}
	}
	for _, tr := range tiers {
		what := fmt.Sprintf("%s, %s", label, tr)
		prepare(c, tr, big)
		before := c.Stats()
		got, err := r.GetMany(ctx, ids)
		after := c.Stats()
		// Each duplicate id is its own value: the repository reads it again,
		// after the batch filled L1 with it, so it is an L1 hit whatever the
		// batch's tier.
		if d := uint64(len(ids) - len(distinct(ids))); d > 0 && tr == redisTier && after.L1Hits-before.L1Hits <= d {
			after.L1Hits = before.L1Hits
		}
		checkTier(t, what, tr, before, after, small, big)
		f.checkMany(t, what, ids, got, err, want)
	}
}

func (f *fixture[T, ID]) checkGetMany(t *testing.T, c *cache.Cache) {
	f.manyTiers(t, c, fmt.Sprintf("GetMany(all %d ids)", len(f.ids)), f.ids)
}

func (f *fixture[T, ID]) checkGetManyDup(t *testing.T, c *cache.Cache) {
	var live []ID
	for i, id := range f.ids {
		if f.live[i] {
			live = append(live, id)
		}
	}
	ids := []ID{live[0], f.s.missing, live[0], live[len(live)-1]}
	f.manyTiers(t, c, fmt.Sprintf("GetMany(%v)", ids), ids)
}

func (f *fixture[T, ID]) checkGetBy(t *testing.T, c *cache.Cache) {
	r := f.repo(t, c)
	col := f.s.unique
	for i := range f.ids {
		val := f.uniqueValue(i)
		want, wantErr := f.firstBy(col, val)
		for _, tr := range tiers {
			what := fmt.Sprintf("GetBy(%q, %#v) row %d, %s", col, val, i, tr)
			prepare(c, tr, f.big[i])
			before := c.Stats()
			got, err := r.GetBy(ctx, col, val)
			checkTier(t, what, tr, before, c.Stats(), true, f.big[i])
			f.compare(t, what, got, err, want, wantErr)
		}
	}
	for _, tr := range []tier{redisTier, l1Tier} {
		prepare(c, tr, false)
		c.Settle()
		for i := range f.ids {
			val := f.uniqueValue(i)
			what := fmt.Sprintf("GetBy(%q, %#v) row %d, %s after reading every row", col, val, i, tr)
			before := c.Stats()
			if _, err := r.GetBy(ctx, col, val); err != nil && f.live[i] {
				t.Errorf("%s: %v", what, err)
			}
			checkTier(t, what, tr, before, c.Stats(), true, f.big[i] || tr == redisTier)
		}
	}
}

// distinct returns ids without duplicates.
func distinct[ID comparable](ids []ID) map[ID]bool {
	m := make(map[ID]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}
