package gormcache

import (
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/internal/testenv"
	"github.com/gormcache/gormcache/repository"
)

// withTrigger installs the version trigger on model's table through db,
// and removes it when t ends (before the fleet drops the tables).
func withTrigger(t *testing.T, db *gorm.DB, model any) {
	t.Helper()
	if err := InstallVersionTrigger(db, model); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := DropVersionTrigger(db, model); err != nil {
			t.Error(err)
		}
	})
}

// docVersion is doc id's version in the database.
func (f *fleet) docVersion(t *testing.T, id int64) repository.Version {
	t.Helper()
	d := f.docTruth(t, id)
	if d == nil {
		t.Fatalf("doc %d does not exist", id)
	}
	return d.Version
}

// rawUpdate runs an UPDATE of doc 1 through base, which has no plugin (as
// another program would).
func (f *fleet) rawUpdate(t *testing.T, set string) {
	t.Helper()
	if err := f.base.Exec(`UPDATE ` + quoteIdent(table(f.base, &doc{})) + ` SET ` + set + ` WHERE id = 1`).Error; err != nil {
		t.Fatal(err)
	}
}

// TestVersionTrigger: with the trigger, an UPDATE that does not raise the
// version (raw SQL without the plugin, one that sets it back, an upsert of a
// stale row) raises it by one; one that raises it keeps its value, so the
// plugin's and a Repository's writes move it by one, not two. Installing
// through the plugin retires nothing.
func TestVersionTrigger(t *testing.T) {
	f := docFleet(t, nil, 1, 2)
	epochs := f.epochs()
	withTrigger(t, f.in[0].db, &doc{})
	if n := f.epochs() - epochs; n != 0 {
		t.Errorf("installing the trigger retired the namespace (%d epoch changes)", n)
	}
	steps := []struct {
		set  string
		want repository.Version
	}{
		{"title = 'raw'", 2},
		{"title = 'raw again'", 3},
		{"version = 10", 10},      // raised by the writer: kept
		{"version = 1", 11},       // set back: old + 1
		{"version = version", 12}, // left: old + 1
	}
	for _, s := range steps {
		f.rawUpdate(t, s.set)
		if got := f.docVersion(t, 1); got != s.want {
			t.Fatalf("after SET %s: version %d, want %d", s.set, got, s.want)
		}
	}

	db := f.in[0].db
	d := *f.docTruth(t, 1)
	d.Title = "saved"
	if err := db.Save(&d).Error; err != nil || d.Version != 13 || f.docVersion(t, 1) != 13 {
		t.Fatalf("plugin Save: %v, model %d, database %d; want 13", err, d.Version, f.docVersion(t, 1))
	}
	if err := db.Model(&doc{}).Where("id IN ?", []int64{1, 2}).Update("title", "multi").Error; err != nil {
		t.Fatal(err)
	}
	if v1, v2 := f.docVersion(t, 1), f.docVersion(t, 2); v1 != 14 || v2 != 2 {
		t.Fatalf("after a multi-row update: versions %d, %d; want 14, 2", v1, v2)
	}
	r, err := f.in[0].docs.Get(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	r.Title = "repo"
	if err := f.in[0].docs.Update(t.Context(), r); err != nil || f.docVersion(t, 1) != 15 {
		t.Fatalf("repository Update: %v, database %d; want 15", err, f.docVersion(t, 1))
	}
	stale := []doc{{ID: 1, Title: "upsert", Version: 3}}
	if err := db.Save(&stale).Error; err != nil || f.docVersion(t, 1) != 16 {
		t.Fatalf("upsert of a stale row: %v, database %d; want 16", err, f.docVersion(t, 1))
	}
	f.checkDocs(t, 1, 2)
}

// triggerCount is how many gormcache triggers the table of model has.
func triggerCount(t *testing.T, db *gorm.DB, model any) int {
	t.Helper()
	var n int
	if err := db.Raw(`SELECT count(*) FROM pg_trigger WHERE tgrelid = ?::regclass AND tgname = ?`,
		quoteIdent(table(db, model)), triggerName).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// TestVersionTriggerIdempotent: installing twice leaves one trigger that
// raises the version once; dropping removes the trigger and its function,
// and may be repeated.
func TestVersionTriggerIdempotent(t *testing.T) {
	f := docFleet(t, nil, 1)
	for range 2 {
		if err := InstallVersionTrigger(f.base, &doc{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := triggerCount(t, f.base, &doc{}); n != 1 {
		t.Fatalf("%d triggers after two installs, want 1", n)
	}
	f.rawUpdate(t, "title = 'x'")
	if v := f.docVersion(t, 1); v != 2 {
		t.Fatalf("version %d after one UPDATE, want 2", v)
	}
	for range 2 {
		if err := DropVersionTrigger(f.base, &doc{}); err != nil {
			t.Fatal(err)
		}
	}
	fn := fitIdent("gormcache_version_" + table(f.base, &doc{}))
	var funcs int
	if err := f.base.Raw(`SELECT count(*) FROM pg_proc WHERE proname = ?`, fn).Scan(&funcs).Error; err != nil {
		t.Fatal(err)
	}
	if n := triggerCount(t, f.base, &doc{}); n != 0 || funcs != 0 {
		t.Fatalf("after Drop: %d trigger(s), %d function(s) %s", n, funcs, fn)
	}
	f.rawUpdate(t, "title = 'y'")
	if v := f.docVersion(t, 1); v != 2 {
		t.Fatalf("version %d after an UPDATE without the trigger, want 2", v)
	}
}

// TestVersionTriggerNames: table names that need quoting (case, a space),
// or carry a schema, get a working trigger; so does a database with
// prepared statements.
func TestVersionTriggerNames(t *testing.T) {
	testenv.Postgres(t)
	for _, c := range []struct {
		prefix  string
		prepare bool
	}{
		{testenv.Name(t) + " Odd Case ", false},
		{"public." + testenv.Name(t) + "_", false},
		{testenv.Name(t) + "_", true},
	} {
		db, err := gorm.Open(postgres.Open(os.Getenv(testenv.EnvPostgres)), &gorm.Config{
			Logger: logger.Discard, NamingStrategy: schema.NamingStrategy{TablePrefix: c.prefix}, PrepareStmt: c.prepare})
		if err != nil {
			t.Fatal(err)
		}
		sqlDB, _ := db.DB()
		t.Cleanup(func() { sqlDB.Close() })
		if err := db.AutoMigrate(&doc{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Migrator().DropTable(&doc{}) })
		withTrigger(t, db, &doc{})
		d := doc{ID: 1, Title: "a", Version: 1}
		if err := db.Create(&d).Error; err != nil {
			t.Fatal(err)
		}
		if err := db.Model(&doc{}).Where("id = 1").UpdateColumn("title", "b").Error; err != nil {
			t.Fatal(err)
		}
		if err := db.First(&d, 1).Error; err != nil || d.Version != 2 {
			t.Fatalf("table %q: version %d (%v) after an UPDATE, want 2", table(db, &doc{}), d.Version, err)
		}
	}
}

// otherDialector is a dialector that names another database: the
// PostgreSQL one under the name of SQLite.
type otherDialector struct{ *postgres.Dialector }

func (otherDialector) Name() string { return "sqlite" }

// TestVersionTriggerBadInput: a model without a version column, a database
// that is not PostgreSQL and nil arguments are refused (no server needed:
// the handles are never connected).
func TestVersionTriggerBadInput(t *testing.T) {
	const dsn = "host=127.0.0.1 port=1 dbname=none connect_timeout=1"
	cfg := func() *gorm.Config { return &gorm.Config{Logger: logger.Discard, DisableAutomaticPing: true} }
	lite, err := gorm.Open(otherDialector{postgres.Open(dsn).(*postgres.Dialector)}, cfg())
	if err != nil {
		t.Fatal(err)
	}
	pg, err := gorm.Open(postgres.Open(dsn), cfg())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		db    *gorm.DB
		model any
	}{
		{"sqlite", lite, &doc{}},
		{"unversioned model", pg, &user{}},
		{"not a struct", pg, 5},
		{"nil model", pg, nil},
		{"nil db", nil, &doc{}},
	} {
		for op, fn := range map[string]func(*gorm.DB, any) error{"Install": InstallVersionTrigger, "Drop": DropVersionTrigger} {
			if err := fn(c.db, c.model); !errors.Is(err, ErrTriggerUnsupported) {
				t.Errorf("%s %s: %v, want ErrTriggerUnsupported", op, c.name, err)
			}
		}
	}
}

// TestFitIdent: long names are cut to PostgreSQL's 63 bytes, stay distinct
// and valid UTF-8.
func TestFitIdent(t *testing.T) {
	long := strings.Repeat("é", 40)
	a, b := fitIdent(long+"a"), fitIdent(long+"b")
	if a == b || len(a) > maxIdent || len(b) > maxIdent || !utf8.ValidString(a) {
		t.Errorf("fitIdent: %q, %q", a, b)
	}
	if got := fitIdent("short"); got != "short" {
		t.Errorf("fitIdent(short) = %q", got)
	}
}

// Install the trigger after migrating, at every start (it is idempotent):
// then raw SQL and other programs raise the version too.
func ExampleInstallVersionTrigger() {
	type Doc struct {
		ID    int64
		Title string
		repository.Version
	}
	db, err := gorm.Open(postgres.Open(os.Getenv("DATABASE_URL")))
	if err != nil {
		return
	}
	if err := db.AutoMigrate(&Doc{}); err != nil {
		return
	}
	if err := InstallVersionTrigger(db, &Doc{}); err != nil {
		return
	}
	// UPDATE docs SET title = 'x' WHERE id = 1 now raises docs.version.
}
