// Package sqlite is the controller's store: projects, images, backends and
// their status history, drones, API tokens, and the dashboard's users, teams,
// sessions, invites and activity log in one sqlite file.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
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

	"plane"
	"plane/migrations"
)

// busyTimeout is how long a connection waits for a lock held by another
// process (such as `plane migrate` next to a running controller) before
// failing with SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// DB is the controller's store. Safe for concurrent use.
//
// sqlite allows one writer at a time. Rather than letting concurrent writers
// race for the lock and fail with SQLITE_BUSY, every write goes through one
// connection, so database/sql queues writers in Go; transactions on it begin
// IMMEDIATE, so a transaction that reads then writes never has to upgrade
// its lock. Reads use a separate pool: in WAL mode they run alongside the
// writer and see every committed write.
type DB struct {
	write *sql.DB
	read  *sql.DB
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
	return &DB{write: write, read: read}, nil
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

// Close closes the store.
func (db *DB) Close() error {
	return errors.Join(db.read.Close(), db.write.Close())
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
	p, err := goose.NewProvider(goose.DialectSQLite3, db, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// queryer is what *sql.DB and *sql.Tx have in common, so that finders run
// on the read pool or inside a write transaction.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// queryAll runs a query and scans each row with scan. No rows is an empty
// slice, not nil, so that lists encode as [] rather than null.
func queryAll[T any](ctx context.Context, q queryer, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	list := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return list, nil
}

// inTx runs fn in a write transaction, committed when fn returns nil.
func (db *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// inReadTx runs fn in a read transaction: its queries see one snapshot.
func (db *DB) inReadTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.read.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer tx.Rollback()
	return fn(tx)
}

// conflict returns an ECONFLICT error about one field, worded like
// plane.FieldErrorf so that users see at once which input clashes.
func conflict(field, format string, args ...any) *plane.Error {
	return &plane.Error{Code: plane.ECONFLICT, Field: field, Message: field + ": " + fmt.Sprintf(format, args...)}
}

// rowAffected turns an update or delete that matched no row into ENOTFOUND.
func rowAffected(res sql.Result, format string, args ...any) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("rows affected: %w", err)
	}
	if n == 0 {
		return plane.Errorf(plane.ENOTFOUND, format, args...)
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

// Times are stored as unix milliseconds: the precision of the status history.

func toMS(t time.Time) int64 { return t.UnixMilli() }

func fromMS(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// toNullMS stores a nil time as NULL.
func toNullMS(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: toMS(*t), Valid: true}
}

func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

// now is the current time at the store's precision.
func now() time.Time { return fromMS(toMS(time.Now())) }

// orNow returns t at the store's precision, or now when t is zero.
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return now()
	}
	return fromMS(toMS(t))
}

// orLater returns t at the store's precision, or ttl after from when t is
// zero: the default expiry of sessions and invites.
func orLater(t, from time.Time, ttl time.Duration) time.Time {
	if t.IsZero() {
		return from.Add(ttl)
	}
	return fromMS(toMS(t))
}

func marshalEnv(env map[string]string) (string, error) {
	if env == nil {
		env = map[string]string{}
	}
	data, err := json.Marshal(env)
	if err != nil {
		return "", fmt.Errorf("marshal env: %w", err)
	}
	return string(data), nil
}

func unmarshalEnv(s string) (map[string]string, error) {
	env := map[string]string{}
	if err := json.Unmarshal([]byte(s), &env); err != nil {
		return nil, fmt.Errorf("unmarshal env: %w", err)
	}
	return env, nil
}
