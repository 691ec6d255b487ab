package sqlstore_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"plane"
	"plane/server/sqlstore"
)

// mustCreateTeam stores a team owned by ownerID.
func mustCreateTeam(tb testing.TB, db *sqlstore.DB, name string, ownerID int64) *plane.Team {
	tb.Helper()
	team := &plane.Team{Name: name}
	if err := db.CreateTeam(context.Background(), team, ownerID); err != nil {
		tb.Fatalf("create team %q: %v", name, err)
	}
	return team
}

// mustAddMember brings userID into the team with role through an invite.
func mustAddMember(tb testing.TB, db *sqlstore.DB, teamID, userID int64, role plane.Role) {
	tb.Helper()
	ctx := context.Background()
	inv := &plane.Invite{TeamID: teamID, TokenHash: fmt.Sprintf("invite %d to %d", userID, teamID), Role: role}
	if err := db.CreateInvite(ctx, inv); err != nil {
		tb.Fatal(err)
	}
	if _, err := db.AcceptInvite(ctx, inv.TokenHash, userID, time.Time{}); err != nil {
		tb.Fatal(err)
	}
}

// mustCreateCrew opens a store with three users, ada, bob and cy, and a team
// "crew" that ada alone owns.
func mustCreateCrew(tb testing.TB, s store) (db *sqlstore.DB, team *plane.Team, ada, bob, cy *plane.User) {
	tb.Helper()
	db = s.MustOpen(tb)
	ada = mustCreateUser(tb, db, "ada@example.com")
	bob = mustCreateUser(tb, db, "bob@example.com")
	cy = mustCreateUser(tb, db, "cy@example.com")
	return db, mustCreateTeam(tb, db, "crew", ada.ID), ada, bob, cy
}

func TestCreateTeam(t *testing.T) { eachStore(t, testCreateTeam) }

func testCreateTeam(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	ada := mustCreateUser(t, db, "ada@example.com")
	zeta := mustCreateTeam(t, db, "  zeta ", ada.ID)
	alpha := mustCreateTeam(t, db, "alpha", ada.ID)
	if zeta.ID == 0 || zeta.Name != "zeta" || zeta.CreatedAt.IsZero() {
		t.Fatalf("created %+v: want ID, trimmed name and CreatedAt", zeta)
	}
	if got, err := db.FindTeamByID(ctx, zeta.ID); err != nil || !reflect.DeepEqual(got, zeta) {
		t.Fatalf("stored %+v (%v), want %+v", got, err, zeta)
	}

	teams, err := db.FindTeamsOfUser(ctx, ada.ID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, team := range teams {
		if team.Role != plane.RoleOwner {
			t.Fatalf("team %+v: want owner", team)
		}
		names = append(names, team.Name)
	}
	if want := []string{"ada's team", "alpha", "zeta"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("teams %v, want %v", names, want)
	}
	if teams[1].Team != *alpha {
		t.Fatalf("team %+v, want %+v", teams[1].Team, alpha)
	}

	err = db.CreateTeam(ctx, &plane.Team{Name: "orphan"}, 999)
	wantCode(t, err, plane.ENOTFOUND)
	err = db.CreateTeam(ctx, &plane.Team{Name: " "}, ada.ID)
	wantCode(t, err, plane.EINVALID)
	wantField(t, err, "name")
	_, err = db.FindTeamByID(ctx, 999)
	wantCode(t, err, plane.ENOTFOUND)
	if got, err := db.FindTeamsOfUser(ctx, 999); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("teams of no one: %v, %v; want an empty list", got, err)
	}
}

func TestMembers(t *testing.T) { eachStore(t, testMembers) }

