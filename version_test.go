package gormcache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
	"github.com/gormcache/gormcache/repository"
)

// note is a versioned model with soft delete.
type note struct {
	ID   int64 `gorm:"primaryKey"`
	Body string
	repository.Version
	DeletedAt gorm.DeletedAt `gorm:"index"`
}

// hooked is a versioned model whose AfterUpdate hook counts its calls.
type hooked struct {
	ID    int64 `gorm:"primaryKey"`
	Title string
	repository.Version
}

var afterUpdates atomic.Int64

func (*hooked) AfterUpdate(*gorm.DB) error {
	afterUpdates.Add(1)
	return nil
}

// docFleet is a fleet of two whose docs ids are seeded through base (no
// plugin) at version 1 and cached on both instances.
func docFleet(t *testing.T, cfg func(*gorm.Config), ids ...int64) *fleet {
	t.Helper()
	f := newFleet(t, 2, cfg)
	for _, id := range ids {
		if err := f.base.Create(&doc{ID: id, Title: fmt.Sprint("doc", id), Version: 1}).Error; err != nil {
			t.Fatal(err)
		}
	}
	f.warmDocs(t, ids...)
	return f
}

// warmDocs reads ids on every instance (rows or "not found").
func (f *fleet) warmDocs(t *testing.T, ids ...int64) {
	t.Helper()
	for _, in := range f.in {
		for _, id := range ids {
			if _, err := in.docs.Get(context.Background(), id); err != nil && !errors.Is(err, repository.ErrNotFound) {
				t.Fatal(err)
			}
		}
	}
}

// docTruth is what GORM reads from the database for doc id (nil: no row).
func (f *fleet) docTruth(t *testing.T, id int64) *doc {
	t.Helper()
	var d doc
	err := f.base.First(&d, id).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return &d
}

