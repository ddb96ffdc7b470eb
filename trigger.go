package gormcache

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"unicode/utf8"

	"gorm.io/gorm"

	"github.com/gormcache/gormcache/internal/bind"
)

// ErrTriggerUnsupported is returned by InstallVersionTrigger and
// DropVersionTrigger for a model without a repository.Version column, a
// database that is not PostgreSQL, or a nil argument.
var ErrTriggerUnsupported = errors.New("gormcache: version trigger unsupported")

// triggerName is the trigger's name on every table (trigger names are per
// table in PostgreSQL).
const triggerName = "gormcache_version"

// maxIdent is PostgreSQL's identifier length (NAMEDATALEN-1 bytes); longer
// names are truncated by the server, so two long tables could share one.
const maxIdent = 63

// dollarTag quotes the function's body.
const dollarTag = "$gormcache$"

// InstallVersionTrigger installs on the table of model (a struct with a
// repository.Version column) a PL/pgSQL BEFORE UPDATE trigger that raises
// the version of every updated row by one, unless the UPDATE raised it
// itself: then a writer that does not know the version column (raw SQL,
// another program, an upsert) still moves it, and the plugin's, a
// Repository's or optimistic-gorm's "version = v+1" is not bumped twice. A
// version set back, or left as it was, becomes the old version + 1.
//
// It is idempotent (CREATE OR REPLACE FUNCTION, then DROP TRIGGER IF EXISTS
// and CREATE TRIGGER, in one transaction), so it can run at every start,
// after AutoMigrate. The table is the model's, with the NamingStrategy's
// prefix; the function, gormcache_version_<table> (shortened with a hash
// past 63 bytes), lives in the table's schema. Its error wraps
// ErrTriggerUnsupported for a model without a version column or a
// database whose dialector is not "postgres".
func InstallVersionTrigger(db *gorm.DB, model any) error {
	t, err := versionTarget(db, model)
	if err != nil {
		return err
	}
	if strings.Contains(t.column, dollarTag) {
		return fmt.Errorf("%w: column %s contains %s", ErrTriggerUnsupported, t.column, dollarTag)
	}
	body := fmt.Sprintf(`BEGIN
	IF NEW.%[1]s > OLD.%[1]s THEN
		RETURN NEW; -- the writer raised it
	END IF;
	NEW.%[1]s := COALESCE(OLD.%[1]s, 0) + 1;
	RETURN NEW;
END`, t.column)
	return ddl(db,
		fmt.Sprintf("CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS %s\n%s\n%s", t.function, dollarTag, body, dollarTag),
		fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", quoteIdent(triggerName), t.table),
		fmt.Sprintf("CREATE TRIGGER %s BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s()", quoteIdent(triggerName), t.table, t.function),
	)
}

// DropVersionTrigger removes what InstallVersionTrigger installed on the
// table of model (nothing if it is not there). Its errors are those of
// InstallVersionTrigger.
func DropVersionTrigger(db *gorm.DB, model any) error {
	t, err := versionTarget(db, model)
	if err != nil {
		return err
	}
	return ddl(db,
		fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", quoteIdent(triggerName), t.table),
		fmt.Sprintf("DROP FUNCTION IF EXISTS %s()", t.function),
	)
}

// versionTrigger names what the trigger of one table needs, quoted.
type versionTrigger struct {
	table, function, column string
}

func versionTarget(db *gorm.DB, model any) (versionTrigger, error) {
	if db == nil || model == nil {
		return versionTrigger{}, fmt.Errorf("%w: nil database or model", ErrTriggerUnsupported)
	}
	if db.Dialector == nil || db.Dialector.Name() != "postgres" {
		name := "none"
		if db.Dialector != nil {
			name = db.Dialector.Name()
		}
		return versionTrigger{}, fmt.Errorf("%w: the database is %s, not postgres", ErrTriggerUnsupported, name)
	}
	stmt := &gorm.Statement{DB: db}
	if err := stmt.Parse(model); err != nil {
		return versionTrigger{}, fmt.Errorf("%w: %T: %w", ErrTriggerUnsupported, model, err)
	}
	f := versionField(stmt.Schema)
	if f == nil {
		return versionTrigger{}, fmt.Errorf("%w: %T has no repository.Version column", ErrTriggerUnsupported, model)
	}
	// "schema.table", as GORM reads a table name with a dot.
	parts := strings.Split(stmt.Schema.Table, ".")
	fn := append(append([]string(nil), parts[:len(parts)-1]...), fitIdent("gormcache_version_"+parts[len(parts)-1]))
	return versionTrigger{table: quoteIdents(parts), function: quoteIdents(fn), column: quoteIdent(f.DBName)}, nil
}

// ddl runs stmts in one transaction. They change no rows, so the plugin is
// told not to retire the cache for them (it would for a DROP).
func ddl(db *gorm.DB, stmts ...string) error {
	return db.Session(&gorm.Session{NewDB: true}).Transaction(func(tx *gorm.DB) error {
		for _, s := range stmts {
			if err := tx.Set(bind.Handled, true).Exec(s).Error; err != nil {
				return fmt.Errorf("gormcache: version trigger: %w", err)
			}
		}
		return nil
	})
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteIdents(parts []string) string {
	q := make([]string, len(parts))
	for i, p := range parts {
		q[i] = quoteIdent(p)
	}
	return strings.Join(q, ".")
}

// fitIdent shortens a name longer than PostgreSQL keeps to a prefix and a
// hash of the whole, so that distinct long names stay distinct.
func fitIdent(name string) string {
	if len(name) <= maxIdent {
		return name
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	suffix := fmt.Sprintf("_%08x", h.Sum32())
	prefix := name[:maxIdent-len(suffix)]
	for !utf8.ValidString(prefix) { // do not cut a character in two
		prefix = prefix[:len(prefix)-1]
	}
	return prefix + suffix
}