func testMembers(t *testing.T, s store) {
	ctx := context.Background()
	db, team, ada, bob, cy := mustCreateCrew(t, s)
	mustAddMember(t, db, team.ID, bob.ID, plane.RoleMember)

	// Each step runs on the state the previous ones left.
	steps := []struct {
		name   string
		do     func() error
		code   plane.ErrorCode
		owners []int64 // owners after the step
		others []int64 // members after the step
	}{
		{"last owner cannot step down", func() error { return db.SetMemberRole(ctx, team.ID, ada.ID, plane.RoleMember) },
			plane.ECONFLICT, []int64{ada.ID}, []int64{bob.ID}},
		{"last owner cannot leave", func() error { return db.RemoveMember(ctx, team.ID, ada.ID) },
			plane.ECONFLICT, []int64{ada.ID}, []int64{bob.ID}},
		{"unknown role", func() error { return db.SetMemberRole(ctx, team.ID, bob.ID, "boss") },
			plane.EINVALID, []int64{ada.ID}, []int64{bob.ID}},
		{"outsider cannot be promoted", func() error { return db.SetMemberRole(ctx, team.ID, cy.ID, plane.RoleOwner) },
			plane.ENOTFOUND, []int64{ada.ID}, []int64{bob.ID}},
		{"outsider cannot be removed", func() error { return db.RemoveMember(ctx, team.ID, cy.ID) },
			plane.ENOTFOUND, []int64{ada.ID}, []int64{bob.ID}},
		{"promote a member", func() error { return db.SetMemberRole(ctx, team.ID, bob.ID, plane.RoleOwner) },
			"", []int64{ada.ID, bob.ID}, nil},
		{"an owner steps down while another stays", func() error { return db.SetMemberRole(ctx, team.ID, ada.ID, plane.RoleMember) },
			"", []int64{bob.ID}, []int64{ada.ID}},
		{"the new last owner cannot leave", func() error { return db.RemoveMember(ctx, team.ID, bob.ID) },
			plane.ECONFLICT, []int64{bob.ID}, []int64{ada.ID}},
		{"a member is removed", func() error { return db.RemoveMember(ctx, team.ID, ada.ID) },
			"", []int64{bob.ID}, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			wantCode(t, st.do(), st.code)
			members, err := db.FindMembers(ctx, team.ID)
			if err != nil {
				t.Fatal(err)
			}
			var owners, others []int64
			for _, m := range members {
				if m.Role == plane.RoleOwner {
					owners = append(owners, m.UserID)
				} else {
					others = append(others, m.UserID)
				}
			}
			if !reflect.DeepEqual(owners, st.owners) || !reflect.DeepEqual(others, st.others) {
				t.Fatalf("owners %v members %v, want %v %v", owners, others, st.owners, st.others)
			}
		})
	}

	t.Run("find member", func(t *testing.T) {
		m, err := db.FindMember(ctx, team.ID, bob.ID)
		if err != nil || m.Email != bob.Email || m.Role != plane.RoleOwner || m.TeamID != team.ID {
			t.Fatalf("member %+v, %v", m, err)
		}
		_, err = db.FindMember(ctx, team.ID, ada.ID)
		wantCode(t, err, plane.ENOTFOUND)
	})
}

func TestCreateInvite(t *testing.T) { eachStore(t, testCreateInvite) }

func testCreateInvite(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	ada := mustCreateUser(t, db, "ada@example.com")
	team := mustCreateTeam(t, db, "crew", ada.ID)
	t0 := ms(1_700_000_000_000)
	if err := db.CreateInvite(ctx, &plane.Invite{TeamID: team.ID, TokenHash: "taken", Role: plane.RoleMember}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		invite plane.Invite
		code   plane.ErrorCode
		field  string
	}{
		{name: "defaults", invite: plane.Invite{TeamID: team.ID, TokenHash: "h1", Role: plane.RoleMember, CreatedBy: ada.ID, CreatedAt: t0}},
		{name: "given expiry", invite: plane.Invite{TeamID: team.ID, TokenHash: "h2", Role: plane.RoleOwner, ExpiresAt: t0.Add(time.Hour)}},
		{name: "no hash", invite: plane.Invite{TeamID: team.ID, Role: plane.RoleMember}, code: plane.EINVALID, field: "token_hash"},
		{name: "unknown role", invite: plane.Invite{TeamID: team.ID, TokenHash: "h3", Role: "boss"}, code: plane.EINVALID, field: "role"},
		{name: "taken hash", invite: plane.Invite{TeamID: team.ID, TokenHash: "taken", Role: plane.RoleMember}, code: plane.ECONFLICT, field: "token_hash"},
		{name: "unknown team", invite: plane.Invite{TeamID: 999, TokenHash: "h4", Role: plane.RoleMember}, code: plane.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := tt.invite
			err := db.CreateInvite(ctx, &inv)
			wantCode(t, err, tt.code)
			if tt.field != "" {
				wantField(t, err, tt.field)
			}
			if err != nil {
				return
			}
			want := tt.invite.ExpiresAt
			if want.IsZero() {
				want = inv.CreatedAt.Add(plane.InviteTTL)
			}
			if inv.ID == 0 || inv.CreatedAt.IsZero() || !inv.ExpiresAt.Equal(want) {
				t.Fatalf("created %+v: want ID, CreatedAt and ExpiresAt %v", inv, want)
			}
			got, err := db.FindInvite(ctx, inv.TokenHash)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != inv.ID || got.TeamID != inv.TeamID || got.Role != inv.Role || !got.ExpiresAt.Equal(want) || got.UsedAt != nil {
				t.Fatalf("found %+v, want %+v", got, inv)
			}
		})
	}
	_, err := db.FindInvite(ctx, "nope")
	wantCode(t, err, plane.ENOTFOUND)
}

