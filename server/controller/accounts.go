package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	"plane"
	"plane/auth"
)

// Accounts is what the core reads and writes of users, teams, projects and
// API tokens (server/sqlite's services satisfy it).
type Accounts interface {
	CreateUser(ctx context.Context, u *plane.User) error
	FindUserByEmail(ctx context.Context, email string) (*plane.User, error)

	CreateTeam(ctx context.Context, t *plane.Team, ownerID int64) error
	FindMember(ctx context.Context, teamID, userID int64) (*plane.Member, error)
	SetMemberRole(ctx context.Context, teamID, userID int64, role plane.Role) error
	RemoveMember(ctx context.Context, teamID, userID int64) error
	CreateInvite(ctx context.Context, inv *plane.Invite) error
	AcceptInvite(ctx context.Context, tokenHash string, userID int64, now time.Time) (*plane.Member, error)

	CreateProject(ctx context.Context, p *plane.Project) error
	DeleteProject(ctx context.Context, id int64) error

	CreateToken(ctx context.Context, t *plane.Token) error
	FindTokenByID(ctx context.Context, id string) (*plane.Token, error)
	RevokeToken(ctx context.Context, id string) error
}

// maxName bounds the names people give users, teams and tokens.
const maxName = 100

// accounts returns the account store, or an error for a controller that
// serves only the API.
func (c *Core) accounts() (Accounts, error) {
	if c.Accounts == nil {
		return nil, plane.Errorf(plane.EUNAVAILABLE, "this controller has no accounts: it serves only the API")
	}
	return c.Accounts, nil
}

// SignUp is what the sign-up form asks for.
type SignUp struct {
	Name, Email, Password string
}

// SignUp creates a user; the first one becomes the admin (the store decides,
// in the same transaction).
func (c *Core) SignUp(ctx context.Context, in SignUp) (*plane.User, error) {
	acc, err := c.accounts()
	if err != nil {
		return nil, err
	}
	u := &plane.User{Name: strings.TrimSpace(in.Name)}
	if u.Email, err = plane.ValidateEmail(in.Email); err != nil {
		return nil, err
	}
	if err := plane.ValidatePassword(in.Password); err != nil {
		return nil, err
	}
	if err := plane.ValidateName("name", u.Name, maxName); err != nil {
		return nil, err
	}
	if u.PasswordHash, err = auth.HashPassword(in.Password); err != nil {
		return nil, err
	}
	if err := acc.CreateUser(ctx, u); err != nil {
		return nil, err
	}
	c.logger().Info("user signed up", "user", u.ID, "admin", u.Admin)
	return u, nil
}

// TooManyAttempts refuses a login while the limiter holds its address or
// its client back.
type TooManyAttempts struct{ Wait time.Duration }

func (e TooManyAttempts) Error() string {
	return fmt.Sprintf("too many failed attempts: try again in %s", e.Wait.Round(time.Second))
}

