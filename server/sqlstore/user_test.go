package sqlstore_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"plane"
	"plane/server/sqlstore"
)

// mustCreateUser stores a user with the address and a placeholder hash.
func mustCreateUser(tb testing.TB, db *sqlstore.DB, email string) *plane.User {
	tb.Helper()
	u := &plane.User{Email: email, PasswordHash: "hash"}
	if err := db.CreateUser(context.Background(), u); err != nil {
		tb.Fatalf("create user %s: %v", email, err)
	}
	return u
}

func TestCreateUser(t *testing.T) { eachStore(t, testCreateUser) }

func testCreateUser(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	t0 := ms(1_700_000_000_000)

	tests := []struct {
		name      string
		user      plane.User
		wantAdmin bool
		wantTeam  string
		code      plane.ErrorCode
		field     string
	}{
		{name: "first is admin", user: plane.User{Email: "ada@example.com", Name: "Ada", PasswordHash: "h1", CreatedAt: t0}, wantAdmin: true, wantTeam: "Ada's team"},
		{name: "second is not", user: plane.User{Email: "bob@example.com", PasswordHash: "h2"}, wantTeam: "bob's team"},
		{name: "email trimmed", user: plane.User{Email: " cy@example.com ", Name: "  "}, wantTeam: "cy's team"},
		{name: "taken email", user: plane.User{Email: "ada@example.com"}, code: plane.ECONFLICT, field: "email"},
		{name: "taken email in other case", user: plane.User{Email: "ADA@Example.com"}, code: plane.ECONFLICT, field: "email"},
		{name: "not an address", user: plane.User{Email: "ada"}, code: plane.EINVALID, field: "email"},
		{name: "no address", user: plane.User{}, code: plane.EINVALID, field: "email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := tt.user
			err := db.CreateUser(ctx, &u)
			wantCode(t, err, tt.code)
			if tt.field != "" {
				wantField(t, err, tt.field)
			}
			if err != nil {
				if u.ID != 0 {
					t.Fatalf("failed create set ID %d", u.ID)
				}
				return
			}
			if u.ID == 0 || u.CreatedAt.IsZero() || u.Admin != tt.wantAdmin {
				t.Fatalf("created %+v: want ID, CreatedAt and admin %v", u, tt.wantAdmin)
			}
			if !tt.user.CreatedAt.IsZero() && !u.CreatedAt.Equal(tt.user.CreatedAt) {
				t.Fatalf("created at %v, want %v", u.CreatedAt, tt.user.CreatedAt)
			}
			got, err := db.FindUserByID(ctx, u.ID)
			if err != nil || !reflect.DeepEqual(got, &u) {
				t.Fatalf("stored %+v (%v), want %+v", got, err, u)
			}

			teams, err := db.FindTeamsOfUser(ctx, u.ID)
			if err != nil || len(teams) != 1 || teams[0].Name != tt.wantTeam || teams[0].Role != plane.RoleOwner {
				t.Fatalf("teams %+v (%v), want %q owned", teams, err, tt.wantTeam)
			}
			members, err := db.FindMembers(ctx, teams[0].ID)
			if err != nil || len(members) != 1 || members[0].UserID != u.ID || members[0].Email != u.Email {
				t.Fatalf("members %+v (%v), want the user alone", members, err)
			}
		})
	}

	t.Run("an admin flag given is kept", func(t *testing.T) {
		u := &plane.User{Email: "root@example.com", Admin: true}
		if err := db.CreateUser(ctx, u); err != nil || !u.Admin {
			t.Fatalf("created %+v, %v; want admin", u, err)
		}
	})
}

func TestFindUsers(t *testing.T) { eachStore(t, testFindUsers) }

