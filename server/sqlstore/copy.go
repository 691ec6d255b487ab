package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// copyTables are the store's tables in the order Copy fills them: a table
// comes after those its foreign keys point to. order is what the source is
// read in: the id where there is one, else rowid for the tables whose
// listings sqlite orders by rowid (Postgres has a rowid column of that name
// in those, numbered as rows go in, so the copy keeps their order), else
// the primary key (or what there is), for a copy that does not depend on
// the source's plans.
var copyTables = []struct{ name, order string }{
	{"teams", "id"},
	{"users", "id"},
	{"projects", "id"},
	{"images", "id"},
	{"backends", "rowid"},
	{"backend_status_history", "rowid"},
	{"drones", "id"},
	{"api_tokens", "rowid"},
	{"team_members", "rowid"},
	{"invites", "id"},
	{"sessions", "id"},
	{"login_failures", "time_ms, key"},
	{"activity", "id"},
	{"cluster", "one"},
	{"acme_state", "one"},
	{"signing_keys", "id"},
	{"project_events", "id"},
	{"backend_connections", "backend_id, \"user\""},
	{"webhooks", "id"},
	{"webhook_deliveries", "id"},
	{"webhook_attempts", "id"},
}

// copyBatch is how many rows one INSERT of Copy carries: few round trips to
// a remote Postgres, and far below either database's limit on parameters.
const copyBatch = 100

// TableCount is how many rows a table of the store holds.
type TableCount struct {
	Table string
	Rows  int64
}

// CountRows returns the number of rows of each of the store's tables, in
// the order Copy fills them, from one snapshot.
func (db *DB) CountRows(ctx context.Context) ([]TableCount, error) {
	var counts []TableCount
	err := db.inReadTx(ctx, func(tx *conn) error {
		var err error
		counts, err = countRows(ctx, tx)
		return err
	})
	return counts, err
}

func countRows(ctx context.Context, q queryer) ([]TableCount, error) {
	counts := make([]TableCount, 0, len(copyTables))
	for _, t := range copyTables {
		c := TableCount{Table: t.name}
		if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t.name).Scan(&c.Rows); err != nil {
			return nil, fmt.Errorf("count rows of %s: %w", t.name, err)
		}
		counts = append(counts, c)
	}
	return counts, nil
}

// Copy moves the whole store from into to, a new, empty store at the same
// migration version, keeping every id: `plane admin migrate-store`, from
// sqlite to Postgres when a cluster grows to several controllers, or back.
// from is read in one read transaction, so the copy is one snapshot of it
// even while a controller writes it; to is written in one write
// transaction, so a failed copy leaves it empty.
func Copy(ctx context.Context, from, to *DB) error {
	if from == to {
		return errors.New("copy store: the source and the destination are the same store")
	}
	err := from.inReadTx(ctx, func(src *conn) error {
		fromVersion, err := migrationVersion(ctx, src)
		if err != nil {
			return fmt.Errorf("source: %w", err)
		}
		return to.inTx(ctx, func(dst *conn) error {
			toVersion, err := migrationVersion(ctx, dst)
			if err != nil {
				return fmt.Errorf("destination: %w", err)
			}
			switch {
			case toVersion < fromVersion:
				return fmt.Errorf("the destination (%s) is at migration %d, older than the source (%s, at %d): run plane migrate on the destination first",
					to.dialect.Name, toVersion, from.dialect.Name, fromVersion)
			case fromVersion < toVersion:
				return fmt.Errorf("the source (%s) is at migration %d, older than the destination (%s, at %d): run plane migrate on the source first",
					from.dialect.Name, fromVersion, to.dialect.Name, toVersion)
			}
			if err := mustBeEmpty(ctx, dst); err != nil {
				return err
			}
			names := make([]string, len(copyTables))
			for i, t := range copyTables {
				names[i] = t.name
				if err := copyTable(ctx, src, dst, t.name, t.order); err != nil {
					return fmt.Errorf("copy %s: %w", t.name, err)
				}
			}
			if to.dialect.AfterCopy == nil {
				return nil
			}
			// dst wraps the *sql.Tx of tryTx.
			return to.dialect.AfterCopy(ctx, dst.q.(*sql.Tx), names)
		})
	})
	if err != nil {
		return fmt.Errorf("copy store: %w", err)
	}
	return nil
}

