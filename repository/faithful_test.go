package repository

import (
	"context"
	"database/sql/driver"
	"errors"
	"reflect"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/cache"
)

// money keeps its state unexported: only its Scan and Value methods see it.
type money struct{ cents int64 }

func (m *money) Scan(v any) error {
	switch x := v.(type) {
	case int64:
		m.cents = x
	case nil:
		m.cents = 0
	default:
		return errors.New("money: not an integer")
	}
	return nil
}

func (m money) Value() (driver.Value, error) { return m.cents, nil }

// acct is the shape that lost columns with a JSON codec: a `json:"-"` secret,
// unexported Scanner state, an AfterFind hook filling unexported and
// `gorm:"-"` fields, serialized and pointer fields, old and zero times.
type acct struct {
	ID           int64 `gorm:"primaryKey"`
	Name         string
	PasswordHash string `json:"-"`
	Price        money  `gorm:"type:bigint"`
	Born         time.Time
	Seen         *time.Time
	Tags         []string       `gorm:"serializer:json"`
	Extra        any            `gorm:"serializer:json"`
	DeletedAt    gorm.DeletedAt `gorm:"index"`
	Display      string         `gorm:"-"`
	finds        int
	Version
}

func (a *acct) AfterFind(*gorm.DB) error {
	a.finds++
	a.Display = "<" + a.Name + ">"
	return nil
}

