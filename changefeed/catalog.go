package changefeed

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// query runs sql with text arguments on a regular connection and returns the
// rows as text (NULL as "").
func query(ctx context.Context, conn *pgconn.PgConn, sql string, args ...string) ([][]string, error) {
	params := make([][]byte, len(args))
	for i, a := range args {
		params[i] = []byte(a)
	}
	res := conn.ExecParams(ctx, sql, params, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	out := make([][]string, len(res.Rows))
	for i, row := range res.Rows {
		out[i] = make([]string, len(row))
		for j, v := range row {
			out[i][j] = string(v)
		}
	}
	return out, nil
}

// tableInfo is what the catalog says of a followed table.
type tableInfo struct {
	name    string   // as given (Options.Tables, Describe) or schema.table
	schema  string   // "" if the table does not exist
	rel     string   //
	pk      []string // primary-key columns, in column order
	ident   string   // pg_class.relreplident: d, n, f, i
	identIx bool     // an index is marked as replica identity
}

// publishable: PostgreSQL can send its UPDATEs and DELETEs (otherwise
// publishing it would make PostgreSQL refuse them).
func (t tableInfo) publishable() bool {
	switch {
	case t.schema == "":
		return false
	case t.ident == "n":
		return false
	case t.ident == "d":
		return len(t.pk) > 0
	case t.ident == "i":
		return t.identIx
	}
	return true
}

// problem says why the feed cannot key the table's rows ("" if it can).
func (t tableInfo) problem() string {
	switch {
	case t.schema == "":
		return "does not exist"
	case !t.publishable():
		return "no primary key or replica identity: not published, its writes are not seen"
	case len(t.pk) == 0:
		return "no primary key: every change to it retires its cache"
	}
	return ""
}

func (t tableInfo) qualified() string { return pgx.Identifier{t.schema, t.rel}.Sanitize() }

const infoCols = `n.nspname, c.relname, c.relreplident::text,
	COALESCE((SELECT string_agg(a.attname, chr(31) ORDER BY a.attnum) FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = c.oid AND i.indisprimary), ''),
	EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)::text`

func infoOf(row []string) tableInfo {
	t := tableInfo{schema: row[0], rel: row[1], ident: row[2], identIx: row[4] == "true"}
	if row[3] != "" {
		t.pk = strings.Split(row[3], "\x1f")
	}
	return t
}

// lookupTable reads the catalog entry of a table name (resolved by the
// search path when it has no schema).
func lookupTable(ctx context.Context, conn *pgconn.PgConn, name string) (tableInfo, error) {
	parts := strings.SplitN(name, ".", 2)
	reg := pgx.Identifier(parts).Sanitize()
	rows, err := query(ctx, conn, `SELECT `+infoCols+` FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = to_regclass($1)`, reg)
	if err != nil {
		return tableInfo{}, err
	}
	if len(rows) == 0 {
		return tableInfo{name: name}, nil
	}
	t := infoOf(rows[0])
	t.name = name
	return t, nil
}

// publishedTables reads the tables of a publication.
func publishedTables(ctx context.Context, conn *pgconn.PgConn, pub string) ([]tableInfo, error) {
	rows, err := query(ctx, conn, `SELECT `+infoCols+` FROM pg_publication_tables p
		JOIN pg_namespace n ON n.nspname = p.schemaname
		JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
		WHERE p.pubname = $1 ORDER BY 1, 2`, pub)
	if err != nil {
		return nil, err
	}
	out := make([]tableInfo, len(rows))
	for i, row := range rows {
		out[i] = infoOf(row)
		out[i].name = out[i].schema + "." + out[i].rel
	}
	return out, nil
}

// ensurePublication creates or updates the publication so that it holds
// exactly the publishable tables of infos (every table with all). It
// reports whether the publication existed before, and its comment (where
// the relay notes a retirement it still owes).
func ensurePublication(ctx context.Context, conn *pgconn.PgConn, pub string, all bool, infos []tableInfo) (existed bool, comment string, err error) {
	rows, err := query(ctx, conn, `SELECT puballtables::text, COALESCE(obj_description(oid, 'pg_publication'), '') FROM pg_publication WHERE pubname = $1`, pub)
	if err != nil {
		return false, "", err
	}
	if len(rows) > 0 {
		existed, comment = true, rows[0][1]
	}
	return existed, comment, alterPublication(ctx, conn, pub, all, infos, rows)
}

func alterPublication(ctx context.Context, conn *pgconn.PgConn, pub string, all bool, infos []tableInfo, rows [][]string) error {
	ident := pgx.Identifier{pub}.Sanitize()
	if all {
		switch {
		case len(rows) == 0:
			return exec(ctx, conn, `CREATE PUBLICATION `+ident+` FOR ALL TABLES`)
		case rows[0][0] != "true":
			return fmt.Errorf("%w: publication %s exists and is not FOR ALL TABLES", ErrInvalidOption, pub)
		}
		return nil
	}
	var names []string
	seen := map[string]bool{}
	for _, t := range infos {
		if t.publishable() && !seen[t.qualified()] {
			seen[t.qualified()] = true
			names = append(names, t.qualified())
		}
	}
	list := strings.Join(names, ", ")
	switch {
	case len(rows) == 0 && len(names) == 0:
		return exec(ctx, conn, `CREATE PUBLICATION `+ident)
	case len(rows) == 0:
		return exec(ctx, conn, `CREATE PUBLICATION `+ident+` FOR TABLE `+list)
	case rows[0][0] == "true":
		return fmt.Errorf("%w: publication %s exists and is FOR ALL TABLES", ErrInvalidOption, pub)
	case len(names) == 0:
		cur, err := publishedTables(ctx, conn, pub)
		if err != nil || len(cur) == 0 {
			return err
		}
		var drop []string
		for _, t := range cur {
			drop = append(drop, t.qualified())
		}
		return exec(ctx, conn, `ALTER PUBLICATION `+ident+` DROP TABLE `+strings.Join(drop, ", "))
	}
	return exec(ctx, conn, `ALTER PUBLICATION `+ident+` SET TABLE `+list)
}

// notePublication sets the publication's comment.
func notePublication(ctx context.Context, conn *pgconn.PgConn, pub, note string) error {
	return exec(ctx, conn, `COMMENT ON PUBLICATION `+pgx.Identifier{pub}.Sanitize()+` IS `+noteLiteral(note))
}

func noteLiteral(s string) string {
	if s == "" {
		return "NULL"
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func exec(ctx context.Context, conn *pgconn.PgConn, sql string) error {
	_, err := conn.Exec(ctx, sql).ReadAll()
	return err
}

// slotState reads the slot: whether it exists, its wal_status, its
// database.
func slotState(ctx context.Context, conn *pgconn.PgConn, slot string) (exists bool, walStatus, database, plugin string, err error) {
	rows, err := query(ctx, conn, `SELECT COALESCE(wal_status, ''), COALESCE(database::text, ''), COALESCE(plugin::text, '')
		FROM pg_replication_slots WHERE slot_name = $1`, slot)
	if err != nil || len(rows) == 0 {
		return false, "", "", "", err
	}
	return true, rows[0][0], rows[0][1], rows[0][2], nil
}

// pgCode is the SQLSTATE of err ("" if not a server error).
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// slotGone reports a streaming error that means the slot can no longer
// deliver: its WAL was removed, or it was invalidated.
func slotGone(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "has already been removed") ||
		strings.Contains(s, "can no longer get changes from replication slot") ||
		strings.Contains(s, "This slot has been invalidated")
}