// migrationVersion is the store's version: the last migration goose
// applied to it.
func migrationVersion(ctx context.Context, q queryer) (int64, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx,
		`SELECT MAX(version_id) FROM goose_db_version WHERE is_applied`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read the migration version: %w", err)
	}
	return v.Int64, nil
}

// mustBeEmpty refuses a destination with a row in any table: the copy keeps
// ids, which would clash with its rows, or mix two clusters' data.
func mustBeEmpty(ctx context.Context, q queryer) error {
	counts, err := countRows(ctx, q)
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	var held []string
	for _, c := range counts {
		if c.Rows > 0 {
			held = append(held, fmt.Sprintf("%s (%d)", c.Table, c.Rows))
		}
	}
	if len(held) > 0 {
		return fmt.Errorf("the destination is not empty: it holds rows in %s; copy into a new, empty store", strings.Join(held, ", "))
	}
	return nil
}

// copyTable copies every row of table from src to dst, column by name. The
// columns are the source's, less rowid (Postgres numbers it itself); each
// must be one of the destination's, whose types decide how values convert.
func copyTable(ctx context.Context, src, dst *conn, table, order string) error {
	types, err := columnTypes(ctx, dst, table)
	if err != nil {
		return err
	}
	rows, err := src.QueryContext(ctx, `SELECT * FROM `+table+` ORDER BY `+order)
	if err != nil {
		return err
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return err
	}
	var cols []int // the source's columns that are copied
	var quoted, dstTypes []string
	for i, name := range names {
		name = strings.ToLower(name)
		if name == "rowid" {
			continue
		}
		t, ok := types[name]
		if !ok {
			return fmt.Errorf("the destination has no column %s: are both stores of the same release?", name)
		}
		cols = append(cols, i)
		quoted = append(quoted, `"`+name+`"`)
		dstTypes = append(dstTypes, t)
	}
	insert := `INSERT INTO ` + table + ` (` + strings.Join(quoted, ", ") + `) VALUES `
	one := `(?` + strings.Repeat(", ?", len(cols)-1) + `)`

	values := make([]any, len(names))
	ptrs := make([]any, len(names))
	for i := range values {
		ptrs[i] = &values[i]
	}
	var args []any
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		query := insert + one + strings.Repeat(", "+one, n-1)
		if _, err := dst.ExecContext(ctx, query, args...); err != nil {
			return err
		}
		args, n = args[:0], 0
		return nil
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for j, i := range cols {
			args = append(args, convert(values[i], dstTypes[j]))
		}
		if n++; n == copyBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return flush()
}

// columnTypes returns the database types of table's columns in the store of
// q, by lower-case name.
func columnTypes(ctx context.Context, q queryer, table string) (map[string]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT * FROM `+table+` WHERE 1 = 0`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cts, err := rows.ColumnTypes()
	if err != nil {
		return nil, err
	}
	types := make(map[string]string, len(cts))
	for _, ct := range cts {
		types[strings.ToLower(ct.Name())] = strings.ToUpper(ct.DatabaseTypeName())
	}
	return types, rows.Err()
}

// convert makes a value read from one database fit a column of type typ of
// the other: flags are INTEGER 0/1 in sqlite and BOOLEAN in Postgres, and
// text may come as bytes.
func convert(v any, typ string) any {
	switch v := v.(type) {
	case int64:
		if typ == "BOOL" || typ == "BOOLEAN" {
			return v != 0
		}
	case bool:
		if typ != "BOOL" && typ != "BOOLEAN" {
			if v {
				return int64(1)
			}
			return int64(0)
		}
	case []byte:
		if typ != "BYTEA" && typ != "BLOB" {
			return string(v)
		}
	}
	return v
}