func testFindUsers(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	if got, err := db.FindUsers(ctx); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty store: %v, %v; want an empty list", got, err)
	}
	ada := mustCreateUser(t, db, "Ada@example.com")
	bob := mustCreateUser(t, db, "bob@example.com")

	got, err := db.FindUsers(ctx)
	if err != nil || !reflect.DeepEqual(got, []*plane.User{ada, bob}) {
		t.Fatalf("got %+v, %v; want ada then bob", got, err)
	}
	for _, email := range []string{"Ada@example.com", "ada@EXAMPLE.com", " ada@example.com"} {
		if got, err := db.FindUserByEmail(ctx, email); err != nil || got.ID != ada.ID {
			t.Fatalf("by email %q: %+v, %v", email, got, err)
		}
	}
	_, err = db.FindUserByEmail(ctx, "cy@example.com")
	wantCode(t, err, plane.ENOTFOUND)
	_, err = db.FindUserByID(ctx, 999)
	wantCode(t, err, plane.ENOTFOUND)
}

func TestSessions(t *testing.T) { eachStore(t, testSessions) }

func testSessions(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	u := mustCreateUser(t, db, "ada@example.com")
	past := ms(time.Now().Add(-time.Hour).UnixMilli())
	if err := db.CreateSession(ctx, &plane.Session{ID: "taken", UserID: u.ID}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		session plane.Session
		code    plane.ErrorCode // of CreateSession
		found   bool
	}{
		{name: "defaults last SessionTTL", session: plane.Session{ID: "s1", UserID: u.ID}, found: true},
		{name: "expired", session: plane.Session{ID: "s2", UserID: u.ID, CreatedAt: past.Add(-time.Hour), ExpiresAt: past}},
		{name: "no id", session: plane.Session{UserID: u.ID}, code: plane.EINVALID},
		{name: "taken id", session: plane.Session{ID: "taken", UserID: u.ID}, code: plane.ECONFLICT},
		{name: "unknown user", session: plane.Session{ID: "s3", UserID: 999}, code: plane.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.session
			err := db.CreateSession(ctx, &s)
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			if tt.session.ExpiresAt.IsZero() && !s.ExpiresAt.Equal(s.CreatedAt.Add(plane.SessionTTL)) {
				t.Fatalf("session %+v: want ExpiresAt SessionTTL after CreatedAt", s)
			}
			got, err := db.FindSession(ctx, s.ID)
			if !tt.found {
				wantCode(t, err, plane.ENOTFOUND)
				return
			}
			if err != nil || !reflect.DeepEqual(got, &s) {
				t.Fatalf("found %+v (%v), want %+v", got, err, s)
			}
		})
	}

	t.Run("delete signs out, twice is fine", func(t *testing.T) {
		for range 2 {
			if err := db.DeleteSession(ctx, "s1"); err != nil {
				t.Fatal(err)
			}
		}
		_, err := db.FindSession(ctx, "s1")
		wantCode(t, err, plane.ENOTFOUND)
	})
}

// Projects made before any user (project default, plane admin project
// create) have teams nobody belongs to: the first user owns them, so they
// show in the dashboard; later users do not get them.
func TestFirstUserOwnsMemberlessTeams(t *testing.T) { eachStore(t, testFirstUserOwnsMemberlessTeams) }

func testFirstUserOwnsMemberlessTeams(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	def := MustCreateProject(t, db, plane.DefaultProject)
	ann := mustCreateUser(t, db, "ann@example.com")
	later := MustCreateProject(t, db, "later") // a team of its own, nobody in it
	bob := mustCreateUser(t, db, "bob@example.com")
	for _, tc := range []struct {
		user    *plane.User
		project *plane.Project
		member  bool
	}{
		{ann, def, true}, {bob, def, false}, {ann, later, false}, {bob, later, false},
	} {
		m, err := db.FindMember(ctx, tc.project.TeamID, tc.user.ID)
		if got := err == nil; got != tc.member {
			t.Errorf("%s in the team of %s: %v (%v), want %v", tc.user.Email, tc.project.Name, got, err, tc.member)
		}
		if tc.member && m.Role != plane.RoleOwner {
			t.Errorf("%s is %s of %s's team, want owner", tc.user.Email, m.Role, tc.project.Name)
		}
	}
}
