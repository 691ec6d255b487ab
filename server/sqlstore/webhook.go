package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"plane"
)

var _ plane.WebhookService = (*DB)(nil)

// Limits on the number of deliveries FindWebhookDeliveries returns.
const (
	DefaultDeliveryLimit = 50
	MaxDeliveryLimit     = 500
)

const webhookColumns = `id, project_id, url, events, secret, created_at, failing_since, disabled_at, disabled_reason`

// CreateWebhook stores w, at most plane.MaxWebhooks per project, and sets
// its ID and CreatedAt.
func (db *DB) CreateWebhook(ctx context.Context, w *plane.Webhook) error {
	created := orNow(w.CreatedAt)
	var id int64
	err := db.inTx(ctx, func(tx *conn) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM webhooks WHERE project_id = ?`, w.ProjectID).Scan(&n); err != nil {
			return fmt.Errorf("create webhook: %w", err)
		}
		if n >= plane.MaxWebhooks {
			return plane.Errorf(plane.ECONFLICT, "the project has %d webhooks, the most it may have: delete one first", n)
		}
		err := tx.QueryRowContext(ctx, `
			INSERT INTO webhooks (project_id, url, events, secret, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id`,
			w.ProjectID, w.URL, joinEvents(w.Events), w.Secret, toMS(created)).Scan(&id)
		switch {
		case db.isForeignKey(err):
			return plane.Errorf(plane.ENOTFOUND, "project %d not found", w.ProjectID)
		case err != nil:
			return fmt.Errorf("create webhook: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.ID, w.CreatedAt = id, created
	w.FailingSince, w.DisabledAt, w.DisabledReason = nil, nil, ""
	return nil
}

// joinEvents stores a webhook's types as ",a,b," so that appendEvent finds
// the webhooks of a type with LIKE; none is the empty string (every type).
func joinEvents(ts []plane.ProjectEventType) string {
	if len(ts) == 0 {
		return ""
	}
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return "," + strings.Join(s, ",") + ","
}

func splitEvents(s string) []plane.ProjectEventType {
	ts := []plane.ProjectEventType{}
	for _, v := range strings.Split(strings.Trim(s, ","), ",") {
		if v != "" {
			ts = append(ts, plane.ProjectEventType(v))
		}
	}
	return ts
}

// FindWebhooks returns a project's webhooks, oldest first.
func (db *DB) FindWebhooks(ctx context.Context, projectID int64) ([]*plane.Webhook, error) {
	ws, err := queryAll(ctx, db.read, scanWebhook,
		`SELECT `+webhookColumns+` FROM webhooks WHERE project_id = ? ORDER BY id`, projectID)
	if err != nil {
		return nil, fmt.Errorf("find webhooks: %w", err)
	}
	return ws, nil
}

// FindWebhookByID returns a webhook of the project; another project's is
// not found.
func (db *DB) FindWebhookByID(ctx context.Context, projectID, id int64) (*plane.Webhook, error) {
	w, err := scanWebhook(db.read.QueryRowContext(ctx,
		`SELECT `+webhookColumns+` FROM webhooks WHERE id = ? AND project_id = ?`, id, projectID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, plane.Errorf(plane.ENOTFOUND, "webhook %d not found", id)
	} else if err != nil {
		return nil, fmt.Errorf("find webhook %d: %w", id, err)
	}
	return w, nil
}

// DeleteWebhook deletes a webhook of the project with its deliveries.
func (db *DB) DeleteWebhook(ctx context.Context, projectID, id int64) error {
	return db.inTx(ctx, func(tx *conn) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM webhooks WHERE id = ? AND project_id = ?`, id, projectID)
		if err != nil {
			return fmt.Errorf("delete webhook %d: %w", id, err)
		}
		return rowAffected(res, "webhook %d not found", id)
	})
}

func scanWebhook(s scanner) (*plane.Webhook, error) {
	var w plane.Webhook
	var events string
	var created int64
	var failing, disabled sql.NullInt64
	if err := s.Scan(&w.ID, &w.ProjectID, &w.URL, &events, &w.Secret, &created, &failing, &disabled, &w.DisabledReason); err != nil {
		return nil, err
	}
	w.Events, w.CreatedAt = splitEvents(events), fromMS(created)
	w.FailingSince, w.DisabledAt = fromNullMS(failing), fromNullMS(disabled)
	return &w, nil
}

// FindWebhookDeliveries returns a webhook's deliveries, newest first, each
// with its attempts, oldest first: at most limit (default
// DefaultDeliveryLimit, capped at MaxDeliveryLimit).
func (db *DB) FindWebhookDeliveries(ctx context.Context, webhookID int64, limit int) ([]*plane.WebhookDelivery, error) {
	if limit <= 0 {
		limit = DefaultDeliveryLimit
	}
	limit = min(limit, MaxDeliveryLimit)
	var ds []*plane.WebhookDelivery
	err := db.inReadTx(ctx, func(tx *conn) error {
		var err error
		ds, err = queryAll(ctx, tx, scanDelivery, `SELECT `+deliveryColumns+` FROM webhook_deliveries
			WHERE webhook_id = ? ORDER BY id DESC LIMIT ?`, webhookID, limit)
		if err != nil {
			return err
		}
		return attachAttempts(ctx, tx, ds)
	})
	if err != nil {
		return nil, fmt.Errorf("find webhook deliveries: %w", err)
	}
	return ds, nil
}

