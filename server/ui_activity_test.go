package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"plane"
)

func TestActivityPage(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	if p := b.get(base + "/activity"); p.status() != http.StatusOK || p.Find(testid("activity-row")).Length() != 1 {
		t.Fatalf("activity page: %d, %d rows (want the project's creation)", p.status(), p.Find(testid("activity-row")).Length())
	}
	b.post(base+"/images", url.Values{"name": {"web"}, "ref": {"plane-demo:latest"}, "pull_policy": {"never"}})
	b.post(base+"/backends", url.Values{"image": {"web"}})
	tok := b.createToken(base, url.Values{"name": {"ci"}, "scopes": {"images:write"}, "expires": {"never"}})
	d.api(tok, http.MethodDelete, "/api/v1/images/web", "")
	bs, _ := d.db.FindBackends(context.Background(), plane.BackendFilter{ProjectID: &pr.ID})
	if len(bs) != 1 {
		t.Fatalf("%d backends", len(bs))
	}

	p := b.get(base + "/activity")
	if p.Find(`[data-testid="tab-activity"][aria-current]`).Length() != 1 {
		t.Error("the activity tab is not the current one")
	}
	var actions []string
	p.Find(testid("activity-row")).Each(func(_ int, r *goquery.Selection) {
		a, _ := r.Attr("data-action")
		actions = append(actions, a)
	})
	if got := strings.Join(actions, " "); got != "image.delete token.create backend.spawn image.create project.create" {
		t.Errorf("actions, newest first: %s", got)
	}
	api := p.Find(`[data-action="image.delete"]`)
	if who := strings.TrimSpace(api.Find(testid("activity-actor")).Text()); !strings.HasPrefix(who, "token ci") || api.Find(testid("via-token")).Length() != 1 {
		t.Errorf("the API's entry is by %q", who)
	}
	spawn := p.Find(`[data-action="backend.spawn"]`)
	if href, _ := spawn.Find(testid("activity-target") + " a").Attr("href"); href != base+"/backends/"+bs[0].ID {
		t.Errorf("backend link %q", href)
	}
	if who := strings.TrimSpace(spawn.Find(testid("activity-actor")).Text()); who != "ada@example.com" || spawn.Find(testid("via-token")).Length() != 0 {
		t.Errorf("the spawn is by %q", who)
	}
	if detail := strings.TrimSpace(p.Find(`[data-action="image.create"] td`).Last().Text()); detail != "plane-demo:latest" {
		t.Errorf("image.create detail %q", detail)
	}
}

// Each action reads in words, with its name beside; a backend's entries
// link to it.
func TestActivityLabels(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	tests := []struct {
		action plane.Action
		target string
		label  string
	}{
		{plane.ActionBackendDisconnect, "abc123def456gh", "Users disconnected"},
		{plane.ActionBackendKeepAlive, "abc123def456gh", "Backend kept alive"},
		{plane.ActionWebhookCreate, "webhook 1 (https://hooks.example.com/in)", "Webhook added"},
		{plane.ActionWebhookDelete, "webhook 1 (https://hooks.example.com/in)", "Webhook deleted"},
		{plane.ActionWebhookRetry, "webhook 1 (https://hooks.example.com/in)", "Webhook delivery retried"},
		{"backend.teleport", "abc123def456gh", "backend.teleport"}, // unknown: as stored
	}
	for _, tt := range tests {
		a := &plane.Activity{ProjectID: pr.ID, Time: time.Now(), Actor: plane.Actor{Name: "ci"}, Action: tt.action, Target: tt.target}
		if err := d.db.RecordActivity(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	p := b.get(base + "/activity")
	for _, tt := range tests {
		row := p.Find(`[data-testid="activity-row"][data-action="` + string(tt.action) + `"]`)
		if got := strings.Join(strings.Fields(row.Find(testid("activity-action")).Text()), " "); !strings.HasPrefix(got, tt.label) || !strings.HasSuffix(got, string(tt.action)) {
			t.Errorf("%s reads %q, want %q", tt.action, got, tt.label)
		}
		href, linked := row.Find(testid("activity-target") + " a").Attr("href")
		if backend := strings.HasPrefix(string(tt.action), "backend."); linked != backend || backend && href != base+"/backends/"+tt.target {
			t.Errorf("%s: target link %q", tt.action, href)
		}
	}
}