// TestRowsAreWhatGORMReads compares every read path and tier with db.First
// for the shape that used to come back with empty columns.
func TestRowsAreWhatGORMReads(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.db.AutoMigrate(&acct{}); err != nil {
		t.Fatal(err)
	}
	ny, _ := time.LoadLocation("America/New_York")
	row := acct{ID: 1, Name: "ada", PasswordHash: "$2a$10$abcdefghij", Price: money{1234},
		Born: time.Date(1850, 1, 2, 3, 4, 5, 6000, ny), Tags: []string{"a", "b"}, Extra: map[string]any{"n": 1.5}}
	if err := e.db.Create(&row).Error; err != nil {
		t.Fatal(err)
	}
	r, err := New[acct, int64](e.db, e.c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var want acct
	if err := e.db.First(&want, 1).Error; err != nil {
		t.Fatal(err)
	}
	check := func(how string, got *acct, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		if !reflect.DeepEqual(*got, want) {
			t.Fatalf("%s:\n got %#v\nwant %#v", how, *got, want)
		}
	}
	for _, tier := range []string{"miss", "L1 hit", "Redis hit"} {
		if tier == "Redis hit" {
			e.c.Settle()
			e.c.FlushLocal()
		}
		v, err := r.Get(ctx, 1)
		check("Get "+tier, v, err)
	}
	e.c.FlushLocal()
	vs, err := r.GetMany(ctx, []int64{1, 1})
	if err != nil {
		t.Fatal(err)
	}
	check("GetMany", vs[0], nil)
	check("GetMany duplicate", vs[1], nil)
	if vs[0] == vs[1] {
		t.Fatal("GetMany returned one pointer for a duplicate id")
	}
	vs[0].Tags[0] = "changed" // the caller's copy only
	vs[0].PasswordHash = ""
	v, err := r.Get(ctx, 1)
	check("Get after mutating a returned value", v, err)
}

// TestWriteBackKeepsColumns is the read-modify-write that used to erase a
// `json:"-"` column and unexported Scanner state.
func TestWriteBackKeepsColumns(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.db.AutoMigrate(&acct{}); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Create(&acct{ID: 1, Name: "ada", PasswordHash: "$2a$10$secret", Price: money{999}}).Error; err != nil {
		t.Fatal(err)
	}
	r, _ := New[acct, int64](e.db, e.c, Options{})
	ctx := context.Background()
	r.Get(ctx, 1)
	u, err := r.Get(ctx, 1) // an L1 hit
	if err != nil {
		t.Fatal(err)
	}
	u.Name = "ada2"
	if err := r.Update(ctx, u); err != nil {
		t.Fatal(err)
	}
	var after acct
	e.db.First(&after, 1)
	if after.PasswordHash != "$2a$10$secret" || after.Price.cents != 999 || after.Name != "ada2" {
		t.Fatalf("write-back changed other columns: %+v", after)
	}
}

// member has a composite primary key.
type member struct {
	OrgID  int64 `gorm:"primaryKey;autoIncrement:false"`
	UserID int64 `gorm:"primaryKey;autoIncrement:false"`
	Role   string
	Email  string `gorm:"uniqueIndex"`
	Team   string `gorm:"uniqueIndex:org_team"` // unique only with Badge
	Badge  int    `gorm:"uniqueIndex:org_team"`
	Version
}

type memberKey struct{ OrgID, UserID int64 }

func TestCompositeKey(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.db.AutoMigrate(&member{}); err != nil {
		t.Fatal(err)
	}
	r, err := New[member, memberKey](e.db, e.c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, m := range []member{{OrgID: 1, UserID: 1, Role: "a", Email: "a@x", Team: "t", Badge: 1}, {OrgID: 1, UserID: 2, Role: "b", Email: "b@x", Team: "t", Badge: 2}, {OrgID: 2, UserID: 1, Role: "c", Email: "c@x", Team: "u", Badge: 1}} {
		mustCreate(t, r, &m)
	}
	m, err := r.Get(ctx, memberKey{1, 2})
	if err != nil || m.Role != "b" {
		t.Fatalf("Get = %+v, %v", m, err)
	}
	ms, err := r.GetMany(ctx, []memberKey{{2, 1}, {1, 1}, {9, 9}})
	if !errors.Is(err, ErrNotFound) || ms[0].Role != "c" || ms[1].Role != "a" || ms[2] != nil {
		t.Fatalf("GetMany = %+v, %v", ms, err)
	}
	m.Role = "B"
	if err := r.Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	if m, _ := r.Get(ctx, memberKey{1, 2}); m.Role != "B" {
		t.Fatalf("after Update: %+v", m)
	}
	if m, _ := r.Get(ctx, memberKey{1, 1}); m.Role != "a" {
		t.Fatalf("Update reached another row: %+v", m)
	}
	if m, err := r.GetBy(ctx, "email", "c@x"); err != nil || m.OrgID != 2 {
		t.Fatalf("GetBy = %+v, %v", m, err)
	}
	if _, err := r.GetBy(ctx, "team", "t"); !errors.Is(err, ErrNotUnique) {
		t.Fatalf("GetBy on a column of a composite unique index: %v, want ErrNotUnique", err)
	}
	if _, err := r.Get(ctx, memberKey{OrgID: 1}); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("Get with a zero key part: %v, want ErrInvalidID", err)
	}
	if err := r.Delete(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(ctx, memberKey{1, 2}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Delete: %v", err)
	}
	if _, err := New[member, int64](e.db, e.c, Options{}); !errors.Is(err, ErrUnsupportedModel) {
		t.Fatalf("composite key with a scalar ID: %v", err)
	}
	type wrongKey struct{ OrgID, UserID int32 }
	if _, err := New[member, wrongKey](e.db, e.c, Options{}); !errors.Is(err, ErrUnsupportedModel) {
		t.Fatalf("composite key with mistyped fields: %v", err)
	}
}

// TestGetByRefusesDuplicates: a column declared unique by the caller but
// holding duplicates answers ErrNotUnique, never one of the rows.
func TestGetByRefusesDuplicates(t *testing.T) {
	e := newEnv(t, nil)
	r, err := New[note, int64](e.db, e.c, Options{UniqueColumns: []string{"body"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mustCreate(t, r, &note{ID: 1, Body: "same"})
	mustCreate(t, r, &note{ID: 2, Body: "same"})
	if _, err := r.GetBy(ctx, "body", "same"); !errors.Is(err, ErrNotUnique) {
		t.Fatalf("GetBy over duplicates: %v, want ErrNotUnique", err)
	}
	if n, err := r.GetBy(ctx, "id", int64(2)); err != nil || n.ID != 2 {
		t.Fatalf("GetBy on the primary key: %+v, %v", n, err)
	}
}

type author struct {
	ID    int64 `gorm:"primaryKey"`
	Name  string
	Books []book
	Version
}

type book struct {
	ID       int64 `gorm:"primaryKey"`
	AuthorID int64
	Title    string
}

// TestUpdateLeavesAssociations: Update writes the model's own columns; the
// children in its association field are not upserted unless asked.
func TestUpdateLeavesAssociations(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.db.AutoMigrate(&author{}, &book{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, save := range []bool{false, true} {
		r, err := New[author, int64](e.db, e.c, Options{SaveAssociations: save, Namespace: "authors" + map[bool]string{false: "", true: "-save"}[save]})
		if err != nil {
			t.Fatal(err)
		}
		id := int64(1)
		if save {
			id = 2
		}
		mustCreate(t, r, &author{ID: id, Name: "x"})
		a, err := r.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if a.Books != nil {
			t.Fatalf("associations loaded without a preload: %+v", a.Books)
		}
		a.Books = []book{{Title: "new"}}
		a.Name = "y"
		if err := r.Update(ctx, a); err != nil {
			t.Fatal(err)
		}
		var n int64
		e.db.Model(&book{}).Where("author_id = ?", id).Count(&n)
		if want := map[bool]int64{false: 0, true: 1}[save]; n != want {
			t.Fatalf("SaveAssociations=%v: %d child rows, want %d", save, n, want)
		}
	}
}

// TestWrapRefusesLossyTypes: Wrap and cache.Get with the default codec
// refuse, before loading, a type the codec could not restore.
func TestWrapRefusesLossyTypes(t *testing.T) {
	e := newEnv(t, nil)
	_, err := Wrap(e.c, "acct-by-name", func(ctx context.Context, name string) (*acct, error) { return nil, nil }, WrapOptions[*acct]{})
	if !errors.Is(err, cache.ErrUnsupportedType) || !errors.Is(err, ErrUnsupportedModel) {
		t.Fatalf("Wrap of a type with unexported state and an interface field: %v, want ErrUnsupportedType", err)
	}
	if _, err := cache.Get(context.Background(), e.c, "k", func(context.Context, string) (acct, uint64, error) {
		t.Fatal("the loader ran for a type the codec refuses")
		return acct{}, 0, nil
	}); !errors.Is(err, cache.ErrUnsupportedType) {
		t.Fatalf("cache.Get: %v, want ErrUnsupportedType", err)
	}
}