const deliveryColumns = `id, webhook_id, event_id, event_type, status, created_at, since, next_attempt_at`

func scanDelivery(s scanner) (*plane.WebhookDelivery, error) {
	var d plane.WebhookDelivery
	var created, since int64
	var next sql.NullInt64
	if err := s.Scan(&d.ID, &d.WebhookID, &d.EventID, &d.EventType, &d.Status, &created, &since, &next); err != nil {
		return nil, err
	}
	d.CreatedAt, d.Since, d.NextAttemptAt = fromMS(created), fromMS(since), fromNullMS(next)
	d.Attempts = []plane.DeliveryAttempt{}
	return &d, nil
}

// attachAttempts loads the attempts of deliveries in one query.
func attachAttempts(ctx context.Context, q queryer, ds []*plane.WebhookDelivery) error {
	if len(ds) == 0 {
		return nil
	}
	byID := make(map[int64]*plane.WebhookDelivery, len(ds))
	args := make([]any, len(ds))
	for i, d := range ds {
		byID[d.ID], args[i] = d, d.ID
	}
	rows, err := q.QueryContext(ctx, `
		SELECT delivery_id, time_ms, duration_ms, status_code, error FROM webhook_attempts
		WHERE delivery_id IN (?`+strings.Repeat(", ?", len(args)-1)+`) ORDER BY id`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, at, dur int64
		var a plane.DeliveryAttempt
		if err := rows.Scan(&id, &at, &dur, &a.StatusCode, &a.Error); err != nil {
			return err
		}
		a.Time, a.Duration = fromMS(at), time.Duration(dur)*time.Millisecond
		byID[id].Attempts = append(byID[id].Attempts, a)
	}
	return rows.Err()
}

// RetryWebhookDelivery makes a delivery of the webhook due at at, whatever
// its status, as the start of a new round of tries, and releases any
// claim on it (the outcome of an attempt in flight is still logged). A
// disabled webhook is enabled again: retrying by hand says its endpoint
// is expected to answer.
func (db *DB) RetryWebhookDelivery(ctx context.Context, webhookID, deliveryID int64, at time.Time) (*plane.WebhookDelivery, error) {
	at = orNow(at)
	var d *plane.WebhookDelivery
	err := db.inTx(ctx, func(tx *conn) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE webhook_deliveries SET status = 'pending', since = ?, next_attempt_at = ?, locked_until = NULL, claim = ''
			WHERE id = ? AND webhook_id = ?`, toMS(at), toMS(at), deliveryID, webhookID)
		if err != nil {
			return fmt.Errorf("retry delivery %d: %w", deliveryID, err)
		}
		if err := rowAffected(res, "delivery %d not found", deliveryID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE webhooks SET disabled_at = NULL, disabled_reason = '', failing_since = NULL
			WHERE id = ? AND disabled_at IS NOT NULL`, webhookID); err != nil {
			return fmt.Errorf("retry delivery %d: %w", deliveryID, err)
		}
		ds, err := queryAll(ctx, tx, scanDelivery, `SELECT `+deliveryColumns+` FROM webhook_deliveries WHERE id = ?`, deliveryID)
		if err != nil {
			return fmt.Errorf("retry delivery %d: %w", deliveryID, err)
		}
		if err := attachAttempts(ctx, tx, ds); err != nil {
			return fmt.Errorf("retry delivery %d: %w", deliveryID, err)
		}
		d = ds[0]
		return nil
	})
	return d, err
}

