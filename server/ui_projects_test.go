package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"plane"
)

func TestCreateProject(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	b := d.signup("ada@example.com")
	pr := b.project("web-app")
	list := b.get("/projects")
	if got := list.text(testid("project-link")); got != "web-app" {
		t.Fatalf("projects page lists %q", got)
	}
	team, _ := list.Find(`select[name="team_id"] option`).First().Attr("value")
	tests := []struct {
		name, team, project string
		field, want         string
	}{
		{"duplicate name", team, "web-app", "name", `project "web-app" already exists`},
		{"bad name", team, "Web App!", "name", "must be 1-63 characters"},
		{"empty name", team, "", "name", "is required"},
		{"not my team", "999", "other", "team_id", "choose one of your teams"},
		{"no team", "x", "other", "team_id", "choose one of your teams"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := b.post("/projects", url.Values{"team_id": {tt.team}, "name": {tt.project}})
			if p.status() != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422", p.status())
			}
			if got := p.text(testid("error-" + tt.field)); !strings.Contains(got, tt.want) {
				t.Errorf("error next to %s = %q, want it to contain %q", tt.field, got, tt.want)
			}
			if got, _ := p.Find(`form[data-testid="project-form"] ` + testid("field-name")).Attr("value"); got != tt.project {
				t.Errorf("name field keeps %q, want %q", got, tt.project)
			}
		})
	}
	acts, err := d.db.FindActivity(context.Background(), pr.ID, 10)
	if err != nil || len(acts) != 1 || acts[0].Action != plane.ActionProjectCreate || acts[0].Actor.Name != "ada@example.com" {
		t.Fatalf("activity %v %v", acts, err)
	}
}

// Another team's project, team and backends are not found, whatever the
// path: their ids leak nothing.
func TestNonMemberGets404(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	ada := d.signup("ada@example.com")
	pr := ada.project("secret")
	img := d.image(pr.ID, "demo")
	d.fakeDrone("d1")
	ada.post("/projects/"+id(pr.ID)+"/backends", url.Values{"image": {img.Name}})
	bs, _ := d.db.FindBackends(context.Background(), plane.BackendFilter{ProjectID: &pr.ID})
	if len(bs) != 1 {
		t.Fatalf("%d backends", len(bs))
	}
	bob := d.signup("bob@example.com")
	base := "/projects/" + id(pr.ID)
	for _, path := range []string{base, base + "/backends", base + "/backends/stream", base + "/backends/" + bs[0].ID, base + "/settings", "/teams/" + id(pr.TeamID)} {
		if p := bob.get(path); p.status() != http.StatusNotFound {
			t.Errorf("GET %s as a non-member: %d, want 404", path, p.status())
		} else if !strings.Contains(p.text(testid("error-message")), "not found") {
			t.Errorf("GET %s: message %q", path, p.text(testid("error-message")))
		}
	}
	for _, path := range []string{base + "/backends", base + "/backends/" + bs[0].ID + "/terminate", base + "/delete"} {
		if p := bob.post(path, url.Values{"image": {"demo"}}); p.status() != http.StatusNotFound {
			t.Errorf("POST %s as a non-member: %d, want 404", path, p.status())
		}
	}
	if got := len(d.sent()); got != 1 {
		t.Errorf("the drone got %d requests, want only the owner's spawn", got)
	}
	if p := bob.get("/projects/abc/backends"); p.status() != http.StatusNotFound {
		t.Errorf("a malformed project id: %d", p.status())
	}
}

