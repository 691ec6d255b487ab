package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"plane"
)

var _ plane.TokenService = (*DB)(nil)

const tokenColumns = `id, project_id, name, scopes, created_at, expires_at, last_used_at, revoked_at`

// CreateToken stores t's record; its ID comes from the token issuer. A zero
// CreatedAt is now.
func (db *DB) CreateToken(ctx context.Context, t *plane.Token) error {
	if t.ID == "" {
		return plane.FieldErrorf("id", "is required")
	}
	for _, s := range t.Scopes {
		if !s.Valid() {
			return plane.FieldErrorf("scopes", "unknown scope %q", s)
		}
	}
	scopes := t.Scopes
	if scopes == nil {
		scopes = []plane.Scope{}
	}
	data, err := json.Marshal(scopes)
	if err != nil {
		return fmt.Errorf("create token: marshal scopes: %w", err)
	}
	created := orNow(t.CreatedAt)
	_, err = db.write.ExecContext(ctx, `
		INSERT INTO api_tokens (id, project_id, name, scopes, created_at, expires_at, last_used_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.ProjectID, t.Name, string(data), toMS(created),
		toNullMS(t.ExpiresAt), toNullMS(t.LastUsedAt), toNullMS(t.RevokedAt))
	switch {
	case db.isUnique(err):
		return conflict("id", "token %q already exists", t.ID)
	case db.isForeignKey(err):
		return plane.Errorf(plane.ENOTFOUND, "project %d not found", t.ProjectID)
	case err != nil:
		return fmt.Errorf("create token: %w", err)
	}
	t.CreatedAt, t.Scopes = created, scopes
	return nil
}

// FindTokenByID returns the record of the token with id, revoked or not.
func (db *DB) FindTokenByID(ctx context.Context, id string) (*plane.Token, error) {
	t, err := scanToken(db.read.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, plane.Errorf(plane.ENOTFOUND, "token %q not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("find token %q: %w", id, err)
	}
	return t, nil
}

// FindTokens returns the project's tokens, newest first.
func (db *DB) FindTokens(ctx context.Context, projectID int64) ([]*plane.Token, error) {
	tokens, err := queryAll(ctx, db.read, scanToken,
		`SELECT `+tokenColumns+` FROM api_tokens WHERE project_id = ? ORDER BY created_at DESC, rowid DESC`, projectID)
	if err != nil {
		return nil, fmt.Errorf("find tokens: %w", err)
	}
	return tokens, nil
}

// RevokeToken revokes the token with id. Revoking it again keeps the first
// revocation time.
func (db *DB) RevokeToken(ctx context.Context, id string) error {
	res, err := db.write.ExecContext(ctx,
		`UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, toMS(now()), id)
	if err != nil {
		return fmt.Errorf("revoke token %q: %w", id, err)
	}
	return rowAffected(res, "token %q not found", id)
}

// TouchToken records a use of the token at at. Uses recorded out of order
// never move LastUsedAt back.
func (db *DB) TouchToken(ctx context.Context, id string, at time.Time) error {
	ms := toMS(orNow(at))
	// CASE rather than sqlite's MAX(a, b), which Postgres spells GREATEST.
	res, err := db.write.ExecContext(ctx, `
		UPDATE api_tokens
		SET last_used_at = CASE WHEN last_used_at > CAST(? AS BIGINT) THEN last_used_at ELSE CAST(? AS BIGINT) END
		WHERE id = ?`, ms, ms, id)
	if err != nil {
		return fmt.Errorf("touch token %q: %w", id, err)
	}
	return rowAffected(res, "token %q not found", id)
}

func scanToken(s scanner) (*plane.Token, error) {
	var t plane.Token
	var scopes string
	var created int64
	var expires, used, revoked sql.NullInt64
	if err := s.Scan(&t.ID, &t.ProjectID, &t.Name, &scopes, &created, &expires, &used, &revoked); err != nil {
		return nil, err
	}
	t.Scopes = []plane.Scope{}
	if err := json.Unmarshal([]byte(scopes), &t.Scopes); err != nil {
		return nil, fmt.Errorf("unmarshal scopes: %w", err)
	}
	t.CreatedAt = fromMS(created)
	t.ExpiresAt, t.LastUsedAt, t.RevokedAt = fromNullMS(expires), fromNullMS(used), fromNullMS(revoked)
	return &t, nil
}
