package gormcache

import (
	"github.com/gormcache/gormcache/internal/bind"
	"regexp"
	"strings"

	"gorm.io/gorm"
)

// Raw SQL: db.Exec, and db.Raw(...) run through Scan, Rows or Find. The
// plugin does not parse SQL beyond its first word: a statement that may
// write retires every namespace once it commits.

func (p *Plugin) afterRaw(db *gorm.DB) {
	stmt := db.Statement
	if db.DryRun || stmt.SQL.Len() == 0 {
		return
	}
	if h, ok := db.Get(bind.Handled); ok && h == true {
		return
	}
	sql := stmt.SQL.String()
	switch classify(sql) {
	case sqlRead:
		return
	case sqlDML:
		if db.Error == nil && db.RowsAffected == 0 {
			return // an INSERT, UPDATE or DELETE that changed nothing
		}
	}
	var ch changes
	ch.retireAll(p.allCaches())
	p.route(db, &ch)
}

// afterRawQuery handles queries: GORM's own start with SELECT and cost one
// prefix check; raw ones may be "UPDATE ... RETURNING" or a CTE that writes.
func (p *Plugin) afterRawQuery(db *gorm.DB) {
	if startsWithFold(db.Statement.SQL.String(), "SELECT") {
		return
	}
	p.afterRaw(db)
}

type sqlClass int

const (
	sqlRead  sqlClass = iota // cannot change a row
	sqlDML                   // INSERT, UPDATE, DELETE, MERGE: RowsAffected says whether it did
	sqlOther                 // anything else (TRUNCATE, ALTER, COPY, CALL, a CTE that writes...)
)

// readVerbs cannot change the rows of a table (a SELECT calling a function
// that writes is the documented exception).
var readVerbs = map[string]bool{
	"SELECT": true, "SHOW": true, "SET": true, "RESET": true, "SAVEPOINT": true, "RELEASE": true,
	"ROLLBACK": true, "BEGIN": true, "START": true, "LISTEN": true, "UNLISTEN": true, "NOTIFY": true,
	"VACUUM": true, "ANALYZE": true, "CREATE": true, "VALUES": true, "TABLE": true, "DECLARE": true,
	"FETCH": true, "CLOSE": true, "DEALLOCATE": true, "PREPARE": true, "DISCARD": true, "LOCK": true,
}

var writesInCTE = regexp.MustCompile(`(?i)\b(insert|update|delete|merge)\b`)

func classify(sql string) sqlClass {
	s := strings.TrimLeft(sql, " \t\r\n(")
	verb := s
	if i := strings.IndexAny(s, " \t\r\n("); i >= 0 {
		verb = s[:i]
	}
	verb = strings.ToUpper(verb)
	switch {
	case verb == "INSERT" || verb == "UPDATE" || verb == "DELETE" || verb == "MERGE":
		return sqlDML
	case verb == "WITH":
		if writesInCTE.MatchString(s) {
			return sqlOther
		}
		return sqlRead
	case verb == "EXPLAIN":
		if strings.Contains(strings.ToUpper(s), "ANALYZE") {
			return sqlOther // EXPLAIN ANALYZE runs the statement
		}
		return sqlRead
	case readVerbs[verb]:
		return sqlRead
	}
	return sqlOther
}

func startsWithFold(s, prefix string) bool {
	s = strings.TrimLeft(s, " \t\r\n")
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
