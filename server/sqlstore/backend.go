package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"plane"
)

var _ plane.BackendService = (*DB)(nil)

// Limits on the number of backends FindBackends returns.
const (
	DefaultBackendLimit = 100
	MaxBackendLimit     = 1000
)

const backendColumns = `id, project_id, image, image_ref, key, drone_id, status,
	termination_reason, exit_code, error, address, env, "user",
	max_idle_seconds, lifetime_seconds, cpu_millis, memory_mb, suspend_seconds,
	suspended_at, resumed_at, keep_alive_until, keep_alive_by, created_at, updated_at`

// FindBackendByID returns the backend with id and its status history.
func (db *DB) FindBackendByID(ctx context.Context, id string) (*plane.Backend, error) {
	return findBackendByID(ctx, db.read, id)
}

// FindBackends returns the backends that match f, newest first, with their
// status histories. f.Limit defaults to DefaultBackendLimit and is capped at
// MaxBackendLimit.
func (db *DB) FindBackends(ctx context.Context, f plane.BackendFilter) ([]*plane.Backend, error) {
	var backends []*plane.Backend
	// One read transaction, so that backends and histories agree.
	err := db.inReadTx(ctx, func(tx *conn) error {
		var err error
		backends, err = findBackends(ctx, tx, f)
		return err
	})
	return backends, err
}

