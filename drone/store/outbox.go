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

// Pending returns up to limit queued messages, oldest first; all of them
// when limit <= 0.
func (s *Store) Pending(ctx context.Context, limit int) ([]OutboxMsg, error) {
	if limit <= 0 {
		limit = -1 // sqlite: no limit
	}
	rows, err := s.read.QueryContext(ctx, `SELECT seq, subject, msg_id, data, created_at FROM outbox ORDER BY seq LIMIT ?`, limit)
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
func (s *Store) Ack(ctx context.Context, seq int64) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE seq = ?`, seq)
		return err
	})
	if err != nil {
		return fmt.Errorf("ack message %d: %w", seq, err)
	}
	return nil
}
