package controller_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"plane"
	"plane/auth"
	"plane/auth/authtest"
	"plane/server/controller"
)

// fakeAccounts keeps users, members, invites, projects and tokens in maps.
type fakeAccounts struct {
	users    map[string]*plane.User
	members  map[[2]int64]plane.Role
	invites  map[string]*plane.Invite // by hash
	projects map[int64]*plane.Project
	tokens   map[string]*plane.Token
	next     int64
	live     map[int64]bool // projects with live backends
	authtest.LoginFailures
}

func newAccounts() *fakeAccounts {
	return &fakeAccounts{users: map[string]*plane.User{}, members: map[[2]int64]plane.Role{}, invites: map[string]*plane.Invite{},
		projects: map[int64]*plane.Project{}, tokens: map[string]*plane.Token{}, live: map[int64]bool{}}
}

func (a *fakeAccounts) id() int64 { a.next++; return a.next }

func (a *fakeAccounts) CreateUser(_ context.Context, u *plane.User) error {
	if _, ok := a.users[u.Email]; ok {
		return plane.FieldErrorf("email", "an account with this email exists")
	}
	u.ID, u.Admin = a.id(), len(a.users) == 0
	a.users[u.Email] = u
	return nil
}

func (a *fakeAccounts) FindUserByEmail(_ context.Context, email string) (*plane.User, error) {
	if u, ok := a.users[email]; ok {
		return u, nil
	}
	return nil, plane.Errorf(plane.ENOTFOUND, "user not found")
}

func (a *fakeAccounts) CreateTeam(_ context.Context, t *plane.Team, ownerID int64) error {
	t.ID = a.id()
	a.members[[2]int64{t.ID, ownerID}] = plane.RoleOwner
	return nil
}

func (a *fakeAccounts) FindMember(_ context.Context, teamID, userID int64) (*plane.Member, error) {
	if r, ok := a.members[[2]int64{teamID, userID}]; ok {
		return &plane.Member{TeamID: teamID, UserID: userID, Role: r}, nil
	}
	return nil, plane.Errorf(plane.ENOTFOUND, "member not found")
}

func (a *fakeAccounts) owners(teamID int64) int {
	n := 0
	for k, r := range a.members {
		if k[0] == teamID && r == plane.RoleOwner {
			n++
		}
	}
	return n
}

func (a *fakeAccounts) SetMemberRole(ctx context.Context, teamID, userID int64, role plane.Role) error {
	m, err := a.FindMember(ctx, teamID, userID)
	if err != nil {
		return err
	}
	if m.Role == plane.RoleOwner && role != plane.RoleOwner && a.owners(teamID) == 1 {
		return plane.Errorf(plane.ECONFLICT, "a team keeps at least one owner")
	}
	a.members[[2]int64{teamID, userID}] = role
	return nil
}

func (a *fakeAccounts) RemoveMember(ctx context.Context, teamID, userID int64) error {
	m, err := a.FindMember(ctx, teamID, userID)
	if err != nil {
		return err
	}
	if m.Role == plane.RoleOwner && a.owners(teamID) == 1 {
		return plane.Errorf(plane.ECONFLICT, "a team keeps at least one owner")
	}
	delete(a.members, [2]int64{teamID, userID})
	return nil
}

func (a *fakeAccounts) CreateInvite(_ context.Context, inv *plane.Invite) error {
	inv.ID = a.id()
	a.invites[inv.TokenHash] = inv
	return nil
}

func (a *fakeAccounts) AcceptInvite(_ context.Context, hash string, userID int64, now time.Time) (*plane.Member, error) {
	inv, ok := a.invites[hash]
	switch {
	case !ok:
		return nil, plane.Errorf(plane.ENOTFOUND, "invite not found")
	case inv.UsedAt != nil || now.After(inv.ExpiresAt):
		return nil, plane.Errorf(plane.ECONFLICT, "invite used or expired")
	}
	inv.UsedAt, inv.UsedBy = &now, &userID
	a.members[[2]int64{inv.TeamID, userID}] = inv.Role
	return &plane.Member{TeamID: inv.TeamID, UserID: userID, Role: inv.Role}, nil
}

