package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

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

// SeedEvents stores evs in their projects' logs as appendEvent stores
// them, hundreds to a statement, and sets their ids: for the test of the
// log's bound, which fills a log up to plane.MaxProjectEvents before the
// appends that cut it back, and would spend seconds on 10,000 appends'
// round trips to Postgres otherwise. What appendEvent does besides is left
// out: the project of those events has no webhook, and cuts the log back
// only at an id divisible by pruneEvery, a cut that removes nothing until
// a log holds more than plane.MaxProjectEvents events.
func (db *DB) SeedEvents(ctx context.Context, evs []*plane.ProjectEvent) error {
	const perStatement = 500 // 2,500 parameters: within sqlite's and Postgres's limits
	return db.inTx(ctx, func(tx *conn) error {
		for rest := evs; len(rest) > 0; {
			batch := rest[:min(len(rest), perStatement)]
			rest = rest[len(batch):]
			var q strings.Builder
			q.WriteString("INSERT INTO project_events (project_id, type, backend_id, data, created_at) VALUES ")
			args := make([]any, 0, 5*len(batch))
			for i, ev := range batch {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(?, ?, ?, ?, ?)")
				ev.Time = orNow(ev.Time)
				args = append(args, ev.ProjectID, ev.Type, ev.BackendID, string(ev.Data), toMS(ev.Time))
			}
			q.WriteString(" RETURNING id")
			rows, err := tx.QueryContext(ctx, q.String(), args...)
			if err != nil {
				return fmt.Errorf("seed events: %w", err)
			}
			var ids []int64
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return fmt.Errorf("seed events: %w", err)
				}
				ids = append(ids, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("seed events: %w", err)
			}
			if len(ids) != len(batch) {
				return fmt.Errorf("seed events: %d ids for %d events", len(ids), len(batch))
			}
			// One statement takes its rows' ids in the order of its
			// values; RETURNING need not list them in that order.
			slices.Sort(ids)
			for i, ev := range batch {
				ev.ID = ids[i]
			}
		}
		return nil
	})
}
