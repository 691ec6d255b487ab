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

var _ plane.TeamService = (*DB)(nil)

const memberColumns = `m.team_id, m.user_id, u.email, u.name, m.role, m.created_at`

const memberFrom = ` FROM team_members m JOIN users u ON u.id = m.user_id`

// notMember is the ENOTFOUND message for a user outside a team.
const notMember = "user %d is not a member of team %d"

// CreateTeam stores t with ownerID as its owner, and sets its ID and
// CreatedAt (when zero).
func (db *DB) CreateTeam(ctx context.Context, t *plane.Team, ownerID int64) error {
	name := strings.TrimSpace(t.Name)
	if name == "" {
		return plane.FieldErrorf("name", "enter a team name")
	}
	created := orNow(t.CreatedAt)
	var id int64
	err := db.inTx(ctx, func(tx *conn) error {
		var err error
		id, err = insertTeam(ctx, tx, name, ownerID, created)
		return err
	})
	switch {
	case db.isForeignKey(err):
		return plane.Errorf(plane.ENOTFOUND, "user %d not found", ownerID)
	case err != nil:
		return fmt.Errorf("create team %q: %w", name, err)
	}
	t.ID, t.Name, t.CreatedAt = id, name, created
	return nil
}

// insertTeam stores a team and its first owner.
func insertTeam(ctx context.Context, tx *conn, name string, ownerID int64, created time.Time) (int64, error) {
	var id int64
	if err := tx.QueryRowContext(ctx,
		`INSERT INTO teams (name, created_at) VALUES (?, ?) RETURNING id`,
		name, toMS(created)).Scan(&id); err != nil {
		return 0, err
	}
	_, err := tx.ExecContext(ctx,
		`INSERT INTO team_members (team_id, user_id, role, created_at) VALUES (?, ?, ?, ?)`,
		id, ownerID, plane.RoleOwner, toMS(created))
	return id, err
}