// read is what in serves for doc id (nil: not found).
func (in *inst) read(t *testing.T, id int64) *doc {
	t.Helper()
	d, err := in.docs.Get(context.Background(), id)
	if errors.Is(err, repository.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func sameDoc(a, b *doc) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

// checkDocs requires the writer (instance 0) to read what the database
// holds for ids at once, and instance 1 within B.
func (f *fleet) checkDocs(t *testing.T, ids ...int64) {
	t.Helper()
	for _, id := range ids {
		want := f.docTruth(t, id)
		if got := f.in[0].read(t, id); !sameDoc(got, want) {
			t.Fatalf("read-your-writes: the writer reads %+v for doc %d, the database has %+v", got, id, want)
		}
		deadline := time.Now().Add(B)
		for got := f.in[1].read(t, id); !sameDoc(got, want); got = f.in[1].read(t, id) {
			if time.Now().After(deadline) {
				t.Fatalf("instance 1 still reads %+v for doc %d %v after the write; the database has %+v", got, id, B, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// docStyle is one way plain GORM writes a versioned row. d is doc 1 as
// read at version 1 (doc 2 is also at version 1).
type docStyle struct {
	name  string
	moved []int64 // rows whose version must rise by exactly one
	gone  []int64 // rows the write deletes
	model uint64  // d.Version after the write (0: not checked)
	write func(db *gorm.DB, d *doc) error
}

var docStyles = []docStyle{
	{"Save", []int64{1}, nil, 2, func(db *gorm.DB, d *doc) error {
		d.Title = "saved"
		return db.Save(d).Error
	}},
	{"Select Save", []int64{1}, nil, 2, func(db *gorm.DB, d *doc) error {
		d.Title = "selected"
		return db.Select("title").Save(d).Error
	}},
	{"Model.Updates struct", []int64{1}, nil, 2, func(db *gorm.DB, d *doc) error {
		return db.Model(d).Updates(doc{Title: "struct"}).Error
	}},
	{"Model.Select(*).Updates struct", []int64{1}, nil, 2, func(db *gorm.DB, d *doc) error {
		return db.Model(d).Select("*").Updates(doc{ID: 1, Title: "all"}).Error
	}},
	{"Model.Updates itself", []int64{1}, nil, 2, func(db *gorm.DB, d *doc) error {
		d.Title = "itself"
		return db.Model(d).Updates(d).Error
	}},
	{"Model.Updates map", []int64{1}, nil, 2, func(db *gorm.DB, d *doc) error {
		return db.Model(d).Updates(map[string]any{"title": "map"}).Error
	}},
	{"Model.Update column", []int64{1}, nil, 2, func(db *gorm.DB, d *doc) error {
		return db.Model(d).Update("title", "col").Error
	}},
	{"Model.UpdateColumn", []int64{1}, nil, 2, func(db *gorm.DB, d *doc) error {
		return db.Model(d).UpdateColumn("title", "updatecolumn").Error
	}},
	{"Save in Transaction", []int64{1}, nil, 2, func(db *gorm.DB, d *doc) error {
		return db.Transaction(func(tx *gorm.DB) error {
			d.Title = "in tx"
			return tx.Save(d).Error
		})
	}},
	{"SkipDefaultTransaction Update", []int64{1}, nil, 2, func(db *gorm.DB, d *doc) error {
		return db.Session(&gorm.Session{SkipDefaultTransaction: true}).Model(d).Update("title", "no tx").Error
	}},
	{"Where Update (multi-row)", []int64{1, 2}, nil, 0, func(db *gorm.DB, _ *doc) error {
		return db.Model(&doc{}).Where("title LIKE ?", "doc%").Update("title", "multi").Error
	}},
	{"Where id Updates (version unknown)", []int64{1}, nil, 0, func(db *gorm.DB, _ *doc) error {
		return db.Model(&doc{}).Where("id = ?", 1).Updates(map[string]any{"title": "where id"}).Error
	}},
	{"Model without version Update", []int64{1}, nil, 0, func(db *gorm.DB, _ *doc) error {
		return db.Model(&doc{ID: 1}).Update("title", "no version").Error
	}},
	{"Save without version", []int64{1}, nil, 0, func(db *gorm.DB, _ *doc) error {
		return db.Save(&doc{ID: 1, Title: "zero version"}).Error
	}},
	{"Delete", nil, []int64{1}, 1, func(db *gorm.DB, d *doc) error {
		return db.Delete(d).Error
	}},
	{"Delete by id (version unknown)", nil, []int64{2}, 0, func(db *gorm.DB, _ *doc) error {
		return db.Delete(&doc{}, 2).Error
	}},
}

// TestVersionedWriteStyles: every plain-GORM write of a versioned row
// raises its version by exactly one (the model's too, when the write is by
// model), the writer reads the new row at once and the other instance
// within B.
func TestVersionedWriteStyles(t *testing.T) {
	for _, cfg := range []struct {
		name string
		gc   func(*gorm.Config)
	}{
		{"default", nil},
		{"Config.PrepareStmt", func(c *gorm.Config) { c.PrepareStmt = true }},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			for _, ws := range docStyles {
				t.Run(ws.name, func(t *testing.T) {
					f := docFleet(t, cfg.gc, 1, 2)
					before := map[int64]*doc{1: f.docTruth(t, 1), 2: f.docTruth(t, 2)}
					d := *before[1]
					if err := ws.write(f.in[0].db, &d); err != nil {
						t.Fatalf("write: %v", err)
					}
					for _, id := range ws.moved {
						if got := f.docTruth(t, id); got == nil || got.Version != before[id].Version+1 {
							t.Errorf("doc %d: version %+v after the write, want %d", id, got, before[id].Version+1)
						}
					}
					for _, id := range ws.gone {
						if got := f.docTruth(t, id); got != nil {
							t.Errorf("doc %d still exists: %+v", id, got)
						}
					}
					if ws.model != 0 && uint64(d.Version) != ws.model {
						t.Errorf("the model holds version %d, want %d", d.Version, ws.model)
					}
					f.checkDocs(t, 1, 2)
				})
			}
		})
	}
}

// staleStyle is a write through a copy of doc 1 read at version 1, after
// another writer moved the row to version 2.
type staleStyle struct {
	name  string
	write func(db *gorm.DB, d *doc) error
}

var staleStyles = []staleStyle{
	{"Save", func(db *gorm.DB, d *doc) error { d.Title = "stale save"; return db.Save(d).Error }},
	{"Model.Updates struct", func(db *gorm.DB, d *doc) error { return db.Model(d).Updates(doc{Title: "stale struct"}).Error }},
	{"Model.Select(*).Updates struct", func(db *gorm.DB, d *doc) error {
		return db.Model(d).Select("*").Updates(doc{ID: 1, Title: "stale all"}).Error
	}},
	{"Model.Updates map", func(db *gorm.DB, d *doc) error {
		return db.Model(d).Updates(map[string]any{"title": "stale map"}).Error
	}},
	{"Model.Update column", func(db *gorm.DB, d *doc) error { return db.Model(d).Update("title", "stale col").Error }},
	{"Delete", func(db *gorm.DB, d *doc) error { return db.Delete(d).Error }},
	{"Save in Transaction", func(db *gorm.DB, d *doc) error {
		return db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Model(&doc{ID: 2, Version: 1}).Update("title", "rolled back").Error; err != nil {
				return err
			}
			return tx.Save(d).Error
		})
	}},
	// Without a transaction to roll back, and in one committed despite the
	// conflict, the plugin would apply what it collected.
	{"SkipDefaultTransaction Save", func(db *gorm.DB, d *doc) error {
		return db.Session(&gorm.Session{SkipDefaultTransaction: true}).Save(d).Error
	}},
	{"SkipDefaultTransaction Delete", func(db *gorm.DB, d *doc) error {
		return db.Session(&gorm.Session{SkipDefaultTransaction: true}).Delete(d).Error
	}},
	{"conflict in a committed Transaction", func(db *gorm.DB, d *doc) error {
		var werr error
		err := db.Transaction(func(tx *gorm.DB) error {
			werr = tx.Model(d).Update("title", "ignored").Error
			return nil
		})
		return errors.Join(werr, err)
	}},
}

// TestVersionConflict: a write by a model read at an older version fails
// with ErrConflict, writes nothing (db.Save does not fall through to its
// upsert, which would overwrite the newer row), leaves the model's version
// as it was and invalidates nothing: the cached row stays a hit.
func TestVersionConflict(t *testing.T) {
	for _, ws := range staleStyles {
		t.Run(ws.name, func(t *testing.T) {
			f := docFleet(t, nil, 2)
			stale := doc{ID: 1, Title: "doc1", Version: 1}
			if err := f.base.Create(&doc{ID: 1, Title: "newer", Version: 2}).Error; err != nil {
				t.Fatal(err)
			}
			f.warmDocs(t, 1)
			in := f.in[0]
			key := in.docs.Table() + ":1"
			st, epochs := in.c.Stats(), f.epochs()

			err := ws.write(in.db, &stale)
			if !errors.Is(err, repository.ErrConflict) {
				t.Fatalf("stale write: %v, want ErrConflict", err)
			}
			if stale.Version != 1 {
				t.Errorf("the model's version is %d after the conflict, want 1", stale.Version)
			}
			if got := f.docTruth(t, 1); got == nil || got.Title != "newer" || got.Version != 2 {
				t.Errorf("doc 1 is %+v after the conflict, want the newer row unchanged", got)
			}
			if got := f.docTruth(t, 2); got == nil || got.Title != "doc2" || got.Version != 1 {
				t.Errorf("doc 2 is %+v after the conflict, want it unchanged", got)
			}
			if n := in.c.Stats().Invalidations - st.Invalidations; n != 0 || f.epochs() != epochs {
				t.Errorf("the conflict invalidated %d key(s), %d epoch change(s)", n, f.epochs()-epochs)
			}
			_, l2, err := in.c.Peek(context.Background(), key)
			if err != nil || l2.Kind != cache.KindValue || l2.Version != 2 {
				t.Errorf("Redis holds %+v (%v) for %s, want the cached row at version 2", l2, err, key)
			}
			if got := in.read(t, 1); got == nil || got.Version != 2 {
				t.Errorf("the writer reads %+v", got)
			}
			// L1 or Redis: L1 is served only while heartbeats vouch for it.
			if after := in.c.Stats(); after.Loads != st.Loads || after.L1Hits+after.L2Hits == st.L1Hits+st.L2Hits {
				t.Errorf("the read after the conflict was not a hit (loads %d → %d, hits %d → %d)",
					st.Loads, after.Loads, st.L1Hits+st.L2Hits, after.L1Hits+after.L2Hits)
			}
		})
	}
}

// TestVersionConflictDeletedRow: db.Save of a row another writer deleted is
// a conflict too, and does not insert the row again.
func TestVersionConflictDeletedRow(t *testing.T) {
	f := docFleet(t, nil, 1)
	d := *f.docTruth(t, 1)
	if err := f.base.Delete(&doc{}, 1).Error; err != nil {
		t.Fatal(err)
	}
	d.Title = "resurrected"
	if err := f.in[0].db.Save(&d).Error; !errors.Is(err, repository.ErrConflict) {
		t.Fatalf("Save of a deleted row: %v, want ErrConflict", err)
	}
	if got := f.docTruth(t, 1); got != nil {
		t.Fatalf("Save inserted the deleted row again: %+v", got)
	}
}

// TestVersionConflictSkipsAfterHooks: a conflict stops the update before
// GORM's AfterUpdate hooks, as any failed update does.
func TestVersionConflictSkipsAfterHooks(t *testing.T) {
	f := newFleet(t, 1, nil)
	if err := f.base.AutoMigrate(&hooked{}); err != nil {
		t.Fatal(err)
	}
	if err := f.base.Create(&hooked{ID: 1, Title: "a", Version: 2}).Error; err != nil {
		t.Fatal(err)
	}
	afterUpdates.Store(0)
	h := hooked{ID: 1, Title: "stale", Version: 1}
	if err := f.in[0].db.Save(&h).Error; !errors.Is(err, repository.ErrConflict) {
		t.Fatalf("stale Save: %v, want ErrConflict", err)
	}
	if n := afterUpdates.Load(); n != 0 {
		t.Errorf("AfterUpdate ran %d time(s) for a conflict", n)
	}
	h.Version = 2
	if err := f.in[0].db.Save(&h).Error; err != nil || h.Version != 3 || afterUpdates.Load() != 1 {
		t.Errorf("Save at the current version: %v, version %d, %d AfterUpdate call(s)", err, h.Version, afterUpdates.Load())
	}
}

// TestVersionLockedInvalidationIsExact: after a locked update the row is
// invalidated at its new version, not retired, so it is cacheable again at
// once: on each instance the first read loads it and the next ones are
// hits. An update whose version is unknown retires the row instead: its
// tombstone is stamped above any version, not at the row's.
func TestVersionLockedInvalidationIsExact(t *testing.T) {
	f := docFleet(t, nil, 1, 2)
	d := *f.docTruth(t, 1)
	d.Title = "exact"
	if err := f.in[0].db.Save(&d).Error; err != nil {
		t.Fatal(err)
	}
	key := f.in[0].docs.Table() + ":1"
	_, l2, err := f.in[0].c.Peek(context.Background(), key)
	if err != nil || l2.Kind != cache.KindTombstone || l2.Version != 2 {
		t.Fatalf("Redis holds %+v (%v) for %s after the locked update, want a tombstone at version 2", l2, err, key)
	}
	f.checkDocs(t, 1)
	for i, in := range f.in {
		st := in.c.Stats()
		for range 2 {
			if got := in.read(t, 1); got == nil || got.Version != 2 || got.Title != "exact" {
				t.Fatalf("instance %d reads %+v", i, got)
			}
		}
		if after := in.c.Stats(); after.Loads != st.Loads || after.Misses != st.Misses {
			t.Errorf("instance %d: reads after the locked update loaded %d time(s), missed %d", i, after.Loads-st.Loads, after.Misses-st.Misses)
		}
	}

	// The contrast: the same row written with its version unknown.
	if err := f.in[0].db.Model(&doc{}).Where("id = ?", 1).Update("title", "retired").Error; err != nil {
		t.Fatal(err)
	}
	_, l2, err = f.in[0].c.Peek(context.Background(), key)
	if err != nil || l2.Kind != cache.KindTombstone || l2.Version <= 3 {
		t.Fatalf("Redis holds %+v (%v) for %s after an update of unknown rows, want a stamped tombstone", l2, err, key)
	}
	f.checkDocs(t, 1)
}

// TestVersionSoftDelete: a soft delete by model is locked and raises the
// version (the row stays, at version+1, deleted), readers see it gone; a
// stale one is a conflict; restoring it is a locked update again.
func TestVersionSoftDelete(t *testing.T) {
	f := newFleet(t, 2, nil)
	if err := f.base.AutoMigrate(&note{}); err != nil {
		t.Fatal(err)
	}
	notes := make([]*repository.Repository[note, int64], len(f.in))
	for i, in := range f.in {
		var err error
		if notes[i], err = repository.New[note, int64](in.db, in.c, repository.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.base.Create(&note{ID: 1, Body: "b", Version: 1}).Error; err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, r := range notes {
		if _, err := r.Get(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(found bool, version uint64) {
		t.Helper()
		for i, r := range notes {
			deadline := time.Now().Add(B)
			for {
				n, err := r.Get(ctx, 1)
				if err != nil && !errors.Is(err, repository.ErrNotFound) {
					t.Fatal(err)
				}
				if (n != nil) == found && (n == nil || uint64(n.Version) == version) {
					break
				}
				if i == 0 || time.Now().After(deadline) {
					t.Fatalf("instance %d reads %+v (%v), want found=%v at version %d", i, n, err, found, version)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}

	stale := note{ID: 1, Body: "b", Version: 1}
	n := stale
	if err := f.in[0].db.Delete(&n).Error; err != nil {
		t.Fatal(err)
	}
	var row note
	if err := f.base.Unscoped().First(&row, 1).Error; err != nil || !row.DeletedAt.Valid || row.Version != 2 || n.Version != 2 {
		t.Fatalf("after the soft delete: %+v (%v), model version %d; want deleted at version 2", row, err, n.Version)
	}
	waitFor(false, 0)

	if err := f.in[0].db.Delete(&stale).Error; !errors.Is(err, repository.ErrConflict) {
		t.Fatalf("stale soft delete: %v, want ErrConflict", err)
	}
	if err := f.in[0].db.Unscoped().Model(&n).Update("deleted_at", nil).Error; err != nil || n.Version != 3 {
		t.Fatalf("restore: %v, model version %d", err, n.Version)
	}
	waitFor(true, 3)

	if err := f.in[0].db.Where("body = ?", "b").Delete(&note{}).Error; err != nil {
		t.Fatal(err)
	}
	if err := f.base.Unscoped().First(&row, 1).Error; err != nil || !row.DeletedAt.Valid || row.Version != 4 {
		t.Fatalf("after a soft delete by condition: %+v (%v); want deleted at version 4", row, err)
	}
	waitFor(false, 0)
}

// TestVersionedCreate: plain-GORM creates of versioned rows start at
// version 1 (a version given is kept), and are read on both instances.
func TestVersionedCreate(t *testing.T) {
	f := newFleet(t, 2, nil)
	f.warmDocs(t, 1, 3, 4, 5, 100)
	db := f.in[0].db
	one := doc{ID: 100, Title: "create"}
	saved := doc{Title: "save insert"} // no primary key: Save inserts (the sequence gives 1)
	batch := []doc{{ID: 3}, {ID: 4, Version: 7}}
	for _, err := range []error{
		db.Create(&one).Error,
		db.Save(&saved).Error,
		db.CreateInBatches(&batch, 1).Error,
		db.Model(&doc{}).Create(map[string]any{"id": 5, "title": "map"}).Error,
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if one.Version != 1 || saved.Version != 1 || batch[0].Version != 1 || batch[1].Version != 7 {
		t.Errorf("model versions %d, %d, %d, %d; want 1, 1, 1, 7", one.Version, saved.Version, batch[0].Version, batch[1].Version)
	}
	for id, want := range map[int64]repository.Version{100: 1, saved.ID: 1, 3: 1, 4: 7, 5: 1} {
		if got := f.docTruth(t, id); got == nil || got.Version != want {
			t.Errorf("doc %d is %+v, want version %d", id, got, want)
		}
	}
	f.checkDocs(t, 100, saved.ID, 3, 4, 5)
}

// TestVersionLeftAlone: a write that sets the version itself, or omits it,
// is not locked; a Repository's writes lock themselves (one raise, not two).
func TestVersionLeftAlone(t *testing.T) {
	f := docFleet(t, nil, 1, 2)
	db := f.in[0].db
	stale := doc{ID: 1, Version: 1}
	if err := f.base.Model(&doc{}).Where("id = 1").Update("version", 5).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Model(&stale).Updates(map[string]any{"title": "mine", "version": 9}).Error; err != nil {
		t.Fatalf("an update setting the version: %v", err)
	}
	if got := f.docTruth(t, 1); got.Version != 9 || got.Title != "mine" {
		t.Errorf("doc 1 is %+v, want version 9 as written", got)
	}
	if err := db.Model(&doc{ID: 1, Version: 3}).Omit("version").Update("title", "omitted").Error; err != nil {
		t.Fatalf("an update omitting the version: %v", err)
	}
	if got := f.docTruth(t, 1); got.Version != 9 || got.Title != "omitted" {
		t.Errorf("doc 1 is %+v, want version 9 kept", got)
	}
	f.checkDocs(t, 1)

	ctx := context.Background()
	d, err := f.in[0].docs.Get(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	d.Title = "repo"
	if err := f.in[0].docs.Update(ctx, d); err != nil || d.Version != 2 || f.docTruth(t, 2).Version != 2 {
		t.Fatalf("repository Update: %v, version %d, in the database %d; want 2", err, d.Version, f.docTruth(t, 2).Version)
	}
	f.checkDocs(t, 2)
}

// TestVersionSQL: the SQL of a locked Save (GORM's DryRun), and no
// conflict for a statement that was not run.
func TestVersionSQL(t *testing.T) {
	f := newFleet(t, 1, nil)
	d := doc{ID: 1, Title: "t", Version: 4}
	sql := f.in[0].db.ToSQL(func(tx *gorm.DB) *gorm.DB { return tx.Save(&d) })
	table := f.in[0].docs.Table()
	for _, want := range []string{`"version"=5`, `"` + table + `"."version" = 4`, `"id" = 1`} {
		if !strings.Contains(sql, want) {
			t.Errorf("SQL %q lacks %q", sql, want)
		}
	}
	if d.Version != 4 {
		t.Errorf("a dry run changed the model's version to %d", d.Version)
	}
	sql = f.in[0].db.ToSQL(func(tx *gorm.DB) *gorm.DB {
		return tx.Model(&doc{}).Where("title = ?", "t").Update("title", "u")
	})
	if want := `"version"="` + table + `"."version" + 1`; !strings.Contains(sql, want) {
		t.Errorf("SQL %q lacks %q", sql, want)
	}
}
