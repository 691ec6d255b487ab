// Package sqlstore is the controller's store in SQL: projects, images,
// backends and their status history, drones, API tokens, and the
// dashboard's users, teams, sessions, invites and activity log. One
// implementation serves two databases: sqlite (server/sqlite, the embedded
// default) and Postgres (server/postgres, for several controllers). Each of
// those opens its database, applies its migrations and hands this package a
// Dialect: what differs between them is small (placeholders, error codes,
// isolation), and everything else is written once here.
//
// The queries are written in the SQL both understand, with ? placeholders.
// Three rules keep them portable: the column "user" is always quoted (a
// keyword in Postgres); rowid, sqlite's insertion order, is a real column in
// Postgres's schema; untyped parameters in a SELECT list are CAST.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"plane"
)

// Dialect is what the store needs to know about its database.
type Dialect struct {
	// Name is the database's name, for messages.
	Name string
	// Numbered: placeholders are $1, $2… instead of ?.
	Numbered bool
	// IsUnique and IsForeignKey recognise the database's constraint
	// violations.
	IsUnique, IsForeignKey func(error) bool
	// WriteTx and ReadTx are the options of write and read transactions.
	WriteTx, ReadTx *sql.TxOptions
	// Retry reports whether a write transaction failed only because it ran
	// at the same time as another (Postgres's serialization failures), so
	// that running it again can succeed.
	Retry func(error) bool
	// AfterCopy, when set, runs last in Copy's write transaction on this
	// database, whose tables (named) now hold rows that kept their ids:
	// Postgres moves its identity sequences past them, or the next insert
	// would take an id that is taken. sqlite numbers from the largest id.
	AfterCopy func(ctx context.Context, tx *sql.Tx, tables []string) error
}

// maxTxRetrying bounds how long a write transaction is run again after
// serialization failures. While tables are small Postgres scans them whole,
// and serializable transactions on different rows then conflict too: a
// burst of spawns on a new cluster meets many of these, each gone once the
// other transaction ends.
const maxTxRetrying = 5 * time.Second

// DB is the controller's store. Safe for concurrent use.
type DB struct {
	writeDB, readDB *sql.DB
	write, read     *conn
	dialect         *Dialect
	close           func() error
}

// New returns a store on write, for writes, and read, for reads (they may be
// the same pool); close is called by Close.
func New(write, read *sql.DB, d Dialect, close func() error) *DB {
	return &DB{writeDB: write, readDB: read, write: &conn{write, &d}, read: &conn{read, &d}, dialect: &d, close: close}
}

// Close closes the store.
func (db *DB) Close() error { return db.close() }

// Dialect returns the name of the store's database.
func (db *DB) Dialect() string { return db.dialect.Name }

// conn runs the store's queries on a pool or in a transaction, rebound to
// the dialect's placeholders.
type conn struct {
	q queryer
	d *Dialect
}

func (c *conn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return c.q.ExecContext(ctx, c.d.rebind(query), args...)
}

func (c *conn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return c.q.QueryContext(ctx, c.d.rebind(query), args...)
}

func (c *conn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return c.q.QueryRowContext(ctx, c.d.rebind(query), args...)
}

// rebind turns the ? placeholders of query into $1, $2… for a numbered
// dialect. The store's queries hold no ? inside string literals or
// identifiers, which rebind does not look into: it skips quoted text.
func (d *Dialect) rebind(query string) string {
	if !d.Numbered || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// inTx runs fn in a write transaction, committed when fn returns nil. A
// transaction refused because it ran at the same time as another is run
// again, so fn must only set what it returns (it does: every fn here
// assigns its results afresh).
//
// sqlite runs one writer at a time. Postgres runs write transactions at
// serializable isolation (server/postgres): every read-then-write of this
// store (a status that only moves forward, the last owner of a team, a
// one-time invite, a project deleted only without live backends) was
// written for one writer at a time, and serializable gives the same result
// as some such order, or fails with a serialization error and is run here
// again. Row locks at each of those places would do too, at the price of a
// rule every new query must remember.
func (db *DB) inTx(ctx context.Context, fn func(tx *conn) error) error {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		err := db.tryTx(ctx, fn)
		if err == nil || db.dialect.Retry == nil || !db.dialect.Retry(err) || time.Since(start) > maxTxRetrying || ctx.Err() != nil {
			return err
		}
		// A growing pause with jitter lets the other transactions finish
		// rather than meeting them again: 1 ms, 2 ms, 4 ms… up to 250 ms.
		pause := min(time.Millisecond<<min(attempt, 8), 250*time.Millisecond)
		pause = pause/2 + rand.N(pause)
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return err
		}
	}
}

func (db *DB) tryTx(ctx context.Context, fn func(tx *conn) error) error {
	tx, err := db.writeDB.BeginTx(ctx, db.dialect.WriteTx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if err := fn(&conn{tx, db.dialect}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// inReadTx runs fn in a read transaction: its queries see one snapshot.
func (db *DB) inReadTx(ctx context.Context, fn func(tx *conn) error) error {
	tx, err := db.readDB.BeginTx(ctx, db.dialect.ReadTx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to keep
	return fn(&conn{tx, db.dialect})
}

func (db *DB) isUnique(err error) bool     { return err != nil && db.dialect.IsUnique(err) }
func (db *DB) isForeignKey(err error) bool { return err != nil && db.dialect.IsForeignKey(err) }

// queryer is what *sql.DB, *sql.Tx and conn have in common, so that finders
// run on the read pool or inside a write transaction.
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