// FindTeamByID returns the team with id.
func (db *DB) FindTeamByID(ctx context.Context, id int64) (*plane.Team, error) {
	var t plane.Team
	var created int64
	err := db.read.QueryRowContext(ctx, `SELECT id, name, created_at FROM teams WHERE id = ?`, id).
		Scan(&t.ID, &t.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, plane.Errorf(plane.ENOTFOUND, "team %d not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("find team %d: %w", id, err)
	}
	t.CreatedAt = fromMS(created)
	return &t, nil
}

// FindTeamsOfUser returns the user's teams with their role in each, by name;
// teams of one name come in the order they were made.
func (db *DB) FindTeamsOfUser(ctx context.Context, userID int64) ([]*plane.TeamOf, error) {
	teams, err := queryAll(ctx, db.read, scanTeamOf, `
		SELECT t.id, t.name, t.created_at, m.role
		FROM team_members m JOIN teams t ON t.id = m.team_id
		WHERE m.user_id = ?
		ORDER BY t.name, t.id`, userID)
	if err != nil {
		return nil, fmt.Errorf("find teams of user %d: %w", userID, err)
	}
	return teams, nil
}

func scanTeamOf(s scanner) (*plane.TeamOf, error) {
	var t plane.TeamOf
	var created int64
	if err := s.Scan(&t.ID, &t.Name, &created, &t.Role); err != nil {
		return nil, err
	}
	t.CreatedAt = fromMS(created)
	return &t, nil
}

// FindMembers returns the team's members in the order they joined, so that
// the founder comes first.
func (db *DB) FindMembers(ctx context.Context, teamID int64) ([]*plane.Member, error) {
	members, err := queryAll(ctx, db.read, scanMember,
		`SELECT `+memberColumns+memberFrom+` WHERE m.team_id = ? ORDER BY m.created_at, m.rowid`, teamID)
	if err != nil {
		return nil, fmt.Errorf("find members of team %d: %w", teamID, err)
	}
	return members, nil
}

// FindMember returns the user's membership of the team.
func (db *DB) FindMember(ctx context.Context, teamID, userID int64) (*plane.Member, error) {
	return findMember(ctx, db.read, teamID, userID)
}

func findMember(ctx context.Context, q queryer, teamID, userID int64) (*plane.Member, error) {
	m, err := scanMember(q.QueryRowContext(ctx,
		`SELECT `+memberColumns+memberFrom+` WHERE m.team_id = ? AND m.user_id = ?`, teamID, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, plane.Errorf(plane.ENOTFOUND, notMember, userID, teamID)
	}
	if err != nil {
		return nil, fmt.Errorf("find member %d of team %d: %w", userID, teamID, err)
	}
	return m, nil
}

// SetMemberRole changes a member's role, unless that demotes the team's last
// owner.
func (db *DB) SetMemberRole(ctx context.Context, teamID, userID int64, role plane.Role) error {
	if !role.Valid() {
		return plane.FieldErrorf("role", "unknown role %q", role)
	}
	return db.inTx(ctx, func(tx *conn) error {
		if role != plane.RoleOwner {
			if err := keepAnOwner(ctx, tx, teamID, userID, "demote"); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx,
			`UPDATE team_members SET role = ? WHERE team_id = ? AND user_id = ?`, role, teamID, userID)
		if err != nil {
			return fmt.Errorf("set role of member %d of team %d: %w", userID, teamID, err)
		}
		return rowAffected(res, notMember, userID, teamID)
	})
}

// RemoveMember takes a user out of a team, unless they are its last owner.
func (db *DB) RemoveMember(ctx context.Context, teamID, userID int64) error {
	return db.inTx(ctx, func(tx *conn) error {
		if err := keepAnOwner(ctx, tx, teamID, userID, "remove"); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx,
			`DELETE FROM team_members WHERE team_id = ? AND user_id = ?`, teamID, userID)
		if err != nil {
			return fmt.Errorf("remove member %d of team %d: %w", userID, teamID, err)
		}
		return rowAffected(res, notMember, userID, teamID)
	})
}

// keepAnOwner checks, inside the write transaction that is about to demote
// or remove the member, that the team keeps another owner. ENOTFOUND when the
// user is not a member.
func keepAnOwner(ctx context.Context, tx *conn, teamID, userID int64, verb string) error {
	m, err := findMember(ctx, tx, teamID, userID)
	if err != nil || m.Role != plane.RoleOwner {
		return err
	}
	var owners int
	if err := tx.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM team_members WHERE team_id = ? AND role = ?`, teamID, plane.RoleOwner).Scan(&owners); err != nil {
		return fmt.Errorf("count owners of team %d: %w", teamID, err)
	}
	if owners <= 1 {
		return plane.Errorf(plane.ECONFLICT, "cannot %s the last owner of the team: make someone else an owner first", verb)
	}
	return nil
}

// CreateInvite stores inv, and sets its ID, CreatedAt (when zero) and
// ExpiresAt (InviteTTL after CreatedAt when zero).
func (db *DB) CreateInvite(ctx context.Context, inv *plane.Invite) error {
	if inv.TokenHash == "" {
		return plane.FieldErrorf("token_hash", "is required")
	}
	if !inv.Role.Valid() {
		return plane.FieldErrorf("role", "unknown role %q", inv.Role)
	}
	created := orNow(inv.CreatedAt)
	expires := orLater(inv.ExpiresAt, created, plane.InviteTTL)
	var id int64
	err := db.write.QueryRowContext(ctx, `
		INSERT INTO invites (team_id, token_hash, role, created_by, created_at, expires_at, used_at, used_by)
		VALUES (?, ?, ?, ?, ?, ?, NULL, NULL) RETURNING id`,
		inv.TeamID, inv.TokenHash, inv.Role, inv.CreatedBy, toMS(created), toMS(expires)).Scan(&id)
	switch {
	case db.isUnique(err):
		return conflict("token_hash", "invite exists already")
	case db.isForeignKey(err):
		return plane.Errorf(plane.ENOTFOUND, "team %d not found", inv.TeamID)
	case err != nil:
		return fmt.Errorf("create invite to team %d: %w", inv.TeamID, err)
	}
	inv.ID, inv.CreatedAt, inv.ExpiresAt, inv.UsedAt, inv.UsedBy = id, created, expires, nil, nil
	return nil
}

// FindInvite returns the invite with tokenHash, used or expired alike.
func (db *DB) FindInvite(ctx context.Context, tokenHash string) (*plane.Invite, error) {
	var inv plane.Invite
	var created, expires int64
	var usedAt, usedBy sql.NullInt64
	err := db.read.QueryRowContext(ctx, `
		SELECT id, team_id, token_hash, role, created_by, created_at, expires_at, used_at, used_by
		FROM invites WHERE token_hash = ?`, tokenHash).
		Scan(&inv.ID, &inv.TeamID, &inv.TokenHash, &inv.Role, &inv.CreatedBy, &created, &expires, &usedAt, &usedBy)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, plane.Errorf(plane.ENOTFOUND, "invite not found")
	case err != nil:
		return nil, fmt.Errorf("find invite: %w", err)
	}
	inv.CreatedAt, inv.ExpiresAt = fromMS(created), fromMS(expires)
	if usedAt.Valid {
		t := fromMS(usedAt.Int64)
		inv.UsedAt = &t
	}
	if usedBy.Valid {
		inv.UsedBy = &usedBy.Int64
	}
	return &inv, nil
}

// AcceptInvite spends the invite with tokenHash on userID at now (the
// current time when zero) and returns their membership. A user already in
// the team keeps their role, yet the invite is spent all the same: a link
// works once, whoever follows it.
func (db *DB) AcceptInvite(ctx context.Context, tokenHash string, userID int64, now time.Time) (*plane.Member, error) {
	at := orNow(now)
	var m *plane.Member
	err := db.inTx(ctx, func(tx *conn) error {
		var id, teamID, expires int64
		var role plane.Role
		var used sql.NullInt64
		err := tx.QueryRowContext(ctx,
			`SELECT id, team_id, role, expires_at, used_at FROM invites WHERE token_hash = ?`, tokenHash).
			Scan(&id, &teamID, &role, &expires, &used)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return plane.Errorf(plane.ENOTFOUND, "invite not found")
		case err != nil:
			return fmt.Errorf("find invite: %w", err)
		case used.Valid:
			return plane.Errorf(plane.ECONFLICT, "this invite was used already: ask for a new one")
		case toMS(at) >= expires:
			return plane.Errorf(plane.ECONFLICT, "this invite expired on %s: ask for a new one", fromMS(expires).Format(time.DateOnly))
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO team_members (team_id, user_id, role, created_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (team_id, user_id) DO NOTHING`,
			teamID, userID, role, toMS(at)); err != nil {
			if db.isForeignKey(err) {
				return plane.Errorf(plane.ENOTFOUND, "user %d not found", userID)
			}
			return fmt.Errorf("add member: %w", err)
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE invites SET used_at = ?, used_by = ? WHERE id = ?`, toMS(at), userID, id); err != nil {
			return fmt.Errorf("spend invite: %w", err)
		}
		m, err = findMember(ctx, tx, teamID, userID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("accept invite: %w", err)
	}
	return m, nil
}

func scanMember(s scanner) (*plane.Member, error) {
	var m plane.Member
	var created int64
	if err := s.Scan(&m.TeamID, &m.UserID, &m.Email, &m.Name, &m.Role, &created); err != nil {
		return nil, err
	}
	m.CreatedAt = fromMS(created)
	return &m, nil
}
