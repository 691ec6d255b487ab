package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"plane"
)

// OutboxMsg is a message waiting to be published to JetStream. MsgID is the
// Nats-Msg-Id header, which lets the stream drop the duplicate when a drone
// publishes again a message whose acknowledgement it never saw.
type OutboxMsg struct {
	Seq       int64
	Subject   string
	MsgID     string
	Data      []byte
	CreatedAt time.Time
}

// Enqueue queues a message and returns its sequence number, which grows with
// every message.
func (s *Store) Enqueue(ctx context.Context, subject, msgID string, data []byte) (int64, error) {
	var seq int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		seq, err = s.enqueue(ctx, tx, subject, msgID, data)
		return err
	})
	return seq, err
}

func (s *Store) enqueue(ctx context.Context, tx *sql.Tx, subject, msgID string, data []byte) (int64, error) {
	if subject == "" {
		return 0, plane.FieldErrorf("subject", "is required")
	}
	if data == nil {
		data = []byte{} // the column is NOT NULL; an empty message is still a message
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO outbox (subject, msg_id, data, created_at) VALUES (?, ?, ?, ?)`,
		subject, msgID, data, toMS(s.now()))
	if err != nil {
		return 0, fmt.Errorf("enqueue %s: %w", subject, err)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("enqueue %s: %w", subject, err)
	}
	return seq, nil
}

// logSubjects matches the subjects of log lines (plane.SubjectBackendLogs),
// which queue behind every status change.
const logSubjects = "plane.backend.%.logs"

// Pending returns up to limit queued messages, all status changes before
// any log line and each kind oldest first; all of them when limit <= 0.
// The order within a subject is the order of Enqueue.
func (s *Store) Pending(ctx context.Context, limit int) ([]OutboxMsg, error) {
	if limit <= 0 {
		limit = -1 // sqlite: no limit
	}
	rows, err := s.read.QueryContext(ctx, `
		SELECT seq, subject, msg_id, data, created_at FROM outbox
		ORDER BY subject LIKE ?, seq LIMIT ?`, logSubjects, limit)
	if err != nil {
		return nil, fmt.Errorf("pending messages: %w", err)
	}
	defer rows.Close()
	var out []OutboxMsg
	for rows.Next() {
		var (
			m         OutboxMsg
			createdAt int64
		)
		if err := rows.Scan(&m.Seq, &m.Subject, &m.MsgID, &m.Data, &createdAt); err != nil {
			return nil, fmt.Errorf("pending messages: %w", err)
		}
		m.CreatedAt = fromMS(createdAt)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pending messages: %w", err)
	}
	return out, nil
}

// Ack removes a message the stream has acknowledged. Acknowledging a message
// twice, or one that does not exist, is not an error: a publisher that
// crashed between publish and Ack may ack again after a restart.
func (s *Store) Ack(ctx context.Context, seqs ...int64) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, seq := range seqs {
			if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE seq = ?`, seq); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ack messages %v: %w", seqs, err)
	}
	return nil
}

// TrimLogs drops the oldest queued log lines past the newest keep, so that
// a long outage with chatty backends does not fill the disk (the logs
// stream keeps only the newest lines of each backend anyway). Status
// changes are never dropped. It returns how many lines it dropped.
func (s *Store) TrimLogs(ctx context.Context, keep int) (int, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `
			DELETE FROM outbox WHERE subject LIKE ? AND seq NOT IN (
				SELECT seq FROM outbox WHERE subject LIKE ? ORDER BY seq DESC LIMIT ?)`,
			logSubjects, logSubjects, keep)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("trim queued log lines: %w", err)
	}
	return int(n), nil
}
