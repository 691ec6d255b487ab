package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"plane"
)

// Who is connected to a backend: a row of backend_connections per user
// the backend's drone reported (plane.ConnectionChange), with joined_at
// while connected. A leave keeps the row, joined_at NULL, with its time in
// changed_at: the drone's outbox delivers at least once and a redelivery
// may come after a later change, so every change is compared with the
// latest one known for its user, and only a newer one applies.

// applyConnection records, in ApplyBackendEvent's transaction, that
// e.Connection.User joined or left b, as stored, at e.Time, and appends
// the join or the leave to the project's log. A change no newer than the
// latest known for the user (a redelivery), a join of a connected user, a
// leave of one not connected, or a change to a backend past ready (its
// connections are gone: clearConnections) is not applied.
func applyConnection(ctx context.Context, tx *conn, b *plane.Backend, e plane.BackendEvent) (*plane.Backend, bool, error) {
	c := e.Connection
	at := orNow(e.Time)
	if b.Status.Rank() > plane.StatusReady.Rank() {
		return b, false, nil
	}
	var joined sql.NullInt64
	var changed int64
	err := tx.QueryRowContext(ctx, `SELECT joined_at, changed_at FROM backend_connections WHERE backend_id = ? AND "user" = ?`,
		b.ID, c.User).Scan(&joined, &changed)
	known := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, false, fmt.Errorf("apply connection: %w", err)
	}
	connected := known && joined.Valid
	// At the same millisecond, a change of state is newer (a leave right
	// after the join), the same state a redelivery.
	if known && (toMS(at) < changed || toMS(at) == changed && connected == c.Joined) {
		return b, false, nil
	}
	var joinedAt sql.NullInt64
	if c.Joined {
		joinedAt = sql.NullInt64{Int64: toMS(at), Valid: true}
		if connected {
			joinedAt.Int64 = joined.Int64 // still there since then: no leave came between
		}
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO backend_connections (backend_id, "user", joined_at, changed_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (backend_id, "user") DO UPDATE SET joined_at = excluded.joined_at, changed_at = excluded.changed_at`,
		b.ID, c.User, joinedAt, toMS(at)); err != nil {
		return nil, false, fmt.Errorf("apply connection: %w", err)
	}
	if connected == c.Joined {
		// A join of a connected user (a leave between went missing) or a
		// leave of one never seen to join: the row now holds the time,
		// but nothing changed to announce.
		return b, false, nil
	}
	var users int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM backend_connections WHERE backend_id = ? AND joined_at IS NOT NULL`,
		b.ID).Scan(&users); err != nil {
		return nil, false, fmt.Errorf("apply connection: %w", err)
	}
	if err := appendEvent(ctx, tx, plane.NewConnectionEvent(b.ProjectID, b.ID, c.User, c.Joined, users, at)); err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// clearConnections ends, in tx, every connection of b, which is moving
// past ready at at (terminating or terminated): each connected user's
// leave is appended to the log, the latest to join first, and the rows
// are deleted, since no change of b's connections applies any more.
func clearConnections(ctx context.Context, tx *conn, b *plane.Backend, at time.Time) error {
	users, err := queryAll(ctx, tx, func(s scanner) (string, error) {
		var u string
		return u, s.Scan(&u)
	}, `SELECT "user" FROM backend_connections WHERE backend_id = ? AND joined_at IS NOT NULL ORDER BY joined_at DESC, "user" DESC`, b.ID)
	if err != nil {
		return fmt.Errorf("clear connections: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM backend_connections WHERE backend_id = ?`, b.ID); err != nil {
		return fmt.Errorf("clear connections: %w", err)
	}
	for i, u := range users {
		if err := appendEvent(ctx, tx, plane.NewConnectionEvent(b.ProjectID, b.ID, u, false, len(users)-1-i, at)); err != nil {
			return err
		}
	}
	return nil
}

// FindConnections returns the users connected to a backend now, in the
// order they joined.
func (db *DB) FindConnections(ctx context.Context, backendID string) ([]plane.Connection, error) {
	conns, err := queryAll(ctx, db.read, func(s scanner) (plane.Connection, error) {
		var c plane.Connection
		var since int64
		err := s.Scan(&c.User, &since)
		c.Since = fromMS(since)
		return c, err
	}, `SELECT "user", joined_at FROM backend_connections WHERE backend_id = ? AND joined_at IS NOT NULL ORDER BY joined_at, "user"`, backendID)
	if err != nil {
		return nil, fmt.Errorf("find connections of %q: %w", backendID, err)
	}
	return conns, nil
}
