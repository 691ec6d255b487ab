// Package store keeps a drone's local state in sqlite: the backends it runs
// and the outbox of status messages not yet acknowledged by JetStream. It is
// what lets a drone restart or upgrade without losing track of its backends
// or of the events it still owes the controller.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// SchemaVersion is the version of the schema below, kept in sqlite's
// user_version. A drone refuses a file written by a newer drone rather than
// guess at its meaning.
const SchemaVersion = 2

// busyTimeout is how long a connection waits for a lock held by another
// connection (the reader pool, or another process opening the same file).
const busyTimeout = 5 * time.Second

// schema creates version 1; upgrades take it to SchemaVersion. Times are
// Unix milliseconds.
const schema = `
CREATE TABLE backends (
	id           TEXT PRIMARY KEY,
	spec         TEXT NOT NULL,             -- JSON plane.SpawnSpec
	container_id TEXT NOT NULL DEFAULT '',
	address      TEXT NOT NULL DEFAULT '',
	status       TEXT NOT NULL,
	reason       TEXT NOT NULL DEFAULT '',
	exit_code    INTEGER,
	error        TEXT NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	ready_at     INTEGER,
	updated_at   INTEGER NOT NULL
);
CREATE INDEX backends_status ON backends (status, updated_at);

-- AUTOINCREMENT: a sequence number is never reused once acknowledged and
-- deleted, so that seq order stays publication order across restarts.
CREATE TABLE outbox (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	subject    TEXT NOT NULL,
	msg_id     TEXT NOT NULL,
	data       BLOB NOT NULL,
	created_at INTEGER NOT NULL
);
`

// upgrades[v] takes the schema from version v+1 to v+2.
var upgrades = []string{
	// 2: the drone's own settings that must outlive a restart, such as
	// the drain flag an admin set.
	`CREATE TABLE settings (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);`,
}

// Store is a drone's sqlite database. Writes go through one connection, which
// serialises them without SQLITE_BUSY; reads use a pool, which WAL lets run
// alongside the writer.
type Store struct {
	write *sql.DB
	read  *sql.DB
	now   func() time.Time
}

// Open opens the database at path, creating it and its schema when absent.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open drone store: no path given")
	}
	// The store holds backends' environments: readable by its owner only.
	// sqlite creates its -wal and -shm files with the main file's mode.
	if err := createPrivate(path); err != nil {
		return nil, fmt.Errorf("open drone store %s: %w", path, err)
	}
	write, err := sql.Open("sqlite3", dsn(path, url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"NORMAL"},
		"_busy_timeout": {fmt.Sprint(busyTimeout.Milliseconds())},
		"_txlock":       {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("open drone store %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetConnMaxIdleTime(0)
	s := &Store{write: write, now: time.Now}
	if err := s.migrate(context.Background()); err != nil {
		write.Close()
		return nil, fmt.Errorf("open drone store %s: %w", path, err)
	}

	read, err := sql.Open("sqlite3", dsn(path, url.Values{
		"_synchronous":  {"NORMAL"},
		"_busy_timeout": {fmt.Sprint(busyTimeout.Milliseconds())},
		"_query_only":   {"1"},
	}))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open drone store %s: %w", path, err)
	}
	read.SetMaxOpenConns(max(2, runtime.NumCPU()))
	s.read = read
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// dsn builds a sqlite URI; escaping the path keeps '?', '#' and '%' in file
// names from being read as URI syntax.
func dsn(path string, params url.Values) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + params.Encode()
}

// migrate creates the schema of a new file and refuses one it cannot read.
// It runs in an immediate transaction so that two processes opening a new
// file at once do not both create the schema.
func (s *Store) migrate(ctx context.Context) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var version int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		switch {
		case version == SchemaVersion:
			return nil
		case version > SchemaVersion:
			return fmt.Errorf("schema version %d is newer than this drone understands (%d): run a newer drone or move the file away", version, SchemaVersion)
		case version < 0:
			return fmt.Errorf("unknown schema version %d", version)
		case version == 0:
			if _, err := tx.ExecContext(ctx, schema); err != nil {
				return fmt.Errorf("create schema: %w", err)
			}
			version = 1
		}
		for v := version; v < SchemaVersion; v++ {
			if _, err := tx.ExecContext(ctx, upgrades[v-1]); err != nil {
				return fmt.Errorf("upgrade schema to version %d: %w", v+1, err)
			}
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion)); err != nil {
			return fmt.Errorf("set schema version: %w", err)
		}
		return nil
	})
}

// inTx runs fn in a write transaction, committed when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func toMS(t time.Time) int64 { return t.UnixMilli() }

func fromMS(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// toNullMS stores the zero time as NULL: time.Time{}.UnixMilli() is a huge
// negative number, not a useful "unset".
func toNullMS(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromNullMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMS(v.Int64)
}

// drainingKey is the settings row of the drain flag.
const drainingKey = "draining"

// SetDraining records the drain flag, so that a restarted drone keeps
// refusing new backends until an admin undrains it.
func (s *Store) SetDraining(ctx context.Context, draining bool) error {
	_, err := s.write.ExecContext(ctx,
		`INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
		drainingKey, fmt.Sprint(draining))
	if err != nil {
		return fmt.Errorf("store drain flag: %w", err)
	}
	return nil
}

// Draining reads the drain flag; a drone never drained is not draining.
func (s *Store) Draining(ctx context.Context) (bool, error) {
	var v string
	err := s.read.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, drainingKey).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read drain flag: %w", err)
	}
	return v == "true", nil
}

// createPrivate creates the file at path with mode 0600, or narrows an
// existing one to it.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	return os.Chmod(path, 0o600)
}
