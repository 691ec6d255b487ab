package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"plane"
)

var _ plane.ACMEStateService = (*DB)(nil)

// UpdateACMEState runs fn on the stored ACME state in a write transaction
// (serializable on Postgres, retried on a conflict, so fn may run again)
// and stores what fn leaves. One JSON row: the state is small, and read and
// written whole.
func (db *DB) UpdateACMEState(ctx context.Context, fn func(*plane.ACMEState) error) error {
	return db.inTx(ctx, func(tx *conn) error {
		st, err := findACMEState(ctx, tx)
		if err != nil {
			return err
		}
		if err := fn(st); err != nil {
			return err
		}
		data, err := json.Marshal(st)
		if err != nil {
			return fmt.Errorf("encode ACME state: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO acme_state (one, data) VALUES (1, ?)
			ON CONFLICT (one) DO UPDATE SET data = excluded.data`, string(data)); err != nil {
			return fmt.Errorf("store ACME state: %w", err)
		}
		return nil
	})
}

// FindACMEState returns the stored ACME state (empty before the first
// order).
func (db *DB) FindACMEState(ctx context.Context) (*plane.ACMEState, error) {
	return findACMEState(ctx, db.read)
}

func findACMEState(ctx context.Context, q queryer) (*plane.ACMEState, error) {
	var data string
	err := q.QueryRowContext(ctx, `SELECT data FROM acme_state WHERE one = 1`).Scan(&data)
	st := &plane.ACMEState{}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return st, nil
	case err != nil:
		return nil, fmt.Errorf("find ACME state: %w", err)
	}
	if err := json.Unmarshal([]byte(data), st); err != nil {
		return nil, fmt.Errorf("decode ACME state: %w", err)
	}
	return st, nil
}
