package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"plane"
)

var _ plane.UserService = (*DB)(nil)

const userColumns = `id, email, name, admin, password_hash, created_at`

// CreateUser stores u with a personal team it owns, and sets its ID and
// CreatedAt (when zero). The first user of the instance becomes its admin:
// counting and inserting in one write transaction keeps two concurrent
// sign-ups from both being first. The first user also becomes the owner of
// every team nobody belongs to: those of the projects made before any user
// (project default, and those of plane admin project create), so that they
// show in the dashboard.
func (db *DB) CreateUser(ctx context.Context, u *plane.User) error {
	email, err := plane.ValidateEmail(u.Email)
	if err != nil {
		return err
	}
	created := orNow(u.CreatedAt)
	admin := u.Admin
	var id int64
	err = db.inTx(ctx, func(tx *conn) error {
		var users int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&users); err != nil {
			return fmt.Errorf("count users: %w", err)
		}
		admin = u.Admin || users == 0 // afresh: the transaction may run again
		if err := tx.QueryRowContext(ctx, `
			INSERT INTO users (email, name, admin, password_hash, created_at)
			VALUES (?, ?, ?, ?, ?) RETURNING id`,
			email, u.Name, admin, u.PasswordHash, toMS(created)).Scan(&id); err != nil {
			return err
		}
		if _, err := insertTeam(ctx, tx, personalTeamName(u.Name, email), id, created); err != nil {
			return err
		}
		if users > 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, `
			INSERT INTO team_members (team_id, user_id, role, created_at)
			SELECT id, ?, ?, ? FROM teams WHERE id NOT IN (SELECT team_id FROM team_members)`,
			id, plane.RoleOwner, toMS(created))
		return err
	})
	switch {
	case db.isUnique(err):
		return conflict("email", "an account with %s exists already", email)
	case err != nil:
		return fmt.Errorf("create user %s: %w", email, err)
	}
	u.ID, u.Email, u.Admin, u.CreatedAt = id, email, admin, created
	return nil
}

// personalTeamName names a new user's own team after them: "Ada's team", or
// "ada's team" from ada@example.com when they gave no name.
func personalTeamName(name, email string) string {
	if name = strings.TrimSpace(name); name == "" {
		name, _, _ = strings.Cut(email, "@")
	}
	return name + "'s team"
}

// FindUserByID returns the user with id.
func (db *DB) FindUserByID(ctx context.Context, id int64) (*plane.User, error) {
	return findUser(ctx, db.read, `id = ?`, id, fmt.Sprintf("user %d", id))
}

// FindUserByEmail returns the user with the address, in any case: the
// column's NOCASE collation applies to the comparison.
func (db *DB) FindUserByEmail(ctx context.Context, email string) (*plane.User, error) {
	email = strings.TrimSpace(email)
	return findUser(ctx, db.read, `email = ?`, email, fmt.Sprintf("user %s", email))
}

func findUser(ctx context.Context, q queryer, where string, arg any, what string) (*plane.User, error) {
	u, err := scanUser(q.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, plane.Errorf(plane.ENOTFOUND, "%s not found", what)
	}
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", what, err)
	}
	return u, nil
}

// FindUsers returns every user, oldest first: the admin leads.
func (db *DB) FindUsers(ctx context.Context) ([]*plane.User, error) {
	users, err := queryAll(ctx, db.read, scanUser, `SELECT `+userColumns+` FROM users ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("find users: %w", err)
	}
	return users, nil
}

func scanUser(s scanner) (*plane.User, error) {
	var u plane.User
	var created int64
	if err := s.Scan(&u.ID, &u.Email, &u.Name, &u.Admin, &u.PasswordHash, &created); err != nil {
		return nil, err
	}
	u.CreatedAt = fromMS(created)
	return &u, nil
}

// CreateSession stores s. A zero CreatedAt is now and a zero ExpiresAt is
// SessionTTL later. The user's expired sessions go at the same time: nothing
// else removes them, and a sign-in is a cheap moment to.
func (db *DB) CreateSession(ctx context.Context, s *plane.Session) error {
	if s.ID == "" {
		return plane.FieldErrorf("id", "is required")
	}
	created := orNow(s.CreatedAt)
	expires := orLater(s.ExpiresAt, created, plane.SessionTTL)
	err := db.inTx(ctx, func(tx *conn) error {
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM sessions WHERE user_id = ? AND expires_at <= ?`, s.UserID, toMS(now())); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			s.ID, s.UserID, toMS(created), toMS(expires))
		return err
	})
	switch {
	case db.isUnique(err):
		return conflict("id", "session exists already")
	case db.isForeignKey(err):
		return plane.Errorf(plane.ENOTFOUND, "user %d not found", s.UserID)
	case err != nil:
		return fmt.Errorf("create session: %w", err)
	}
	s.CreatedAt, s.ExpiresAt = created, expires
	return nil
}

// FindSession returns the session with id unless it has expired. The id is
// a hash, so it never appears in errors.
func (db *DB) FindSession(ctx context.Context, id string) (*plane.Session, error) {
	var s plane.Session
	var created, expires int64
	err := db.read.QueryRowContext(ctx,
		`SELECT id, user_id, created_at, expires_at FROM sessions WHERE id = ? AND expires_at > ?`,
		id, toMS(now())).Scan(&s.ID, &s.UserID, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, plane.Errorf(plane.ENOTFOUND, "session not found")
	}
	if err != nil {
		return nil, fmt.Errorf("find session: %w", err)
	}
	s.CreatedAt, s.ExpiresAt = fromMS(created), fromMS(expires)
	return &s, nil
}

// DeleteSession signs a session out. An unknown session is no error, so
// that signing out twice, or after expiry, just works.
func (db *DB) DeleteSession(ctx context.Context, id string) error {
	if _, err := db.write.ExecContext(ctx, `DELETE FROM sessions WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// RecentLoginFailures returns the times of key's last failures after
// since, newest first, at most limit.
func (db *DB) RecentLoginFailures(ctx context.Context, key string, since time.Time, limit int) ([]time.Time, error) {
	times, err := queryAll(ctx, db.read, func(s scanner) (time.Time, error) {
		var ms int64
		err := s.Scan(&ms)
		return fromMS(ms), err
	}, `SELECT time_ms FROM login_failures WHERE key = ? AND time_ms > ? ORDER BY time_ms DESC LIMIT ?`,
		key, toMS(since), limit)
	if err != nil {
		return nil, fmt.Errorf("find login failures: %w", err)
	}
	return times, nil
}

// RecordLoginFailure records a failure of key at at, and forgets every
// failure at or before forgetBefore, so that the table holds one window.
func (db *DB) RecordLoginFailure(ctx context.Context, key string, at, forgetBefore time.Time) error {
	return db.inTx(ctx, func(tx *conn) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM login_failures WHERE time_ms <= ?`, toMS(forgetBefore)); err != nil {
			return fmt.Errorf("forget login failures: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO login_failures (key, time_ms) VALUES (?, ?)`, key, toMS(at)); err != nil {
			return fmt.Errorf("record login failure: %w", err)
		}
		return nil
	})
}

// ClearLoginFailures forgets key's failures.
func (db *DB) ClearLoginFailures(ctx context.Context, key string) error {
	if _, err := db.write.ExecContext(ctx, `DELETE FROM login_failures WHERE key = ?`, key); err != nil {
		return fmt.Errorf("clear login failures: %w", err)
	}
	return nil
}