func (a *fakeAccounts) CreateProject(_ context.Context, p *plane.Project) error {
	if p.Name == "" {
		return plane.FieldErrorf("name", "give the project a name")
	}
	p.ID = a.id()
	a.projects[p.ID] = p
	return nil
}

func (a *fakeAccounts) DeleteProject(_ context.Context, id int64) error {
	if a.live[id] {
		return plane.Errorf(plane.ECONFLICT, "the project has live backends")
	}
	delete(a.projects, id)
	return nil
}

func (a *fakeAccounts) CreateToken(_ context.Context, t *plane.Token) error {
	a.tokens[t.ID] = t
	return nil
}

func (a *fakeAccounts) FindTokenByID(_ context.Context, id string) (*plane.Token, error) {
	if t, ok := a.tokens[id]; ok {
		return t, nil
	}
	return nil, plane.Errorf(plane.ENOTFOUND, "token %q not found", id)
}

func (a *fakeAccounts) RevokeToken(_ context.Context, id string) error {
	now := time.Now()
	a.tokens[id].RevokedAt = &now
	return nil
}

// FindTokens and TouchToken make the fake an auth.Authenticator's store.
func (a *fakeAccounts) FindTokens(context.Context, int64) ([]*plane.Token, error) { return nil, nil }
func (a *fakeAccounts) TouchToken(context.Context, string, time.Time) error       { return nil }

func newAccountsCore(t *testing.T) (*controller.Core, *fakeAccounts, *fakeStore) {
	c, st, _, _ := newCore(t)
	acc := newAccounts()
	c.Accounts, c.Logins = acc, auth.NewLimiter(acc, 3, time.Minute)
	return c, acc, st
}

// fieldOf is the field an invalid input names, or "-" for another error.
func fieldOf(err error) string {
	var pe *plane.Error
	if errors.As(err, &pe) && pe.Code == plane.EINVALID {
		return pe.Field
	}
	return "-"
}

func TestSignUpAndLogIn(t *testing.T) {
	t.Parallel() // its password hashing works while the waiting tests wait
	ctx := context.Background()
	c, acc, _ := newAccountsCore(t)
	for _, tc := range []struct {
		in    controller.SignUp
		field string
	}{
		{controller.SignUp{Email: "nope", Password: "long enough pw"}, "email"},
		{controller.SignUp{Email: "a@example.com", Password: "short"}, "password"},
		{controller.SignUp{Name: strings.Repeat("n", 101), Email: "a@example.com", Password: "long enough pw"}, "name"},
		// Postgres refuses a NUL and invalid UTF-8 (sqlite would store them):
		// refused here for both, as the user's mistake, not a 500.
		{controller.SignUp{Name: "Ann\x00", Email: "a@example.com", Password: "long enough pw"}, "name"},
		{controller.SignUp{Name: "Ann\xff", Email: "a@example.com", Password: "long enough pw"}, "name"},
	} {
		if _, err := c.SignUp(ctx, tc.in); fieldOf(err) != tc.field {
			t.Errorf("sign up %+v: %v, want a %s error", tc.in, err, tc.field)
		}
	}
	if len(acc.users) != 0 {
		t.Fatalf("refused sign-ups stored %d users", len(acc.users))
	}
	u, err := c.SignUp(ctx, controller.SignUp{Name: " Ann ", Email: " ann@example.com", Password: "long enough pw"})
	if err != nil || u.Name != "Ann" || u.Email != "ann@example.com" || !u.Admin || !auth.CheckPassword(u.PasswordHash, "long enough pw") {
		t.Fatalf("sign up: %+v, %v", u, err)
	}

	if got, err := c.LogIn(ctx, "ANN@example.com ", "long enough pw", "10.0.0.1"); err != nil || got.ID != u.ID {
		t.Fatalf("log in: %+v, %v", got, err)
	}
	for _, who := range []string{"ann@example.com", "nobody@example.com"} {
		if _, err := c.LogIn(ctx, who, "wrong password", "10.0.0.2"); plane.ErrorCodeOf(err) != plane.EUNAUTHORIZED {
			t.Fatalf("wrong password for %s: %v", who, err)
		}
	}
	// The third failure from 10.0.0.2 fills its allowance: even the right
	// password waits now, from that client.
	if _, err := c.LogIn(ctx, "other@example.com", "x", "10.0.0.2"); plane.ErrorCodeOf(err) != plane.EUNAUTHORIZED {
		t.Fatalf("third failure: %v", err)
	}
	var many controller.TooManyAttempts
	if _, err := c.LogIn(ctx, "ann@example.com", "long enough pw", "10.0.0.2"); !errors.As(err, &many) || many.Wait <= 0 {
		t.Fatalf("past the limit: %v", err)
	}
	if _, err := c.LogIn(ctx, "ann@example.com", "long enough pw", "10.0.0.3"); err != nil {
		t.Fatalf("another client: %v", err)
	}
}

