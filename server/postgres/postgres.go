// Package postgres opens the controller's store (server/sqlstore) in a
// Postgres database: for several controllers of one cluster, each a
// stateless process in front of the same database.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"plane/migrations"
	"plane/server/sqlstore"
)

// Postgres's SQLSTATE codes the store tells apart.
const (
	uniqueViolation      = "23505"
	foreignKeyViolation  = "23503"
	serializationFailure = "40001"
	deadlockDetected     = "40P01"
)

// maxConns bounds one controller's connections: Postgres's default
// max_connections is 100, shared by every controller of the cluster.
const maxConns = 16

// dialect is Postgres's, for sqlstore. Write transactions are serializable
// and run again when Postgres refuses one for a concurrent transaction
// (sqlstore.DB.inTx says why); reads see one snapshot.
var dialect = sqlstore.Dialect{
	Name:         "postgres",
	Numbered:     true,
	IsUnique:     func(err error) bool { return code(err) == uniqueViolation },
	IsForeignKey: func(err error) bool { return code(err) == foreignKeyViolation },
	WriteTx:      &sql.TxOptions{Isolation: sql.LevelSerializable},
	ReadTx:       &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	Retry: func(err error) bool {
		c := code(err)
		return c == serializationFailure || c == deadlockDetected
	},
	// Rows copied with their ids leave the identity sequences behind: each
	// BY DEFAULT identity (the ids; the rowid columns are ALWAYS, never
	// copied, and numbered as they went in) moves past its largest value.
	AfterCopy: func(ctx context.Context, tx *sql.Tx, tables []string) error {
		rows, err := tx.QueryContext(ctx, `
			SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
			WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($1) AND a.attidentity = 'd'`, tables)
		if err != nil {
			return fmt.Errorf("find identity columns: %w", err)
		}
		var idents [][2]string
		for rows.Next() {
			var table, column string
			if err := rows.Scan(&table, &column); err != nil {
				rows.Close()
				return fmt.Errorf("find identity columns: %w", err)
			}
			idents = append(idents, [2]string{table, column})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("find identity columns: %w", err)
		}
		for _, tc := range idents {
			table, column := pgx.Identifier{tc[0]}.Sanitize(), pgx.Identifier{tc[1]}.Sanitize()
			if _, err := tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX(`+column+`), 0) + 1, false) FROM `+table,
				table, tc[1]); err != nil {
				return fmt.Errorf("advance the identity of %s.%s: %w", tc[0], tc[1], err)
			}
		}
		return nil
	},
}

func code(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// IsURL reports whether store names a Postgres database (a postgres:// or
// postgresql:// URL) rather than a sqlite file.
func IsURL(store string) bool {
	return strings.HasPrefix(store, "postgres://") || strings.HasPrefix(store, "postgresql://")
}

// Open connects to the database at url (postgres://user:password@host/db),
// applies pending migrations and returns the store. Errors never repeat
// url: it may hold a password.
func Open(ctx context.Context, url string) (*sqlstore.DB, error) {
	db, err := connect(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return sqlstore.New(db, db, dialect, db.Close), nil
}

// Migrate applies pending migrations to the database at url: `plane migrate`.
func Migrate(ctx context.Context, url string) error {
	db, err := connect(ctx, url)
	if err != nil {
		return err
	}
	defer db.Close()
	return migrate(ctx, db)
}

func connect(ctx context.Context, url string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL, password and all.
		return nil, errors.New("open postgres store: the URL does not parse (want postgres://user:password@host:port/database?sslmode=…)")
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	return db, nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	// Controllers that start at once take turns: goose holds an advisory
	// lock while it migrates.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.Postgres,
		goose.WithDisableGlobalRegistry(true), goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
