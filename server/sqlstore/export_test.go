package sqlstore

import (
	"context"

	"plane"
)

// PruneEvery is pruneEvery, for the tests of the log's bound.
const PruneEvery = pruneEvery

// AppendEvents appends evs to their projects' logs in one transaction, as
// the changes that announce them do: for the tests of the log's bound,
// which would take 10,000 transactions otherwise.
func (db *DB) AppendEvents(ctx context.Context, evs []*plane.ProjectEvent) error {
	return db.inTx(ctx, func(tx *conn) error {
		for _, ev := range evs {
			if err := appendEvent(ctx, tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
}
