package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"plane"
)

// Backend is the drone's record of one backend it runs or ran.
type Backend struct {
	Spec        plane.SpawnSpec
	ContainerID string
	Address     string // host:port the proxy forwards to
	Status      plane.BackendStatus
	Reason      plane.TerminationReason
	ExitCode    *int
	Error       string
	// Times are kept to the millisecond. CreatedAt and UpdatedAt are set by
	// PutBackend when zero; ReadyAt stays zero until the caller sets it.
	CreatedAt, ReadyAt, UpdatedAt time.Time
}

const backendColumns = `spec, container_id, address, status, reason, exit_code, error, created_at, ready_at, updated_at`

// PutBackend inserts b or replaces the backend with its ID. It fills in
// b.CreatedAt and b.UpdatedAt when they are zero.
func (s *Store) PutBackend(ctx context.Context, b *Backend) error {
	return s.inTx(ctx, func(tx *sql.Tx) error { return s.putBackend(ctx, tx, b) })
}

// PutBackendAndEnqueue stores b and queues a message in one transaction, so
// that a status change and the event announcing it are written together or
// not at all. It returns the message's sequence number.
func (s *Store) PutBackendAndEnqueue(ctx context.Context, b *Backend, subject, msgID string, data []byte) (int64, error) {
	var seq int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.putBackend(ctx, tx, b); err != nil {
			return err
		}
		var err error
		seq, err = s.enqueue(ctx, tx, subject, msgID, data)
		return err
	})
	return seq, err
}

func (s *Store) putBackend(ctx context.Context, tx *sql.Tx, b *Backend) error {
	if b.Spec.BackendID == "" {
		return plane.FieldErrorf("backend_id", "is required")
	}
	if !b.Status.Valid() {
		return plane.FieldErrorf("status", "unknown status %q", b.Status)
	}
	if b.Reason != "" && !b.Reason.Valid() {
		return plane.FieldErrorf("reason", "unknown termination reason %q", b.Reason)
	}
	spec, err := json.Marshal(b.Spec)
	if err != nil {
		return fmt.Errorf("put backend %s: encode spec: %w", b.Spec.BackendID, err)
	}
	now := s.now()
	if b.CreatedAt.IsZero() {
		b.CreatedAt = now
	}
	if b.UpdatedAt.IsZero() {
		b.UpdatedAt = now
	}
	var exitCode sql.NullInt64
	if b.ExitCode != nil {
		exitCode = sql.NullInt64{Int64: int64(*b.ExitCode), Valid: true}
	}
	_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO backends (id, `+backendColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		b.Spec.BackendID, spec, b.ContainerID, b.Address, string(b.Status), string(b.Reason),
		exitCode, b.Error, toMS(b.CreatedAt), toNullMS(b.ReadyAt), toMS(b.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put backend %s: %w", b.Spec.BackendID, err)
	}
	return nil
}

// FindBackend returns the backend with ID id, or a plane.ENOTFOUND error.
func (s *Store) FindBackend(ctx context.Context, id string) (*Backend, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+backendColumns+` FROM backends WHERE id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("find backend %s: %w", id, err)
	}
	bs, err := scanBackends(rows)
	if err != nil {
		return nil, fmt.Errorf("find backend %s: %w", id, err)
	}
	if len(bs) == 0 {
		return nil, plane.Errorf(plane.ENOTFOUND, "backend %q not found on this drone", id)
	}
	return bs[0], nil
}

// BackendStatus is a backend's recorded status, for the proxy's answer to
// a request for a backend it does not route (starting up, or terminated);
// found is false for one this drone never had, or when the store cannot
// say (the proxy then answers 404).
func (s *Store) BackendStatus(id string) (status plane.BackendStatus, found bool) {
	b, err := s.FindBackend(context.Background(), id)
	if err != nil {
		return "", false
	}
	return b.Status, true
}

// LiveBackends returns every backend not yet terminated, oldest first.
func (s *Store) LiveBackends(ctx context.Context) ([]*Backend, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+backendColumns+` FROM backends
		WHERE status != ? ORDER BY created_at, id`, string(plane.StatusTerminated))
	if err != nil {
		return nil, fmt.Errorf("live backends: %w", err)
	}
	bs, err := scanBackends(rows)
	if err != nil {
		return nil, fmt.Errorf("live backends: %w", err)
	}
	return bs, nil
}

// DeleteTerminatedBefore forgets terminated backends last updated before t
// and returns how many it deleted.
func (s *Store) DeleteTerminatedBefore(ctx context.Context, t time.Time) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM backends WHERE status = ? AND updated_at < ?`,
			string(plane.StatusTerminated), toMS(t))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete terminated backends: %w", err)
	}
	return int(n), nil
}

func scanBackends(rows *sql.Rows) ([]*Backend, error) {
	defer rows.Close()
	var out []*Backend
	for rows.Next() {
		var (
			b                    Backend
			spec                 []byte
			status, reason       string
			exitCode, readyAt    sql.NullInt64
			createdAt, updatedAt int64
		)
		if err := rows.Scan(&spec, &b.ContainerID, &b.Address, &status, &reason, &exitCode, &b.Error, &createdAt, &readyAt, &updatedAt); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(spec, &b.Spec); err != nil {
			return nil, errors.New("corrupt spawn spec: " + err.Error())
		}
		b.Status = plane.BackendStatus(status)
		b.Reason = plane.TerminationReason(reason)
		if exitCode.Valid {
			c := int(exitCode.Int64)
			b.ExitCode = &c
		}
		b.CreatedAt, b.ReadyAt, b.UpdatedAt = fromMS(createdAt), fromNullMS(readyAt), fromMS(updatedAt)
		out = append(out, &b)
	}
	return out, rows.Err()
}