// LogIn checks a password. Failures count against the address and against
// the client (its network address), so neither one account nor one client
// can try passwords quickly: past the limit it is TooManyAttempts, even for
// the right password. A wrong address and a wrong password are the same
// error.
func (c *Core) LogIn(ctx context.Context, email, password, client string) (*plane.User, error) {
	acc, err := c.accounts()
	if err != nil {
		return nil, err
	}
	email = strings.ToLower(strings.TrimSpace(email))
	now := time.Now()
	keys := []string{"email:" + email, "ip:" + client}
	for _, k := range keys {
		ok, wait, err := c.Logins.Allow(ctx, k, now)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, TooManyAttempts{Wait: wait}
		}
	}
	u, err := acc.FindUserByEmail(ctx, email)
	if err != nil && plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		return nil, err
	}
	hash := ""
	if u != nil {
		hash = u.PasswordHash
	}
	// Checked even without a user, so that the time taken says nothing.
	if !auth.CheckPassword(hash, password) || u == nil {
		for _, k := range keys {
			if err := c.Logins.Fail(ctx, k, now); err != nil {
				return nil, err
			}
		}
		return nil, plane.Errorf(plane.EUNAUTHORIZED, "wrong email or password")
	}
	for _, k := range keys {
		if err := c.Logins.Reset(ctx, k); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// CreateTeam creates a team with the actor as its owner.
func (c *Core) CreateTeam(ctx context.Context, actor plane.Actor, name string) (*plane.Team, error) {
	acc, err := c.accounts()
	if err != nil {
		return nil, err
	}
	t := &plane.Team{Name: strings.TrimSpace(name)}
	switch {
	case t.Name == "":
		return nil, plane.FieldErrorf("team_name", "give the team a name")
	}
	if err := plane.ValidateName("team_name", t.Name, maxName); err != nil {
		return nil, err
	}
	if err := acc.CreateTeam(ctx, t, actor.UserID); err != nil {
		return nil, err
	}
	return t, nil
}

// Invitation is a new invite and the secret of its link, shown once.
type Invitation struct {
	Invite *plane.Invite
	Secret string
}

// InviteMember makes a one-time link that adds its user to the team with
// role; only its hash is stored.
func (c *Core) InviteMember(ctx context.Context, actor plane.Actor, teamID int64, role plane.Role) (Invitation, error) {
	acc, err := c.accounts()
	if err != nil {
		return Invitation{}, err
	}
	if !role.Valid() {
		return Invitation{}, plane.FieldErrorf("role", "choose the role owner or member")
	}
	secret, hash, err := auth.NewSecret()
	if err != nil {
		return Invitation{}, err
	}
	now := time.Now()
	inv := &plane.Invite{TeamID: teamID, TokenHash: hash, Role: role, CreatedBy: actor.UserID, CreatedAt: now, ExpiresAt: now.Add(plane.InviteTTL)}
	if err := acc.CreateInvite(ctx, inv); err != nil {
		return Invitation{}, err
	}
	return Invitation{Invite: inv, Secret: secret}, nil
}

// AcceptInvite adds the actor to the invite's team; a used, expired or
// unknown invite is not found or a conflict.
func (c *Core) AcceptInvite(ctx context.Context, actor plane.Actor, secret string) (*plane.Member, error) {
	acc, err := c.accounts()
	if err != nil {
		return nil, err
	}
	return acc.AcceptInvite(ctx, auth.HashSecret(secret), actor.UserID, time.Now())
}

// SetMemberRole changes a member's role; the last owner stays one.
func (c *Core) SetMemberRole(ctx context.Context, actor plane.Actor, teamID, userID int64, role plane.Role) error {
	acc, err := c.accounts()
	if err != nil {
		return err
	}
	if !role.Valid() {
		return plane.FieldErrorf("role", "choose owner or member")
	}
	return acc.SetMemberRole(ctx, teamID, userID, role)
}

// RemoveMember takes a user out of a team; the last owner stays.
func (c *Core) RemoveMember(ctx context.Context, actor plane.Actor, teamID, userID int64) error {
	acc, err := c.accounts()
	if err != nil {
		return err
	}
	return acc.RemoveMember(ctx, teamID, userID)
}

// CreateProject creates a project in one of the actor's teams.
func (c *Core) CreateProject(ctx context.Context, actor plane.Actor, teamID int64, name string) (*plane.Project, error) {
	acc, err := c.accounts()
	if err != nil {
		return nil, err
	}
	if _, err := acc.FindMember(ctx, teamID, actor.UserID); plane.ErrorCodeOf(err) == plane.ENOTFOUND {
		return nil, plane.FieldErrorf("team_id", "choose one of your teams")
	} else if err != nil {
		return nil, err
	}
	p := &plane.Project{TeamID: teamID, Name: strings.TrimSpace(name)}
	if err := acc.CreateProject(ctx, p); err != nil {
		return nil, err
	}
	c.Record(ctx, actor, p.ID, plane.ActionProjectCreate, p.Name, "")
	return p, nil
}

// DeleteProject deletes a project; one with live backends is a conflict.
func (c *Core) DeleteProject(ctx context.Context, actor plane.Actor, p *plane.Project) error {
	acc, err := c.accounts()
	if err != nil {
		return err
	}
	if err := acc.DeleteProject(ctx, p.ID); err != nil {
		return err
	}
	c.logger().Info("project deleted", "project", p.Name, "by", actor.Name)
	return nil
}