func TestTeamsAndProjects(t *testing.T) {
	ctx := context.Background()
	c, acc, st := newAccountsCore(t)
	ann, bob := plane.Actor{UserID: 1, Name: "ann"}, plane.Actor{UserID: 2, Name: "bob"}
	if _, err := c.CreateTeam(ctx, ann, "crew\x00"); fieldOf(err) != "team_name" {
		t.Errorf("a team name with a NUL: %v, want a team_name error", err)
	}
	if _, err := c.CreateTeam(ctx, ann, "  "); fieldOf(err) != "team_name" {
		t.Fatalf("blank team: %v", err)
	}
	team, err := c.CreateTeam(ctx, ann, " Ops ")
	if err != nil || team.Name != "Ops" || acc.members[[2]int64{team.ID, 1}] != plane.RoleOwner {
		t.Fatalf("team %+v, %v", team, err)
	}

	// Bob is no member: he cannot create a project in Ann's team.
	if _, err := c.CreateProject(ctx, bob, team.ID, "web"); fieldOf(err) != "team_id" {
		t.Fatalf("project in another's team: %v", err)
	}
	if _, err := c.InviteMember(ctx, ann, team.ID, "boss"); fieldOf(err) != "role" {
		t.Fatalf("invite with a bad role: %v", err)
	}
	inv, err := c.InviteMember(ctx, ann, team.ID, plane.RoleMember)
	if err != nil || inv.Secret == "" || inv.Invite.TokenHash == inv.Secret || inv.Invite.CreatedBy != 1 {
		t.Fatalf("invite %+v, %v", inv, err)
	}
	if _, err := c.AcceptInvite(ctx, bob, "not the secret"); plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		t.Fatalf("a wrong secret: %v", err)
	}
	if m, err := c.AcceptInvite(ctx, bob, inv.Secret); err != nil || m.Role != plane.RoleMember {
		t.Fatalf("accept: %+v, %v", m, err)
	}
	if _, err := c.AcceptInvite(ctx, bob, inv.Secret); plane.ErrorCodeOf(err) != plane.ECONFLICT {
		t.Fatalf("an invite used twice: %v", err)
	}

	p, err := c.CreateProject(ctx, bob, team.ID, " web ")
	if err != nil || p.Name != "web" || p.TeamID != team.ID {
		t.Fatalf("project %+v, %v", p, err)
	}
	if got := st.activity(plane.ActionProjectCreate); got != "bob web " {
		t.Fatalf("activity %q", got)
	}

	if err := c.SetMemberRole(ctx, ann, team.ID, 2, "boss"); fieldOf(err) != "role" {
		t.Fatalf("a bad role: %v", err)
	}
	if err := c.SetMemberRole(ctx, ann, team.ID, 1, plane.RoleMember); plane.ErrorCodeOf(err) != plane.ECONFLICT {
		t.Fatalf("the last owner steps down: %v", err)
	}
	if err := c.RemoveMember(ctx, ann, team.ID, 2); err != nil {
		t.Fatal(err)
	}

	acc.live[p.ID] = true
	if err := c.DeleteProject(ctx, ann, p); plane.ErrorCodeOf(err) != plane.ECONFLICT || acc.projects[p.ID] == nil {
		t.Fatalf("delete with live backends: %v", err)
	}
	acc.live[p.ID] = false
	if err := c.DeleteProject(ctx, ann, p); err != nil || acc.projects[p.ID] != nil {
		t.Fatalf("delete: %v", err)
	}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	c, acc, st := newAccountsCore(t)
	all := []string{"backends:read", "images:write"}
	if _, err := c.CreateToken(ctx, alice, 1, controller.TokenInput{Name: "ci", Scopes: all}); plane.ErrorCodeOf(err) != plane.EUNAVAILABLE {
		t.Fatalf("without a key: %v", err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	c.ConnectKey = key
	for _, tc := range []struct {
		in    controller.TokenInput
		field string
	}{
		{controller.TokenInput{Name: " ", Scopes: all}, "name"},
		{controller.TokenInput{Name: strings.Repeat("n", 101), Scopes: all}, "name"},
		{controller.TokenInput{Name: "ci\r\nX: y", Scopes: all}, "name"},
		{controller.TokenInput{Name: "ci"}, "scopes"},
		{controller.TokenInput{Name: "ci", Scopes: []string{"admin"}}, "scopes"},
		{controller.TokenInput{Name: "ci", Scopes: append([]string{string(plane.ScopeAdmin)}, all...)}, "scopes"},
		{controller.TokenInput{Name: "ci", Scopes: all, LifetimeDays: 2}, "expires"},
		{controller.TokenInput{Name: "ci", Scopes: all, LifetimeDays: -1}, "expires"},
	} {
		if _, err := c.CreateToken(ctx, alice, 1, tc.in); fieldOf(err) != tc.field {
			t.Errorf("token %+v: %v, want a %s error", tc.in, err, tc.field)
		}
	}
	if len(acc.tokens) != 0 {
		t.Fatalf("refused tokens stored: %d", len(acc.tokens))
	}
	// The admin scope is valid (the command line makes such tokens) but not
	// the dashboard's to give.
	if _, err := c.CreateToken(ctx, alice, 1, controller.TokenInput{Name: "ops", Scopes: []string{"admin"}}); !strings.Contains(plane.ErrorMessageOf(err), "plane admin token create --scopes admin") {
		t.Errorf("admin token: %v, want a pointer to plane admin token create", err)
	}
	nt, err := c.CreateToken(ctx, alice, 1, controller.TokenInput{Name: " ci ", Scopes: all, LifetimeDays: 7})
	if err != nil || nt.Signed == "" || nt.Token.Name != "ci" || nt.Token.ExpiresAt == nil ||
		nt.Token.ExpiresAt.Sub(nt.Token.CreatedAt) != 7*24*time.Hour || acc.tokens[nt.Token.ID] == nil {
		t.Fatalf("token %+v, %v", nt, err)
	}
	if got := st.activity(plane.ActionTokenCreate); !strings.HasPrefix(got, "alice@example.com ci backends:read images:write, expires ") {
		t.Fatalf("activity %q", got)
	}
	id, err := (&auth.Authenticator{Key: key.Public().(ed25519.PublicKey), Tokens: acc}).Authenticate(ctx, nt.Signed)
	if err != nil || id.ID != nt.Token.ID {
		t.Fatalf("the signed token does not authenticate: %+v, %v", id, err)
	}

	if _, err := c.RevokeToken(ctx, alice, 2, nt.Token.ID); plane.ErrorCodeOf(err) != plane.ENOTFOUND || acc.tokens[nt.Token.ID].RevokedAt != nil {
		t.Fatalf("another project's token: %v", err)
	}
	if _, err := c.RevokeToken(ctx, alice, 1, nt.Token.ID); err != nil || acc.tokens[nt.Token.ID].RevokedAt == nil {
		t.Fatalf("revoke: %v", err)
	}
	if got := st.activity(plane.ActionTokenRevoke); got != "alice@example.com ci " {
		t.Fatalf("activity %q", got)
	}
}

func TestAPIOnlyControllerHasNoAccounts(t *testing.T) {
	c, _, _, _ := newCore(t)
	if _, err := c.SignUp(context.Background(), controller.SignUp{Email: "a@example.com", Password: "long enough pw"}); plane.ErrorCodeOf(err) != plane.EUNAVAILABLE {
		t.Fatalf("sign up without accounts: %v", err)
	}
}