// CreateBackend stores b in StatusScheduled, with the first entry of its
// history at b.CreatedAt (now when zero), and sets b's ID when empty, its
// status and timestamps. When b has a key held by a live backend of the
// project, that backend is returned instead, with created == false.
func (db *DB) CreateBackend(ctx context.Context, b *plane.Backend) (*plane.Backend, bool, error) {
	id := b.ID
	if id == "" {
		id = plane.NewBackendID()
	}
	env, err := marshalEnv(b.Env)
	if err != nil {
		return nil, false, err
	}
	created := orNow(b.CreatedAt)
	var existing *plane.Backend
	err = db.inTx(ctx, func(tx *conn) error {
		existing = nil // afresh: the transaction may run again
		if err := lockProjectLog(ctx, tx, b.ProjectID); err != nil {
			return err
		}
		// Insert first and let the live-key index decide: a read before the
		// insert would race with other controllers writing the same store.
		// ON CONFLICT rather than a failed statement: Postgres's transaction
		// is over after an error, and the holder of the key is read in it.
		res, err := tx.ExecContext(ctx, `
			INSERT INTO backends (id, project_id, image, image_ref, key, drone_id, status,
				address, env, "user", max_idle_seconds, lifetime_seconds, cpu_millis, memory_mb,
				suspend_seconds, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT DO NOTHING`,
			id, b.ProjectID, b.Image, b.ImageRef, b.Key, b.DroneID, plane.StatusScheduled,
			b.Address, env, b.User, b.MaxIdleSeconds, b.LifetimeSeconds, b.CPUMillis, b.MemoryMB,
			b.SuspendSeconds, toMS(created), toMS(created))
		switch {
		case db.isForeignKey(err):
			return plane.Errorf(plane.ENOTFOUND, "project %d not found", b.ProjectID)
		case err != nil:
			return fmt.Errorf("create backend: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("create backend: %w", err)
		} else if n == 0 {
			// The ID or the key is taken.
			if b.Key != "" {
				live := true
				holders, err := findBackends(ctx, tx, plane.BackendFilter{ProjectID: &b.ProjectID, Key: &b.Key, Live: &live, Limit: 1})
				if err != nil {
					return err
				}
				if len(holders) == 1 {
					existing = holders[0]
					return nil
				}
			}
			return conflict("id", "backend %q already exists", id)
		}
		if err := insertStatus(ctx, tx, id, plane.StatusScheduled, created); err != nil {
			return fmt.Errorf("create backend: %w", err)
		}
		// Announced in the same transaction, so that no crash stores one
		// without the other.
		ev := plane.NewBackendStatusEvent(&plane.Backend{ID: id, ProjectID: b.ProjectID, Status: plane.StatusScheduled}, created)
		return appendEvent(ctx, tx, ev)
	})
	if err != nil {
		return nil, false, err
	}
	if existing != nil {
		return existing, false, nil
	}
	b.ID, b.Status, b.CreatedAt, b.UpdatedAt = id, plane.StatusScheduled, created, created
	b.StatusHistory = []plane.StatusChange{{Status: plane.StatusScheduled, Time: created}}
	b.TerminationReason, b.ExitCode, b.Error = "", nil, ""
	b.SuspendedAt, b.ResumedAt = nil, nil
	if b.Env == nil {
		b.Env = map[string]string{}
	}
	return b, true, nil
}

// SetKeepAlive records that by holds off the live backend id's idle stop
// until until, replacing an earlier keep-alive, and returns the backend.
func (db *DB) SetKeepAlive(ctx context.Context, id string, until time.Time, by string) (*plane.Backend, error) {
	var b *plane.Backend
	err := db.inTx(ctx, func(tx *conn) error {
		res, err := tx.ExecContext(ctx, `UPDATE backends SET keep_alive_until = ?, keep_alive_by = ? WHERE id = ? AND status <> ?`,
			toMS(until), by, id, plane.StatusTerminated)
		if err != nil {
			return fmt.Errorf("keep backend %s alive: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("keep backend %s alive: %w", id, err)
		} else if n == 0 {
			if _, err := findBackendByID(ctx, tx, id); err != nil {
				return err
			}
			return plane.Errorf(plane.ECONFLICT, "backend %s is terminated", id)
		}
		b, err = findBackendByID(ctx, tx, id)
		return err
	})
	return b, err
}

// ApplyBackendEvent moves a backend forward to e.Status and records the move
// in its history at e.Time. Backward and repeated moves do not move the
// backend and return it as stored, with applied == false; but a step the
// history lacks (a redelivered `loading` that arrives after `starting`) is
// recorded in it, in time order, so that the history stays complete. A
// step dated after the backend's latest one (a late `ready` after it was
// terminated) contradicts the history and is left out. An event that
// reports a suspension or a resume is applySuspension's; one that reports
// a connection, applyConnection's. Each move is appended to the project's
// event log in the same transaction (and, when it leaves ready, the leave
// of each user still connected).
func (db *DB) ApplyBackendEvent(ctx context.Context, e plane.BackendEvent) (*plane.Backend, bool, error) {
	if err := e.Validate(); err != nil {
		return nil, false, err
	}
	var b *plane.Backend
	var applied bool
	err := db.inTx(ctx, func(tx *conn) error {
		applied = false // afresh: the transaction may run again
		var err error
		if b, err = findBackendByID(ctx, tx, e.BackendID); err != nil {
			return err
		}
		if err := lockProjectLog(ctx, tx, b.ProjectID); err != nil {
			return err
		}
		if e.Suspended != nil {
			b, applied, err = applySuspension(ctx, tx, b, e)
			return err
		}
		if e.Connection != nil {
			b, applied, err = applyConnection(ctx, tx, b, e)
			return err
		}
		if !b.Status.CanMoveTo(e.Status) {
			if e.Status == b.Status {
				return nil
			}
			_, err := tx.ExecContext(ctx, `
				INSERT INTO backend_status_history (backend_id, status, time_ms)
				SELECT ?, ?, CAST(? AS BIGINT)
				WHERE CAST(? AS BIGINT) <= (SELECT MAX(time_ms) FROM backend_status_history WHERE backend_id = ?)
				ON CONFLICT DO NOTHING`,
				b.ID, e.Status, toMS(orNow(e.Time)), toMS(orNow(e.Time)), b.ID)
			if err != nil {
				return fmt.Errorf("apply backend event: %w", err)
			}
			b, err = findBackendByID(ctx, tx, e.BackendID)
			return err
		}
		next := *b
		next.Status = e.Status
		if e.DroneID != "" {
			next.DroneID = e.DroneID
		}
		if e.Address != "" {
			next.Address = e.Address
		}
		if e.Status == plane.StatusTerminated {
			next.TerminationReason, next.ExitCode, next.Error = e.Reason, e.ExitCode, e.Error
		}
		// updated_at is when the store last changed the row; the drone's
		// clock only dates the history entry.
		if _, err := tx.ExecContext(ctx, `
			UPDATE backends SET status = ?, drone_id = ?, address = ?,
				termination_reason = ?, exit_code = ?, error = ?, updated_at = ?
			WHERE id = ?`,
			next.Status, next.DroneID, next.Address,
			next.TerminationReason, toNullInt(next.ExitCode), next.Error, toMS(now()), b.ID); err != nil {
			return fmt.Errorf("apply backend event: %w", err)
		}
		if err := insertStatus(ctx, tx, b.ID, e.Status, orNow(e.Time)); err != nil {
			return fmt.Errorf("apply backend event: %w", err)
		}
		if e.Status.Rank() > plane.StatusReady.Rank() && b.Status.Rank() <= plane.StatusReady.Rank() {
			if err := clearConnections(ctx, tx, b, orNow(e.Time)); err != nil {
				return err
			}
		}
		// Read back rather than patch b, so that the history comes in the
		// order every reader sees it.
		if b, err = findBackendByID(ctx, tx, e.BackendID); err != nil {
			return err
		}
		if err := appendEvent(ctx, tx, plane.NewBackendStatusEvent(b, orNow(e.Time))); err != nil {
			return err
		}
		applied = true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return b, applied, nil
}

// applySuspension records, in ApplyBackendEvent's transaction, when b, as
// stored, was suspended (e.Suspended true) or resumed: at e.Time, leaving
// its status and history alone. A backend that is not ready, or a time no
// later than the one recorded (a redelivered event, or one that arrives
// after a later one), changes nothing: b is returned as it is, not applied.
// Suspensions and resumes are recorded apart, so that a resume that
// overtakes its suspension still ends up after it.
func applySuspension(ctx context.Context, tx *conn, b *plane.Backend, e plane.BackendEvent) (*plane.Backend, bool, error) {
	column, last := "resumed_at", b.ResumedAt
	if *e.Suspended {
		column, last = "suspended_at", b.SuspendedAt
	}
	at := fromMS(toMS(e.Time))
	if b.Status != plane.StatusReady || (last != nil && !at.After(*last)) {
		return b, false, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE backends SET `+column+` = ?, updated_at = ? WHERE id = ?`,
		toMS(at), toMS(now()), b.ID); err != nil {
		return nil, false, fmt.Errorf("apply backend event: %w", err)
	}
	b, err := findBackendByID(ctx, tx, b.ID)
	return b, err == nil, err
}

// CountLiveBackendsByDrone returns the number of live backends of each drone
// that has any.
func (db *DB) CountLiveBackendsByDrone(ctx context.Context) (map[string]int, error) {
	rows, err := db.read.QueryContext(ctx, `
		SELECT drone_id, COUNT(*) FROM backends
		WHERE status <> 'terminated' AND drone_id <> ''
		GROUP BY drone_id`)
	if err != nil {
		return nil, fmt.Errorf("count live backends: %w", err)
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var drone string
		var n int
		if err := rows.Scan(&drone, &n); err != nil {
			return nil, fmt.Errorf("count live backends: %w", err)
		}
		counts[drone] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count live backends: %w", err)
	}
	return counts, nil
}

// backendByIDQuery reads one backend with its status history in one
// statement (one snapshot without a transaction, one round trip to
// Postgres): a row per history entry, the backend's columns on each.
var backendByIDQuery = func() string {
	cols := strings.Split(backendColumns, ",")
	for i, c := range cols {
		cols[i] = "b." + strings.TrimSpace(c)
	}
	return `SELECT ` + strings.Join(cols, ", ") + `, h.status, h.time_ms
		FROM backends b LEFT JOIN backend_status_history h ON h.backend_id = b.id
		WHERE b.id = ?
		ORDER BY h.time_ms, h.rowid`
}()

func findBackendByID(ctx context.Context, q queryer, id string) (*plane.Backend, error) {
	rows, err := q.QueryContext(ctx, backendByIDQuery, id)
	if err != nil {
		return nil, fmt.Errorf("find backend %q: %w", id, err)
	}
	defer rows.Close()
	var b *plane.Backend
	for rows.Next() {
		var status sql.NullString
		var ms sql.NullInt64
		row, err := scanBackend(withExtra{rows, []any{&status, &ms}})
		if err != nil {
			return nil, fmt.Errorf("find backend %q: %w", id, err)
		}
		if b == nil {
			b = row
			b.StatusHistory = []plane.StatusChange{}
		}
		if status.Valid {
			b.StatusHistory = append(b.StatusHistory, plane.StatusChange{Status: plane.BackendStatus(status.String), Time: fromMS(ms.Int64)})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find backend %q: %w", id, err)
	}
	if b == nil {
		return nil, plane.Errorf(plane.ENOTFOUND, "backend %q not found", id)
	}
	return b, nil
}

// withExtra is a row whose Scan also fills extra, after the destinations
// it is given: the joined columns after a scan function's own.
type withExtra struct {
	s     scanner
	extra []any
}

func (w withExtra) Scan(dest ...any) error { return w.s.Scan(append(dest, w.extra...)...) }

func findBackends(ctx context.Context, q queryer, f plane.BackendFilter) ([]*plane.Backend, error) {
	var where []string
	var args []any
	if f.ProjectID != nil {
		where, args = append(where, "project_id = ?"), append(args, *f.ProjectID)
	}
	if f.ID != nil {
		where, args = append(where, "id = ?"), append(args, *f.ID)
	}
	if f.Key != nil {
		where, args = append(where, "key = ?"), append(args, *f.Key)
	}
	if f.DroneID != nil {
		where, args = append(where, "drone_id = ?"), append(args, *f.DroneID)
	}
	if f.Image != nil {
		where, args = append(where, "image = ?"), append(args, *f.Image)
	}
	if f.Live != nil {
		// Spelled like the partial indexes' condition so that sqlite uses them.
		if *f.Live {
			where = append(where, "status <> 'terminated'")
		} else {
			where = append(where, "status = 'terminated'")
		}
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultBackendLimit
	}
	limit = min(limit, MaxBackendLimit)

	query := `SELECT ` + backendColumns + ` FROM backends`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	// rowid breaks ties between backends created in the same millisecond.
	query += ` ORDER BY created_at DESC, rowid DESC LIMIT ?`
	backends, err := queryAll(ctx, q, scanBackend, query, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("find backends: %w", err)
	}
	if err := attachHistories(ctx, q, backends); err != nil {
		return nil, fmt.Errorf("find backends: %w", err)
	}
	return backends, nil
}

// attachHistories loads the status histories of backends in one query.
func attachHistories(ctx context.Context, q queryer, backends []*plane.Backend) error {
	if len(backends) == 0 {
		return nil
	}
	byID := make(map[string]*plane.Backend, len(backends))
	args := make([]any, len(backends))
	for i, b := range backends {
		byID[b.ID] = b
		args[i] = b.ID
		b.StatusHistory = []plane.StatusChange{}
	}
	// Ties in time (a drone reporting two steps in one millisecond) keep the
	// order of insertion, which is the lifecycle's.
	rows, err := q.QueryContext(ctx, `
		SELECT backend_id, status, time_ms FROM backend_status_history
		WHERE backend_id IN (?`+strings.Repeat(", ?", len(args)-1)+`)
		ORDER BY time_ms, rowid`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var c plane.StatusChange
		var ms int64
		if err := rows.Scan(&id, &c.Status, &ms); err != nil {
			return err
		}
		c.Time = fromMS(ms)
		b := byID[id]
		b.StatusHistory = append(b.StatusHistory, c)
	}
	return rows.Err()
}

func insertStatus(ctx context.Context, tx *conn, id string, status plane.BackendStatus, at time.Time) error {
	_, err := tx.ExecContext(ctx,
		`INSERT INTO backend_status_history (backend_id, status, time_ms) VALUES (?, ?, ?)`,
		id, status, toMS(at))
	return err
}

func scanBackend(s scanner) (*plane.Backend, error) {
	var b plane.Backend
	var exit sql.NullInt64
	var env string
	var suspended, resumed, keepAlive sql.NullInt64
	var created, updated int64
	if err := s.Scan(&b.ID, &b.ProjectID, &b.Image, &b.ImageRef, &b.Key, &b.DroneID, &b.Status,
		&b.TerminationReason, &exit, &b.Error, &b.Address, &env, &b.User,
		&b.MaxIdleSeconds, &b.LifetimeSeconds, &b.CPUMillis, &b.MemoryMB, &b.SuspendSeconds,
		&suspended, &resumed, &keepAlive, &b.KeepAliveBy, &created, &updated); err != nil {
		return nil, err
	}
	var err error
	if b.Env, err = unmarshalEnv(env); err != nil {
		return nil, err
	}
	if exit.Valid {
		code := int(exit.Int64)
		b.ExitCode = &code
	}
	b.SuspendedAt, b.ResumedAt = fromNullMS(suspended), fromNullMS(resumed)
	b.KeepAliveUntil = fromNullMS(keepAlive)
	b.CreatedAt, b.UpdatedAt = fromMS(created), fromMS(updated)
	return &b, nil
}

func toNullInt(v *int) sql.NullInt64 {
	if v == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: int64(*v), Valid: true}
}
