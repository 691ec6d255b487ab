// Package sqlite opens the controller's store (server/sqlstore) in one
// sqlite file: the embedded default, for `plane dev` and clusters with one
// controller.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/pressly/goose/v3"

	"plane/migrations"
	"plane/server/sqlstore"
)

// busyTimeout is how long a connection waits for a lock held by another
// process (such as `plane migrate` next to a running controller) before
// failing with SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// DB is the controller's store.
type DB = sqlstore.DB

// dialect is sqlite's, for sqlstore.
//
// sqlite allows one writer at a time. Rather than letting concurrent writers
// race for the lock and fail with SQLITE_BUSY, every write goes through one
// connection, so database/sql queues writers in Go; transactions on it begin
// IMMEDIATE, so a transaction that reads then writes never has to upgrade
// its lock. Reads use a separate pool: in WAL mode they run alongside the
// writer and see every committed write.
var dialect = sqlstore.Dialect{
	Name:         "sqlite",
	IsUnique:     isUnique,
	IsForeignKey: isForeignKey,
}

// Open opens the store at path, creating the file if needed, and applies
// pending migrations.
func Open(ctx context.Context, path string) (*DB, error) {
	write, err := openWriter(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, write); err != nil {
		write.Close()
		return nil, err
	}
	read, err := sql.Open("sqlite3", dsn(path, url.Values{
		"_busy_timeout": {fmt.Sprint(busyTimeout.Milliseconds())},
		"_foreign_keys": {"on"},
		// A write on the read pool would bypass the writer's queue.
		"_query_only": {"on"},
	}))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	read.SetMaxOpenConns(max(4, runtime.NumCPU()))
	return sqlstore.New(write, read, dialect, func() error { return errors.Join(read.Close(), write.Close()) }), nil
}

// Migrate applies pending migrations to the store at path, creating the file
// if needed: `plane migrate`.
func Migrate(ctx context.Context, path string) error {
	write, err := openWriter(ctx, path)
	if err != nil {
		return err
	}
	defer write.Close()
	return migrate(ctx, write)
}

func openWriter(ctx context.Context, path string) (*sql.DB, error) {
	if path == "" || path == ":memory:" {
		// Two pools cannot share an in-memory database.
		return nil, fmt.Errorf("open sqlite: a file path is required, got %q", path)
	}
	if err := ownerOnly(path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite3", dsn(path, url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"NORMAL"}, // durable enough with WAL: a power loss may lose the last commits, never corrupts
		"_busy_timeout": {fmt.Sprint(busyTimeout.Milliseconds())},
		"_foreign_keys": {"on"},
		"_txlock":       {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return db, nil
}

// ownerOnly makes the store's files readable by their owner only: they
// hold password hashes, session ids and backends' environments. sqlite
// creates a file 0644 (less the umask), and its -wal and -shm files with
// the main file's mode, so the main file is created 0600 before sqlite
// opens it; files of an older install are narrowed to 0600.
func ownerOnly(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open sqlite: %w", err)
		}
		if fi.Mode().Perm() != 0o600 {
			if err := os.Chmod(p, 0o600); err != nil {
				return fmt.Errorf("open sqlite: make %s readable by its owner only: %w", p, err)
			}
		}
	}
	return nil
}

// dsn builds a sqlite URI for mattn/go-sqlite3. The path is escaped so that
// a '?' or '#' in it is not taken for the start of the parameters.
func dsn(path string, params url.Values) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + esc + "?" + params.Encode()
}

func migrate(ctx context.Context, db *sql.DB) error {
	p, err := goose.NewProvider(goose.DialectSQLite3, db, migrations.SQLite, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

func isUnique(err error) bool {
	var e sqlite3.Error
	return errors.As(err, &e) &&
		(e.ExtendedCode == sqlite3.ErrConstraintUnique || e.ExtendedCode == sqlite3.ErrConstraintPrimaryKey)
}

func isForeignKey(err error) bool {
	var e sqlite3.Error
	return errors.As(err, &e) && e.ExtendedCode == sqlite3.ErrConstraintForeignKey
}