func TestTeamInvite(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	ada := d.signup("ada@example.com")
	pr := ada.project("shared")
	teamPath := "/teams/" + id(pr.TeamID)
	p := ada.post(teamPath+"/invites", url.Values{"role": {"member"}})
	link := p.text(testid("invite-url"))
	if p.status() != http.StatusCreated || !strings.Contains(link, "/invites/") {
		t.Fatalf("invite: %d link %q", p.status(), link)
	}
	if again := ada.get(teamPath); strings.Contains(again.body, link) {
		t.Fatal("the invite link is shown twice")
	}
	u, _ := url.Parse(link)

	// Signed out, the link leads to sign-up and back.
	bob := d.browser()
	if p := bob.get(u.Path); p.status() != http.StatusSeeOther || !strings.Contains(p.location(), url.QueryEscape(u.Path)) {
		t.Fatalf("signed-out invite: %d %q", p.status(), p.location())
	}
	bob = d.signup("bob@example.com")
	if p := bob.get(u.Path); p.status() != http.StatusOK || !strings.Contains(p.text("h1"), "ada's team") {
		t.Fatalf("invite page: %d %q", p.status(), p.text("h1"))
	}
	if p := bob.post(u.Path, nil); p.status() != http.StatusSeeOther || p.location() != teamPath+"?flash=joined" {
		t.Fatalf("accept: %d %q", p.status(), p.location())
	}
	if p := bob.get("/projects/" + id(pr.ID) + "/backends"); p.status() != http.StatusOK {
		t.Fatalf("the new member cannot see the project: %d", p.status())
	}

	// Once only.
	carol := d.signup("carol@example.com")
	if p := carol.get(u.Path); p.status() != http.StatusGone || !strings.Contains(p.text(testid("invite-problem")), "used already") {
		t.Fatalf("used invite: %d %q", p.status(), p.text(testid("invite-problem")))
	}
	if p := carol.post(u.Path, nil); p.status() != http.StatusGone {
		t.Fatalf("accepting a used invite: %d", p.status())
	}
	if p := carol.get("/invites/made-up"); p.status() != http.StatusGone || !strings.Contains(p.text(testid("invite-problem")), "not valid") {
		t.Fatalf("unknown invite: %d", p.status())
	}

	// Members neither manage members nor delete the project.
	bobID := d.user("bob@example.com").ID
	adaID := d.user("ada@example.com").ID
	forbidden := []string{teamPath + "/invites", teamPath + "/members/" + id(adaID) + "/remove", teamPath + "/members/" + id(adaID) + "/role", "/projects/" + id(pr.ID) + "/delete"}
	for _, path := range forbidden {
		if p := bob.post(path, url.Values{"role": {"member"}}); p.status() != http.StatusForbidden {
			t.Errorf("member POST %s: %d, want 403", path, p.status())
		}
	}
	if p := bob.get("/projects/" + id(pr.ID) + "/settings"); p.Find(testid("owner-only")).Length() != 1 || p.Find(testid("project-delete")).Length() != 0 {
		t.Error("a member is offered to delete the project")
	}

	// The owner promotes, cannot leave the team without an owner, removes.
	if p := ada.post(teamPath+"/members/"+id(adaID)+"/role", url.Values{"role": {"member"}}); p.status() != http.StatusConflict || !strings.Contains(p.text(testid("form-error")), "owner") {
		t.Fatalf("demoting the last owner: %d %q", p.status(), p.text(testid("form-error")))
	}
	if p := ada.post(teamPath+"/members/"+id(bobID)+"/role", url.Values{"role": {"owner"}}); p.status() != http.StatusSeeOther {
		t.Fatalf("promote: %d", p.status())
	}
	if p := bob.post(teamPath+"/members/"+id(adaID)+"/remove", nil); p.status() != http.StatusSeeOther {
		t.Fatalf("the new owner removes ada: %d", p.status())
	}
	if p := ada.get("/projects/" + id(pr.ID) + "/backends"); p.status() != http.StatusNotFound {
		t.Fatalf("a removed member still sees the project: %d", p.status())
	}
}

func TestCreateTeam(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	b := d.signup("ada@example.com")
	p := b.post("/teams", url.Values{"team_name": {"  "}})
	if p.status() != http.StatusUnprocessableEntity || p.text(testid("error-team_name")) == "" {
		t.Fatalf("empty team name: %d %q", p.status(), p.text(testid("error-team_name")))
	}
	p = b.post("/teams", url.Values{"team_name": {"Night shift"}})
	if p.status() != http.StatusSeeOther || !strings.HasPrefix(p.location(), "/teams/") {
		t.Fatalf("create team: %d %q", p.status(), p.location())
	}
	team := b.get(strings.Split(p.location(), "?")[0])
	if team.text("h1") != "Night shift" || team.text(testid("my-role")) != "owner" {
		t.Fatalf("team page %q role %q", team.text("h1"), team.text(testid("my-role")))
	}
}

func TestDeleteProject(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	ada := d.signup("ada@example.com")
	pr := ada.project("doomed")
	img := d.image(pr.ID, "demo")
	d.fakeDrone("d1")
	ada.post("/projects/"+id(pr.ID)+"/backends", url.Values{"image": {img.Name}})
	base := "/projects/" + id(pr.ID)
	p := ada.post(base+"/delete", nil)
	if p.status() != http.StatusConflict || !strings.Contains(p.text(testid("form-error")), "live backends") {
		t.Fatalf("delete with a live backend: %d %q", p.status(), p.text(testid("form-error")))
	}
	bs, _ := d.db.FindBackends(context.Background(), plane.BackendFilter{ProjectID: &pr.ID})
	_, _, _ = d.s.Core().ApplyBackendEvent(context.Background(), plane.BackendEvent{BackendID: bs[0].ID, DroneID: "d1", Status: plane.StatusTerminated, Reason: plane.ReasonRequested, Time: bs[0].CreatedAt.Add(1)})
	if p := ada.post(base+"/delete", nil); p.status() != http.StatusSeeOther {
		t.Fatalf("delete: %d", p.status())
	}
	if p := ada.get(base + "/backends"); p.status() != http.StatusNotFound {
		t.Fatalf("deleted project: %d", p.status())
	}
}

func id(n int64) string { return strconv.FormatInt(n, 10) }
