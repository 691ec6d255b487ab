package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"plane"
)

var _ plane.ProjectEventService = (*DB)(nil)

// Limits on the number of events FindProjectEvents returns.
const (
	DefaultEventLimit = 100
	MaxEventLimit     = 1000
)

// pruneEvery: the append of one event in pruneEvery (by id) cuts its
// project's log back to plane.MaxProjectEvents. Cutting at every append
// would walk 10,000 index entries each time; this way a project holds a
// few dozen events more than that between cuts, and the cost is spread.
const pruneEvery = 64

// eventLockSpace is the first key of the Postgres advisory locks that order
// a project's appends (appendEvent); the second is the project's id.
const eventLockSpace = 0x504c4e45 // "PLNE"

// appendEvent adds ev to its project's log in tx, the transaction of the
// change it announces, with a delivery for each enabled webhook of the
// project that wants its type, and sets ev.ID.
func appendEvent(ctx context.Context, tx *conn, ev *plane.ProjectEvent) error {
	if err := lockProjectLog(ctx, tx, ev.ProjectID); err != nil {
		return err
	}
	at := orNow(ev.Time)
	if err := tx.QueryRowContext(ctx, `
		INSERT INTO project_events (project_id, type, backend_id, data, created_at)
		VALUES (?, ?, ?, ?, ?) RETURNING id`,
		ev.ProjectID, ev.Type, ev.BackendID, string(ev.Data), toMS(at)).Scan(&ev.ID); err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	ev.Time = at
	payload, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("append event: encode: %w", err)
	}
	created := now()
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, payload, status, created_at, since, next_attempt_at)
		SELECT id, CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT), 'pending', CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT)
		FROM webhooks
		WHERE project_id = ? AND disabled_at IS NULL AND (events = '' OR events LIKE ? ESCAPE '\')`,
		ev.ID, ev.Type, string(payload), toMS(created), toMS(created), toMS(created),
		ev.ProjectID, "%"+likeEscape(","+string(ev.Type)+",")+"%"); err != nil {
		return fmt.Errorf("append event: webhook deliveries: %w", err)
	}
	if ev.ID%pruneEvery == 0 {
		if _, err := tx.ExecContext(ctx, `
			DELETE FROM project_events WHERE project_id = ? AND id <= (
				SELECT id FROM project_events WHERE project_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`,
			ev.ProjectID, ev.ProjectID, plane.MaxProjectEvents); err != nil {
			return fmt.Errorf("append event: prune: %w", err)
		}
	}
	return nil
}

// lockProjectLog takes, in tx, the lock of a project's event log, held
// until tx ends. Transactions that append to the log take it before their
// first write, and take it again (a no-op) when they append.
//
// Readers ask for the events after the last id they have, so a project's
// events must become visible in the order of their ids. sqlite has one
// writer at a time: nothing to do. Postgres hands out ids from a sequence
// as inserts run, so two transactions could commit out of id order, and a
// reader that saw the later one would never see the earlier: with the
// lock, the next append's id is only taken once this one is visible. It is
// an advisory lock, which waits, where a row lock would fail a
// serializable transaction and run it again. Taken before the first write,
// it also keeps two writers of one project from locking the same rows at
// once, which Postgres 15 can fail with an internal error ("new multixact
// has more than one updating member") when one of them inserts a row
// referencing a backend the other updates.
func lockProjectLog(ctx context.Context, tx *conn, projectID int64) error {
	if tx.d.Name != "postgres" {
		return nil
	}
	// The key is 32 bits: two projects whose ids agree in those only
	// wait for each other.
	key := int32(projectID)
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(CAST(? AS INTEGER), CAST(? AS INTEGER))`,
		eventLockSpace, key); err != nil {
		return fmt.Errorf("lock the event log of project %d: %w", projectID, err)
	}
	return nil
}

// likeEscape escapes the wildcards of LIKE (the "_" of user_joined) with \.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// FindProjectEvents returns the project's events with an id above afterID,
// oldest first: at most limit (default DefaultEventLimit, capped at
// MaxEventLimit). What was cut from the log (plane.MaxProjectEvents) is
// not returned: a reader that was away longer gets what is kept.
func (db *DB) FindProjectEvents(ctx context.Context, projectID, afterID int64, limit int) ([]*plane.ProjectEvent, error) {
	evs, err := queryAll(ctx, db.read, scanEvent, `
		SELECT id, project_id, type, backend_id, data, created_at FROM project_events
		WHERE project_id = ? AND id > ? ORDER BY id LIMIT ?`, projectID, afterID, eventLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("find project events: %w", err)
	}
	return evs, nil
}

// FindBackendEvents is FindProjectEvents for one backend's events.
func (db *DB) FindBackendEvents(ctx context.Context, backendID string, afterID int64, limit int) ([]*plane.ProjectEvent, error) {
	evs, err := queryAll(ctx, db.read, scanEvent, `
		SELECT id, project_id, type, backend_id, data, created_at FROM project_events
		WHERE backend_id = ? AND id > ? ORDER BY id LIMIT ?`, backendID, afterID, eventLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("find backend events: %w", err)
	}
	return evs, nil
}

func eventLimit(limit int) int {
	if limit <= 0 {
		return DefaultEventLimit
	}
	return min(limit, MaxEventLimit)
}

func scanEvent(s scanner) (*plane.ProjectEvent, error) {
	var ev plane.ProjectEvent
	var data string
	var at int64
	if err := s.Scan(&ev.ID, &ev.ProjectID, &ev.Type, &ev.BackendID, &data, &at); err != nil {
		return nil, err
	}
	ev.Data, ev.Time = json.RawMessage(data), fromMS(at)
	return &ev, nil
}
