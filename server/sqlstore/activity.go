package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"plane"
)

var _ plane.ActivityService = (*DB)(nil)

// Limits on the number of entries FindActivity returns.
const (
	DefaultActivityLimit = 50
	MaxActivityLimit     = 500
)

// RecordActivity stores a and sets its ID, and its Time when zero.
func (db *DB) RecordActivity(ctx context.Context, a *plane.Activity) error {
	if a.Action == "" {
		return plane.FieldErrorf("action", "is required")
	}
	if a.Actor.Name == "" {
		return plane.FieldErrorf("actor", "needs a name")
	}
	at := orNow(a.Time)
	// A token's entries have no user: NULL rather than 0, which no user is.
	userID := sql.NullInt64{Int64: a.Actor.UserID, Valid: a.Actor.UserID != 0}
	var id int64
	err := db.write.QueryRowContext(ctx, `
		INSERT INTO activity (project_id, time_ms, actor_user_id, actor_token_id, actor_name, action, target, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		a.ProjectID, toMS(at), userID, a.Actor.TokenID, a.Actor.Name, a.Action, a.Target, a.Detail).Scan(&id)
	switch {
	case db.isForeignKey(err):
		return plane.Errorf(plane.ENOTFOUND, "project %d not found", a.ProjectID)
	case err != nil:
		return fmt.Errorf("record activity %s: %w", a.Action, err)
	}
	a.ID, a.Time = id, at
	return nil
}

// FindActivity returns the project's entries, newest first; entries of one
// millisecond come in reverse order of recording. limit defaults to
// DefaultActivityLimit and is capped at MaxActivityLimit.
func (db *DB) FindActivity(ctx context.Context, projectID int64, limit int) ([]*plane.Activity, error) {
	if limit <= 0 {
		limit = DefaultActivityLimit
	}
	limit = min(limit, MaxActivityLimit)
	entries, err := queryAll(ctx, db.read, scanActivity, `
		SELECT id, project_id, time_ms, actor_user_id, actor_token_id, actor_name, action, target, detail
		FROM activity WHERE project_id = ?
		ORDER BY time_ms DESC, id DESC LIMIT ?`, projectID, limit)
	if err != nil {
		return nil, fmt.Errorf("find activity of project %d: %w", projectID, err)
	}
	return entries, nil
}

func scanActivity(s scanner) (*plane.Activity, error) {
	var a plane.Activity
	var at int64
	var userID sql.NullInt64
	if err := s.Scan(&a.ID, &a.ProjectID, &at, &userID, &a.Actor.TokenID, &a.Actor.Name,
		&a.Action, &a.Target, &a.Detail); err != nil {
		return nil, err
	}
	a.Time, a.Actor.UserID = fromMS(at), userID.Int64
	return &a, nil
}