// ClaimWebhookDeliveries leases at most limit pending deliveries due by
// now, of enabled webhooks, oldest due first, until now+lease. A claim is
// an update that only matches an unleased row (or one whose lease ran
// out), in a write transaction: of several controllers claiming at once,
// one gets each delivery (sqlite: one writer at a time; Postgres: the
// others' serializable transactions fail and run again, and find it
// leased). A look on the read pool first keeps an idle poll from taking
// the write lock.
func (db *DB) ClaimWebhookDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*plane.DueDelivery, error) {
	now = orNow(now)
	if limit <= 0 {
		limit = 1
	}
	const due = `
		SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
		WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND (d.locked_until IS NULL OR d.locked_until < ?)
			AND w.disabled_at IS NULL
		ORDER BY d.next_attempt_at, d.id LIMIT ?`
	var first int64
	switch err := db.read.QueryRowContext(ctx, due, toMS(now), toMS(now), 1).Scan(&first); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("claim webhook deliveries: %w", err)
	}
	var claimed []*plane.DueDelivery
	err := db.inTx(ctx, func(tx *conn) error {
		claimed = nil // afresh: the transaction may run again
		ids, err := queryAll(ctx, tx, func(s scanner) (int64, error) {
			var id int64
			return id, s.Scan(&id)
		}, due, toMS(now), toMS(now), limit)
		if err != nil {
			return fmt.Errorf("claim webhook deliveries: %w", err)
		}
		for _, id := range ids {
			claim := newClaim()
			res, err := tx.ExecContext(ctx, `
				UPDATE webhook_deliveries SET locked_until = ?, claim = ?
				WHERE id = ? AND status = 'pending' AND (locked_until IS NULL OR locked_until < ?)`,
				toMS(now.Add(lease)), claim, id, toMS(now))
			if err != nil {
				return fmt.Errorf("claim webhook delivery %d: %w", id, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("claim webhook delivery %d: %w", id, err)
			}
			if n == 0 {
				continue // claimed by another since the read
			}
			d := plane.DueDelivery{ID: id, Claim: claim}
			var since int64
			var payload string
			if err := tx.QueryRowContext(ctx, `
				SELECT d.webhook_id, w.project_id, d.event_id, w.url, w.secret, d.payload, d.attempts, d.since
				FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id WHERE d.id = ?`, id).Scan(
				&d.WebhookID, &d.ProjectID, &d.EventID, &d.URL, &d.Secret, &payload, &d.Attempts, &since); err != nil {
				return fmt.Errorf("claim webhook delivery %d: %w", id, err)
			}
			d.Payload, d.Since = []byte(payload), fromMS(since)
			claimed = append(claimed, &d)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return claimed, nil
}

func newClaim() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // never fails: see crypto/rand.Read
	return hex.EncodeToString(b[:])
}

// RecordWebhookAttempt logs an attempt of a claimed delivery and, while
// the claim holds, moves the delivery on: delivered after a 2xx answer,
// else pending again at o.Next, or failed without one. The webhook's
// failing_since is cleared by an answer and set by the first failure after
// one; it is returned. A delivery deleted meanwhile (its webhook was)
// records nothing.
func (db *DB) RecordWebhookAttempt(ctx context.Context, d *plane.DueDelivery, o plane.AttemptOutcome) (*time.Time, error) {
	a := o.Attempt
	at := orNow(a.Time)
	var failingSince *time.Time
	err := db.inTx(ctx, func(tx *conn) error {
		failingSince = nil // afresh: the transaction may run again
		var one int
		switch err := tx.QueryRowContext(ctx, `SELECT 1 FROM webhook_deliveries WHERE id = ?`, d.ID).Scan(&one); {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case err != nil:
			return fmt.Errorf("record webhook attempt: %w", err)
		}
		msg := a.Error
		if len(msg) > plane.MaxAttemptErrorLen {
			msg = msg[:plane.MaxAttemptErrorLen]
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO webhook_attempts (delivery_id, time_ms, duration_ms, status_code, error) VALUES (?, ?, ?, ?, ?)`,
			d.ID, toMS(at), a.Duration.Milliseconds(), a.StatusCode, msg); err != nil {
			return fmt.Errorf("record webhook attempt: %w", err)
		}
		status, next := plane.DeliveryDelivered, sql.NullInt64{}
		switch {
		case a.OK():
		case o.Next != nil:
			status, next = plane.DeliveryPending, toNullMS(o.Next)
		default:
			status = plane.DeliveryFailed
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?, locked_until = NULL, claim = ''
			WHERE id = ? AND claim = ?`, status, next, d.ID, d.Claim); err != nil {
			return fmt.Errorf("record webhook attempt: %w", err)
		}
		update := `UPDATE webhooks SET failing_since = NULL WHERE id = ?`
		args := []any{d.WebhookID}
		if !a.OK() {
			update = `UPDATE webhooks SET failing_since = COALESCE(failing_since, ?) WHERE id = ?`
			args = []any{toMS(at), d.WebhookID}
		}
		if _, err := tx.ExecContext(ctx, update, args...); err != nil {
			return fmt.Errorf("record webhook attempt: %w", err)
		}
		var since sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT failing_since FROM webhooks WHERE id = ?`, d.WebhookID).Scan(&since); err != nil {
			return fmt.Errorf("record webhook attempt: %w", err)
		}
		failingSince = fromNullMS(since)
		return nil
	})
	return failingSince, err
}

// DisableWebhook disables a webhook at at, saying why; its pending
// deliveries fail. A webhook disabled already keeps its first reason.
func (db *DB) DisableWebhook(ctx context.Context, id int64, reason string, at time.Time) error {
	return db.inTx(ctx, func(tx *conn) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE webhooks SET disabled_at = ?, disabled_reason = ? WHERE id = ? AND disabled_at IS NULL`,
			toMS(orNow(at)), reason, id)
		if err != nil {
			return fmt.Errorf("disable webhook %d: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, locked_until = NULL, claim = ''
			WHERE webhook_id = ? AND status = 'pending'`, id); err != nil {
			return fmt.Errorf("disable webhook %d: %w", id, err)
		}
		return nil
	})
}

// PruneWebhookDeliveries deletes the deliveries that are done (delivered
// or failed) and were created before before, with their attempts: the
// delivery log reaches back that far. It returns how many it deleted.
func (db *DB) PruneWebhookDeliveries(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := db.inTx(ctx, func(tx *conn) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at < ?`, toMS(before))
		if err != nil {
			return fmt.Errorf("prune webhook deliveries: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}
