package gormcache

import (
	"context"
	"errors"
	"testing"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/gormcache/gormcache/internal/failpoint"
)

// writeStyle is one way existing code writes through GORM. Each starts from
// users 1..4 (org 1: 1, 2; org 2: 3, 4), cached on every instance, and
// names the ids whose rows it may change (and ids it creates).
type writeStyle struct {
	name    string
	precise bool // the plugin knows the rows: no namespace retirement
	ids     []int64
	write   func(db *gorm.DB) error
}

var errRollback = errors.New("roll back")

var writeStyles = []writeStyle{
	{"Save update", true, []int64{1}, func(db *gorm.DB) error {
		return db.Save(&user{ID: 1, Token: "t1", OrgID: 1, Name: "saved"}).Error
	}},
	{"Save insert", true, []int64{10}, func(db *gorm.DB) error {
		return db.Save(&user{ID: 10, Token: "t10", OrgID: 1, Name: "inserted"}).Error
	}},
	{"Create", true, []int64{11}, func(db *gorm.DB) error {
		return db.Create(&user{ID: 11, Token: "t11", Name: "created"}).Error
	}},
	{"CreateInBatches", true, []int64{12, 13, 14}, func(db *gorm.DB) error {
		us := []user{{ID: 12, Token: "t12"}, {ID: 13, Token: "t13"}, {ID: 14, Token: "t14"}}
		return db.CreateInBatches(&us, 2).Error
	}},
	{"Save slice (upsert)", true, []int64{1, 2, 15}, func(db *gorm.DB) error {
		us := []user{{ID: 1, Token: "t1", OrgID: 1, Name: "up1"}, {ID: 2, Token: "t2", OrgID: 1, Name: "up2"}, {ID: 15, Token: "t15"}}
		return db.Save(&us).Error
	}},
	{"Model.Updates struct", true, []int64{1}, func(db *gorm.DB) error {
		return db.Model(&user{ID: 1}).Updates(user{Name: "struct"}).Error
	}},
	{"Model.Updates map", true, []int64{1}, func(db *gorm.DB) error {
		return db.Model(&user{ID: 1}).Updates(map[string]any{"name": "map", "token": "t1b"}).Error
	}},
	{"Model.Update column", true, []int64{2}, func(db *gorm.DB) error {
		return db.Model(&user{ID: 2}).Update("name", "col").Error
	}},
	{"Where id = ? Updates", true, []int64{3}, func(db *gorm.DB) error {
		return db.Model(&user{}).Where("id = ?", 3).Updates(map[string]any{"name": "where-id"}).Error
	}},
	{"Where id IN ? Update", true, []int64{1, 3}, func(db *gorm.DB) error {
		return db.Model(&user{}).Where("id IN ?", []int64{1, 3}).Update("name", "in").Error
	}},
	{"Where org Updates (multi-row)", false, []int64{1, 2, 3}, func(db *gorm.DB) error {
		return db.Model(&user{}).Where("org_id = ?", 1).Updates(map[string]any{"name": "org"}).Error
	}},
	{"Where pk OR other (multi-row)", false, []int64{1, 3}, func(db *gorm.DB) error {
		return db.Model(&user{}).Where("id = ?", 1).Or("org_id = ?", 2).Update("name", "or").Error
	}},
	{"Delete by PK", true, []int64{1}, func(db *gorm.DB) error {
		return db.Delete(&user{ID: 1}).Error
	}},
	{"Delete by id argument", true, []int64{2}, func(db *gorm.DB) error {
		return db.Delete(&user{}, 2).Error
	}},
	{"Delete by condition", false, []int64{3, 4}, func(db *gorm.DB) error {
		return db.Where("org_id = ?", 2).Delete(&user{}).Error
	}},
	{"Unscoped Delete", true, []int64{4}, func(db *gorm.DB) error {
		return db.Unscoped().Delete(&user{ID: 4}).Error
	}},
	{"Exec raw UPDATE", false, []int64{1, 2}, func(db *gorm.DB) error {
		return db.Exec(`UPDATE `+table(db, &user{})+` SET name = ? WHERE org_id = ?`, "raw", 1).Error
	}},
	{"Raw UPDATE RETURNING", false, []int64{3}, func(db *gorm.DB) error {
		var ids []int64
		return db.Raw(`UPDATE ` + table(db, &user{}) + ` SET name = 'ret' WHERE id = 3 RETURNING id`).Scan(&ids).Error
	}},
	{"Transaction with nested RollbackTo", true, []int64{1, 2}, func(db *gorm.DB) error {
		return db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Model(&user{ID: 1}).Update("name", "kept").Error; err != nil {
				return err
			}
			_ = tx.Transaction(func(tx2 *gorm.DB) error {
				if err := tx2.Model(&user{ID: 2}).Update("name", "rolled back").Error; err != nil {
					return err
				}
				return errRollback
			})
			return nil
		})
	}},
	{"SavePoint and RollbackTo", true, []int64{1, 2}, func(db *gorm.DB) error {
		tx := db.Begin()
		tx.Model(&user{ID: 1}).Update("name", "before sp")
		tx.SavePoint("sp1")
		tx.Model(&user{ID: 2}).Update("name", "after sp")
		tx.RollbackTo("sp1")
		return tx.Commit().Error
	}},
	{"Begin/Commit by hand", true, []int64{1, 3}, func(db *gorm.DB) error {
		tx := db.Begin()
		tx.Model(&user{ID: 1}).Update("name", "manual")
		tx.Delete(&user{ID: 3})
		return tx.Commit().Error
	}},
	{"Begin/Rollback", true, []int64{1}, func(db *gorm.DB) error {
		tx := db.Begin()
		tx.Model(&user{ID: 1}).Update("name", "never")
		return tx.Rollback().Error
	}},
	{"Session PrepareStmt", true, []int64{1, 2}, func(db *gorm.DB) error {
		s := db.Session(&gorm.Session{PrepareStmt: true})
		if err := s.Model(&user{ID: 1}).Update("name", "prepared").Error; err != nil {
			return err
		}
		return s.Transaction(func(tx *gorm.DB) error {
			if err := tx.Model(&user{ID: 2}).Update("name", "prepared tx").Error; err != nil {
				return err
			}
			_ = tx.Transaction(func(tx2 *gorm.DB) error {
				tx2.Model(&user{ID: 1}).Update("name", "prepared rolled back")
				return errRollback
			})
			return nil
		})
	}},
	{"SkipDefaultTransaction", true, []int64{1, 16}, func(db *gorm.DB) error {
		s := db.Session(&gorm.Session{SkipDefaultTransaction: true})
		if err := s.Model(&user{ID: 1}).Update("name", "no tx").Error; err != nil {
			return err
		}
		return s.Create(&user{ID: 16, Token: "t16"}).Error
	}},
	{"OnConflict DoUpdates", true, []int64{2}, func(db *gorm.DB) error {
		return db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "id"}}, DoUpdates: clause.AssignmentColumns([]string{"name"})}).
			Create(&user{ID: 2, Token: "t2", OrgID: 1, Name: "conflict"}).Error
	}},
}

