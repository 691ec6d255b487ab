package plane

import (
	"context"
	"net/mail"
	"strings"
	"time"
)

// User signs in to the dashboard. The first user of an instance is its
// admin.
type User struct {
	ID           int64     `json:"id"`
	Email        string    `json:"email"`
	Name         string    `json:"name"`
	Admin        bool      `json:"admin"`
	PasswordHash string    `json:"-"`
	CreatedAt    time.Time `json:"created_at"`
}

// DisplayName is the user's name, or their email when they gave none.
func (u *User) DisplayName() string {
	if u.Name != "" {
		return u.Name
	}
	return u.Email
}

// Password length bounds: bcrypt reads at most 72 bytes.
const (
	MinPasswordLength = 8
	MaxPasswordLength = 72
)

// ValidateEmail checks an address as typed into the sign-up form and returns
// it trimmed.
func ValidateEmail(email string) (string, error) {
	email = strings.TrimSpace(email)
	if email == "" {
		return "", FieldErrorf("email", "enter your email address")
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || !strings.Contains(email, "@") || len(email) > 254 {
		return "", FieldErrorf("email", "%q is not an email address", email)
	}
	return email, nil
}

// ValidatePassword checks a new password's length.
func ValidatePassword(pw string) error {
	switch {
	case len(pw) < MinPasswordLength:
		return FieldErrorf("password", "use at least %d characters", MinPasswordLength)
	case len(pw) > MaxPasswordLength:
		return FieldErrorf("password", "use at most %d bytes", MaxPasswordLength)
	}
	return nil
}

// Role is a user's place in a team: owners manage members and may delete
// projects; members do everything else.
type Role string

const (
	RoleOwner  Role = "owner"
	RoleMember Role = "member"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleOwner || r == RoleMember }

// Member is a user's membership of a team.
type Member struct {
	TeamID    int64     `json:"team_id"`
	UserID    int64     `json:"user_id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

// TeamOf is a team as one of its members sees it.
type TeamOf struct {
	Team
	Role Role `json:"role"`
}

// Invite is a one-time link into a team. Only the hash of its secret is
// stored; the link is shown once.
type Invite struct {
	ID        int64      `json:"id"`
	TeamID    int64      `json:"team_id"`
	TokenHash string     `json:"-"`
	Role      Role       `json:"role"`
	CreatedBy int64      `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	UsedAt    *time.Time `json:"used_at"`
	UsedBy    *int64     `json:"used_by"`
}

// InviteTTL is how long an invite link works.
const InviteTTL = 7 * 24 * time.Hour

// Session is a signed-in browser. ID is the hash of the cookie's secret, so
// a copy of the store signs no one in.
type Session struct {
	ID        string
	UserID    int64
	CreatedAt time.Time
	ExpiresAt time.Time
}

// SessionTTL is how long a session lasts without a new login.
const SessionTTL = 14 * 24 * time.Hour

// UserService stores users and their sessions.
type UserService interface {
	// CreateUser stores u, with a personal team it owns, and sets its ID.
	// The first user of an instance becomes its admin (u.Admin is set then).
	// ECONFLICT on the email's field when the address is taken.
	CreateUser(ctx context.Context, u *User) error
	FindUserByID(ctx context.Context, id int64) (*User, error)
	// FindUserByEmail matches the address case-insensitively.
	FindUserByEmail(ctx context.Context, email string) (*User, error)
	FindUsers(ctx context.Context) ([]*User, error)

	CreateSession(ctx context.Context, s *Session) error
	// FindSession returns an unexpired session; ENOTFOUND otherwise.
	FindSession(ctx context.Context, id string) (*Session, error)
	DeleteSession(ctx context.Context, id string) error

	// Failed logins, per key (an email address, a client address), are
	// kept in the store so that every controller of a cluster counts the
	// same ones (auth.Limiter). RecentLoginFailures returns the times of
	// key's last failures after since, newest first, at most limit;
	// RecordLoginFailure records one at at and forgets every failure (of
	// any key) at or before forgetBefore; ClearLoginFailures forgets key's.
	RecentLoginFailures(ctx context.Context, key string, since time.Time, limit int) ([]time.Time, error)
	RecordLoginFailure(ctx context.Context, key string, at, forgetBefore time.Time) error
	ClearLoginFailures(ctx context.Context, key string) error
}

// TeamService stores teams, their members and invites.
type TeamService interface {
	// CreateTeam stores t with ownerID as its owner and sets its ID.
	CreateTeam(ctx context.Context, t *Team, ownerID int64) error
	FindTeamByID(ctx context.Context, id int64) (*Team, error)
	// FindTeamsOfUser returns the user's teams, by name.
	FindTeamsOfUser(ctx context.Context, userID int64) ([]*TeamOf, error)
	FindMembers(ctx context.Context, teamID int64) ([]*Member, error)
	// FindMember returns the user's membership; ENOTFOUND when they are
	// not in the team.
	FindMember(ctx context.Context, teamID, userID int64) (*Member, error)
	// SetMemberRole and RemoveMember refuse (ECONFLICT) to leave a team
	// without an owner.
	SetMemberRole(ctx context.Context, teamID, userID int64, role Role) error
	RemoveMember(ctx context.Context, teamID, userID int64) error

	CreateInvite(ctx context.Context, inv *Invite) error
	// FindInvite returns the invite with tokenHash, used or not.
	FindInvite(ctx context.Context, tokenHash string) (*Invite, error)
	// AcceptInvite makes userID a member with the invite's role and marks
	// the invite used: ENOTFOUND for an unknown hash, ECONFLICT for a used
	// or expired invite. A user already in the team keeps their role.
	AcceptInvite(ctx context.Context, tokenHash string, userID int64, now time.Time) (*Member, error)
}