func TestAcceptInvite(t *testing.T) { eachStore(t, testAcceptInvite) }

func testAcceptInvite(t *testing.T, s store) {
	ctx := context.Background()
	db, team, ada, bob, cy := mustCreateCrew(t, s)
	t0 := ms(1_700_000_000_000)
	for _, inv := range []plane.Invite{
		{TokenHash: "member", Role: plane.RoleMember},
		{TokenHash: "owner", Role: plane.RoleOwner},
		{TokenHash: "expired", Role: plane.RoleMember, ExpiresAt: t0},
		{TokenHash: "for ada", Role: plane.RoleMember},
		{TokenHash: "for no one", Role: plane.RoleMember},
	} {
		inv.TeamID, inv.CreatedBy, inv.CreatedAt = team.ID, ada.ID, t0.Add(-time.Hour)
		if inv.ExpiresAt.IsZero() {
			inv.ExpiresAt = t0.Add(time.Hour)
		}
		if err := db.CreateInvite(ctx, &inv); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name     string
		hash     string
		userID   int64
		code     plane.ErrorCode
		wantRole plane.Role // of the user afterwards; "" when not a member
		spent    bool       // the invite cannot be accepted again
	}{
		{name: "member joins", hash: "member", userID: bob.ID, wantRole: plane.RoleMember, spent: true},
		{name: "used once only", hash: "member", userID: cy.ID, code: plane.ECONFLICT, spent: true},
		{name: "expired", hash: "expired", userID: cy.ID, code: plane.ECONFLICT, spent: true},
		{name: "unknown", hash: "nosuch", userID: cy.ID, code: plane.ENOTFOUND},
		{name: "unknown user spends nothing", hash: "for no one", userID: 999, code: plane.ENOTFOUND},
		{name: "an owner already keeps the role", hash: "for ada", userID: ada.ID, wantRole: plane.RoleOwner, spent: true},
		{name: "owner joins", hash: "owner", userID: cy.ID, wantRole: plane.RoleOwner, spent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := db.AcceptInvite(ctx, tt.hash, tt.userID, t0)
			wantCode(t, err, tt.code)
			if err == nil && (m.UserID != tt.userID || m.TeamID != team.ID || m.Role != tt.wantRole) {
				t.Fatalf("member %+v, want user %d with role %s", m, tt.userID, tt.wantRole)
			}
			if tt.wantRole != "" {
				if got, err := db.FindMember(ctx, team.ID, tt.userID); err != nil || got.Role != tt.wantRole {
					t.Fatalf("stored member %+v, %v; want role %s", got, err, tt.wantRole)
				}
			}
			_, again := db.AcceptInvite(ctx, tt.hash, ada.ID, t0)
			if spent := plane.ErrorCodeOf(again) == plane.ECONFLICT; spent != tt.spent {
				t.Fatalf("accepting again: %v; want spent %v", again, tt.spent)
			}
		})
	}

	t.Run("a zero time is now", func(t *testing.T) {
		inv := &plane.Invite{TeamID: team.ID, TokenHash: "fresh", Role: plane.RoleMember}
		if err := db.CreateInvite(ctx, inv); err != nil {
			t.Fatal(err)
		}
		if _, err := db.AcceptInvite(ctx, "fresh", bob.ID, time.Time{}); err != nil {
			t.Fatal(err)
		}
	})
}