func table(db *gorm.DB, model any) string {
	stmt := &gorm.Statement{DB: db}
	_ = stmt.Parse(model)
	return stmt.Table
}

// TestWriteStyles: every GORM write style, made on one instance through the
// plugin, is read back correctly on that instance at once and on another
// within B; rows the plugin can name are invalidated one by one (no
// namespace retirement).
func TestWriteStyles(t *testing.T) {
	for _, cfg := range []struct {
		name string
		gc   func(*gorm.Config)
	}{
		{"default", nil},
		{"Config.PrepareStmt", func(c *gorm.Config) { c.PrepareStmt = true }},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			for _, ws := range writeStyles {
				t.Run(ws.name, func(t *testing.T) {
					f := newFleet(t, 2, cfg.gc)
					f.seed(t, user{ID: 1, Token: "t1", OrgID: 1, Name: "a"}, user{ID: 2, Token: "t2", OrgID: 1, Name: "b"},
						user{ID: 3, Token: "t3", OrgID: 2, Name: "c"}, user{ID: 4, Token: "t4", OrgID: 2, Name: "d"})
					f.warm(t, append([]int64{1, 2, 3, 4}, ws.ids...)...)
					before := f.epochs()
					if err := ws.write(f.in[0].db); err != nil {
						t.Fatalf("write: %v", err)
					}
					f.check(t, append([]int64{1, 2, 3, 4}, ws.ids...)...)
					if ws.precise && f.epochs() != before {
						t.Errorf("the namespace was retired (%d epoch changes) for a write whose rows are known", f.epochs()-before)
					}
				})
			}
		})
	}
}

