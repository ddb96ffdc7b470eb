package gormcache

import (
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/gormcache/gormcache/repository"
)

// versionSetting is the statement setting through which optimistic locking
// tells the write path the version a write committed.
const versionSetting = "gormcache:version"

// versionField returns the model's repository.Version column, or nil.
func versionField(sch *schema.Schema) *schema.Field {
	if sch == nil {
		return nil
	}
	for _, f := range sch.Fields {
		if f.FieldType == reflect.TypeFor[repository.Version]() && f.DBName != "" {
			return f
		}
	}
	return nil
}

// lockedVersion returns the version a write under optimistic locking
// committed, if the locking callbacks recorded one.
func lockedVersion(stmt *gorm.Statement) (uint64, bool) {
	v, ok := stmt.Settings.Load(versionSetting)
	if !ok {
		return 0, false
	}
	n, ok := v.(uint64)
	return n, ok
}

// registerVersioning adds the optimistic-locking callbacks for models with a
// repository.Version column.
// db is the database being initialized (register on db.Callback()).
func (p *Plugin) registerVersioning(db *gorm.DB) error { return nil }