// TestInvalidateAfterCommit: a reader on another instance loads the row
// while the writer's transaction is between its UPDATE and its COMMIT (it
// reads the old row, since the write is not committed). The writer's
// invalidation must come after the COMMIT, or that reader's fill of the old
// row survives it. Switched off, the plugin invalidates just before COMMIT
// and the other instance reads the old row after the write returned.
func TestInvalidateAfterCommit(t *testing.T) {
	run := func(t *testing.T) (stale bool) {
		f := newFleet(t, 2, nil)
		f.seed(t, user{ID: 1, Token: "t1", Name: "old"})
		defer failpoint.Set(failpoint.BeforeCommit, "", func(ctx context.Context, _ string) {
			time.Sleep(100 * time.Millisecond)                   // an invalidation applied now has reached instance 1
			if _, err := f.in[1].users.Get(ctx, 1); err != nil { // loads "old" into L1 and Redis
				t.Error(err)
			}
			f.in[1].c.Settle()
		})()
		if err := f.in[0].db.Model(&user{ID: 1}).Update("name", "new").Error; err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // let the event arrive
		u, err := f.in[1].users.Get(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		return u.Name != "new"
	}
	t.Run("guarded", func(t *testing.T) {
		if run(t) {
			t.Fatal("the other instance reads the old row after the write returned")
		}
	})
	t.Run("guard off", func(t *testing.T) {
		defer failpoint.Disable(failpoint.GuardAfterCommit)()
		if !run(t) {
			t.Fatal("no stale read with the invalidation before COMMIT: the test does not exercise the guard")
		}
	})
}

// TestTraps: GORM's traps around a wrapped pool.
func TestTraps(t *testing.T) {
	f := newFleet(t, 2, nil)
	f.seed(t, user{ID: 1, Token: "t1", Name: "a"}, user{ID: 2, Token: "t2", Name: "b"})
	f.warm(t, 1, 2)
	db := f.in[0].db
	if sqlDB, err := db.DB(); err != nil || sqlDB.Ping() != nil {
		t.Fatalf("db.DB() through the tracked pool: %v", err)
	}
	if err := db.Use(&Plugin{Cache: f.in[0].c}); !errors.Is(err, gorm.ErrRegistered) {
		t.Fatalf("the plugin installed twice: %v", err)
	}
	other := reopen(t, db)
	if err := other.Use(db.Config.Plugins[Name].(*Plugin)); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("one Plugin value on two databases: %v", err)
	}
	if err := (&Plugin{}).Initialize(db); !errors.Is(err, ErrNoCache) {
		t.Fatalf("a plugin without a cache: %v", err)
	}
	// db.Connection takes a connection around the pool: a write there
	// autocommits and is invalidated at once...
	if err := db.Connection(func(c *gorm.DB) error { return c.Model(&user{ID: 1}).Update("name", "conn").Error }); err != nil {
		t.Fatal(err)
	}
	f.check(t, 1)
	// ...but a transaction begun on it is one the plugin cannot see commit.
	err := db.Connection(func(c *gorm.DB) error {
		return c.Transaction(func(tx *gorm.DB) error { return tx.Model(&user{ID: 2}).Update("name", "untracked").Error })
	})
	if !errors.Is(err, ErrUntrackedTx) {
		t.Fatalf("a write in an untracked transaction: %v, want ErrUntrackedTx", err)
	}
	if u := f.truth(t, 2); u.Name != "b" {
		t.Fatalf("the refused write committed: %+v", u)
	}
}

// TestFailedStatementInSavepoint: the usual "try the insert, roll back to
// the savepoint on a unique violation" pattern costs no retirement: the
// failed INSERT changed nothing.
func TestFailedStatementInSavepoint(t *testing.T) {
	f := newFleet(t, 1, nil)
	f.seed(t, user{ID: 1, Token: "t1", Name: "a"}, user{ID: 2, Token: "t2", Name: "b"})
	f.warm(t, 1, 2)
	before := f.epochs()
	err := f.in[0].db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&user{ID: 2}).Update("name", "kept").Error; err != nil {
			return err
		}
		tx.SavePoint("sp")
		if err := tx.Create(&user{Token: "t1"}).Error; err == nil {
			t.Error("duplicate token accepted")
		}
		return tx.RollbackTo("sp").Error
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.epochs() != before {
		t.Fatal("a failed INSERT rolled back to its savepoint retired the namespace")
	}
	f.check(t, 1, 2)
}
