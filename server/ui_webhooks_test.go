package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"plane"
)

// hooksProject is a signed-in owner with a project, an image and a drone,
// on a controller that sends webhooks (to private addresses too, so that a
// receiver on loopback gets them).
func hooksProject(t *testing.T) (*dash, *browser, *plane.Project, string) {
	t.Helper()
	d := newDash(t, withHooks(fastHooks, true))
	b := d.signup("ada@example.com")
	pr := b.project("app")
	d.image(pr.ID, "demo")
	d.fakeDrone("d1")
	return d, b, pr, "/projects/" + id(pr.ID)
}

// createWebhookForm adds a webhook through the form and returns the page
// that answers.
func (b *browser) createWebhookForm(base string, form url.Values) *page {
	b.t.Helper()
	p := b.post(base+"/webhooks", form)
	if p.status() != http.StatusCreated {
		b.t.Fatalf("create webhook: %d %q %q", p.status(), p.text(testid("form-error")), p.Find(".field-error").Text())
	}
	return p
}

// The secret is on the answer to the form and on no page after; the list
// shows the URL without its query.
func TestCreateWebhookForm(t *testing.T) {
	t.Parallel()
	d, b, pr, base := hooksProject(t)
	p := b.get(base + "/webhooks")
	if p.status() != http.StatusOK || p.Find(testid("no-webhooks")).Length() != 1 || p.Find(`[data-testid="tab-webhooks"][aria-current]`).Length() != 1 {
		t.Fatalf("empty webhooks page: %d", p.status())
	}
	p = b.createWebhookForm(base, url.Values{"url": {" https://hooks.example.com/in?token=receiver-secret "}, "events": {"backend.user_left", "backend.status"}})
	secret := p.text(testid("webhook-secret"))
	if !strings.HasPrefix(secret, plane.WebhookSecretPrefix) || len(secret) < 40 {
		t.Fatalf("secret %q", secret)
	}
	if cc := p.resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	if copyBtn, _ := p.Find(testid("webhook-secret-copy")).Attr("data-copy"); copyBtn != "#webhook-secret" {
		t.Errorf("copy button copies %q", copyBtn)
	}
	ws, err := d.db.FindWebhooks(context.Background(), pr.ID)
	if err != nil || len(ws) != 1 {
		t.Fatalf("%d webhooks, %v", len(ws), err)
	}
	w := ws[0]
	if w.URL != "https://hooks.example.com/in?token=receiver-secret" || len(w.Events) != 2 || w.Events[0] != plane.ProjectEventBackendStatus || w.Secret != secret {
		t.Errorf("stored %+v", w)
	}

	list := b.get(base + "/webhooks")
	if list.Find(testid("webhook-secret-once")).Length() != 0 || strings.Contains(list.body, secret) {
		t.Fatal("the secret is shown again")
	}
	row := list.Find(`[data-testid="webhook-row"][data-webhook="` + id(w.ID) + `"]`)
	if got := strings.TrimSpace(row.Find(testid("webhook-link")).Text()); got != "https://hooks.example.com/in?…" {
		t.Errorf("URL shown as %q", got)
	}
	if strings.Contains(list.body, "receiver-secret") {
		t.Error("the list shows the URL's query")
	}
	if got := strings.TrimSpace(row.Find(testid("webhook-events")).Text()); got != "backend.status, backend.user_left" {
		t.Errorf("events %q", got)
	}
	if st, _ := row.Attr("data-state"); st != "active" {
		t.Errorf("state %q", st)
	}

	// None ticked: all of them.
	b.createWebhookForm(base, url.Values{"url": {"https://hooks.example.com/all"}})
	list = b.get(base + "/webhooks")
	if got := strings.TrimSpace(list.Find(testid("webhook-events")).Last().Text()); got != "all events" {
		t.Errorf("events of a webhook of all events %q", got)
	}
	acts := d.activity(pr.ID)
	if acts[0].Action != plane.ActionWebhookCreate || acts[1].Action != plane.ActionWebhookCreate || strings.Contains(acts[1].Target, "receiver-secret") {
		t.Errorf("activity %+v %+v", acts[0], acts[1])
	}
	if p := b.get(base + "/activity"); !strings.Contains(p.text(`[data-action="webhook.create"] `+testid("activity-action")), "Webhook added") {
		t.Errorf("activity label %q", p.text(`[data-action="webhook.create"] `+testid("activity-action")))
	}
}

func TestCreateWebhookFormErrors(t *testing.T) {
	t.Parallel()
	d := newDash(t, withHooks(fastHooks, false)) // private addresses refused
	b := d.signup("ada@example.com")
	pr := b.project("app")
	base := "/projects/" + id(pr.ID)
	tests := []struct {
		name  string
		form  url.Values
		field string
		want  string
	}{
		{"no URL", url.Values{"url": {""}}, "url", "required"},
		{"not http", url.Values{"url": {"ftp://hooks.example.com/"}}, "url", "https://"},
		{"with a password", url.Values{"url": {"https://u:p@hooks.example.com/"}}, "url", "user or password"},
		{"loopback", url.Values{"url": {"http://127.0.0.1:9/hook"}}, "url", ""},
		{"unknown event", url.Values{"url": {"https://hooks.example.com/"}, "events": {"backend.status", "backend.exploded"}}, "events", "backend.exploded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := b.post(base+"/webhooks", tt.form)
			if p.status() != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422", p.status())
			}
			if got := p.text(testid("error-" + tt.field)); got == "" || !strings.Contains(got, tt.want) {
				t.Errorf("error next to %s = %q, want %q (form error %q)", tt.field, got, tt.want, p.text(testid("form-error")))
			}
			if p.Find(testid("webhook-secret-once")).Length() != 0 {
				t.Error("a failed create shows a secret")
			}
			if v, _ := p.Find(`input[name="url"]`).Attr("value"); v != strings.TrimSpace(tt.form.Get("url")) {
				t.Errorf("URL kept as %q", v)
			}
			for _, e := range tt.form["events"] {
				if plane.ProjectEventType(e).Valid() && p.Find(`input[name="events"][value="`+e+`"][checked]`).Length() != 1 {
					t.Errorf("%s not kept ticked", e)
				}
			}
		})
	}
	if ws, _ := d.db.FindWebhooks(context.Background(), pr.ID); len(ws) != 0 {
		t.Errorf("%d webhooks stored", len(ws))
	}
}

// A spawn's event reaches the receiver; the webhook's page shows the
// delivery and its attempt, and sends it again on Retry.
func TestWebhookDeliveriesPage(t *testing.T) {
	t.Parallel()
	d, b, pr, base := hooksProject(t)
	runHooks(t, d.s.Core())
	rc := newHookReceiver(t, func(n int) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	p := b.createWebhookForm(base, url.Values{"url": {rc.URL + "/hook"}, "events": {"backend.status"}})
	rc.setSecret(p.text(testid("webhook-secret")))
	ws, _ := d.db.FindWebhooks(context.Background(), pr.ID)
	path := base + "/webhooks/" + id(ws[0].ID)

	empty := b.get(path)
	if empty.status() != http.StatusOK || empty.Find(testid("no-deliveries")).Length() != 1 {
		t.Fatalf("webhook page: %d", empty.status())
	}
	if got, _ := empty.Find(testid("deliveries-live")).Attr("hx-get"); got != path+"/deliveries" {
		t.Errorf("the deliveries poll %q", got)
	}
	if got := empty.text(testid("webhook-url")); got != rc.URL+"/hook" {
		t.Errorf("URL %q", got)
	}

	if p := b.post(base+"/backends", url.Values{"image": {"demo"}}); p.status() != http.StatusSeeOther {
		t.Fatalf("spawn: %d", p.status())
	}
	// The first attempt answers 503, the retry after it 204.
	var frag *page
	eventually(t, 10*time.Second, "the delivery delivered", func() bool {
		frag = b.get(path + "/deliveries")
		return frag.Find(`[data-testid="delivery-row"][data-status="delivered"]`).Length() == 1
	})
	if frag.status() != http.StatusOK || strings.Contains(frag.body, "<html") || !strings.Contains(frag.body, `name="_csrf"`) {
		t.Errorf("the fragment: %d %s", frag.status(), frag.body)
	}
	row := frag.Find(testid("delivery-row"))
	if got := strings.TrimSpace(row.Find(testid("delivery-event")).Text()); got != "backend.status" {
		t.Errorf("event %q", got)
	}
	var results []string
	row.Find(testid("attempt-result")).Each(func(_ int, s *goquery.Selection) {
		results = append(results, strings.TrimSpace(s.Text()))
	})
	if strings.Join(results, ",") != "HTTP 503,HTTP 204" {
		t.Errorf("attempts %v", results)
	}
	for i, m := range rc.messages() {
		if m.verified != nil {
			t.Errorf("message %d: %v", i, m.verified)
		}
	}

	// The page shows the same; Retry sends it again and logs who asked.
	page := b.get(path)
	if page.Find(testid("delivery-row")).Length() != 1 || page.Find(`[data-testid="webhook-state"]`).Text() != "active" {
		t.Fatalf("webhook page: %d deliveries, state %q", page.Find(testid("delivery-row")).Length(), page.Find(testid("webhook-state")).Text())
	}
	dID, _ := row.Attr("data-delivery")
	retry := b.post(path+"/deliveries/"+dID+"/retry", nil)
	if retry.status() != http.StatusSeeOther || retry.location() != path+"?flash=delivery-retried" {
		t.Fatalf("retry: %d %q", retry.status(), retry.location())
	}
	eventually(t, 10*time.Second, "the retried delivery", func() bool { return len(rc.messages()) == 3 })
	if acts := d.activity(pr.ID); acts[0].Action != plane.ActionWebhookRetry || !strings.Contains(acts[0].Detail, "delivery "+dID) {
		t.Errorf("activity %+v", acts[0])
	}
	if p := b.post(path+"/deliveries/999999/retry", nil); p.status() != http.StatusNotFound {
		t.Errorf("retry an unknown delivery: %d", p.status())
	}
}

// Delete asks first (data-confirm), then the webhook is gone, logged.
func TestDeleteWebhookForm(t *testing.T) {
	t.Parallel()
	d, b, pr, base := hooksProject(t)
	b.createWebhookForm(base, url.Values{"url": {"https://hooks.example.com/x"}})
	ws, _ := d.db.FindWebhooks(context.Background(), pr.ID)
	path := base + "/webhooks/" + id(ws[0].ID)
	list := b.get(base + "/webhooks")
	form := list.Find(testid("webhook-delete")).Closest("form")
	if action, _ := form.Attr("action"); action != path+"/delete" {
		t.Errorf("delete form posts to %q", action)
	}
	if c, _ := form.Attr("data-confirm"); c == "" {
		t.Error("delete does not confirm")
	}
	p := b.post(path+"/delete", nil)
	if p.status() != http.StatusSeeOther || p.location() != base+"/webhooks?flash=webhook-deleted" {
		t.Fatalf("delete: %d %q", p.status(), p.location())
	}
	if ws, _ := d.db.FindWebhooks(context.Background(), pr.ID); len(ws) != 0 {
		t.Errorf("%d webhooks left", len(ws))
	}
	if acts := d.activity(pr.ID); acts[0].Action != plane.ActionWebhookDelete || !strings.Contains(acts[0].Target, "hooks.example.com") {
		t.Errorf("activity %+v", acts[0])
	}
	if p := b.get(path); p.status() != http.StatusNotFound {
		t.Errorf("a deleted webhook's page: %d", p.status())
	}
	if p := b.post(path+"/delete", nil); p.status() != http.StatusNotFound {
		t.Errorf("delete it again: %d", p.status())
	}
}

// Another project's webhook is not found through one's own project, and
// another team's project not at all; a form without its CSRF token is
// refused and changes nothing.
func TestWebhooksOfAnotherProject(t *testing.T) {
	t.Parallel()
	d, ada, pr, base := hooksProject(t)
	runHooks(t, d.s.Core())
	rc := newHookReceiver(t, func(int) int { return http.StatusOK })
	ada.createWebhookForm(base, url.Values{"url": {rc.URL}})
	if p := ada.post(base+"/backends", url.Values{"image": {"demo"}}); p.status() != http.StatusSeeOther {
		t.Fatalf("spawn: %d", p.status())
	}
	ws, _ := d.db.FindWebhooks(context.Background(), pr.ID)
	hook := base + "/webhooks/" + id(ws[0].ID)
	var delivery string
	eventually(t, 10*time.Second, "a delivery", func() bool {
		delivery, _ = ada.get(hook + "/deliveries").Find(testid("delivery-row")).Attr("data-delivery")
		return delivery != ""
	})

	bob := d.signup("bob@example.com")
	bobBase := "/projects/" + id(bob.project("bobs").ID)
	theirs := bobBase + "/webhooks/" + id(ws[0].ID)
	for _, path := range []string{theirs, theirs + "/deliveries", hook, hook + "/deliveries", base + "/webhooks", bobBase + "/webhooks/x"} {
		if p := bob.get(path); p.status() != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, p.status())
		}
	}
	for _, path := range []string{theirs + "/delete", theirs + "/deliveries/" + delivery + "/retry", hook + "/delete", hook + "/deliveries/" + delivery + "/retry", base + "/webhooks"} {
		if p := bob.post(path, url.Values{"url": {"https://evil.example.com/"}}); p.status() != http.StatusNotFound {
			t.Errorf("POST %s: %d, want 404", path, p.status())
		}
	}

	// Without the CSRF token: 403, whoever posts.
	for _, path := range []string{base + "/webhooks", hook + "/delete", hook + "/deliveries/" + delivery + "/retry"} {
		if p := ada.postRaw(path, url.Values{"url": {"https://evil.example.com/"}}); p.status() != http.StatusForbidden {
			t.Errorf("POST %s without CSRF: %d, want 403", path, p.status())
		}
	}
	if ws, _ := d.db.FindWebhooks(context.Background(), pr.ID); len(ws) != 1 || ws[0].URL != rc.URL {
		t.Errorf("webhooks %+v", ws)
	}
	for _, a := range d.activity(pr.ID) {
		if a.Action == plane.ActionWebhookRetry || a.Action == plane.ActionWebhookDelete {
			t.Errorf("logged %+v", a)
		}
	}
	if n, _ := strconv.Atoi(delivery); n <= 0 {
		t.Errorf("delivery id %q", delivery)
	}
}

// A controller without webhooks says so on the page rather than failing.
func TestWebhooksUnavailable(t *testing.T) {
	t.Parallel()
	_, b, _, base := spawnedProject(t)
	p := b.get(base + "/webhooks")
	if p.status() != http.StatusOK || !strings.Contains(p.text(testid("webhooks-unavailable")), "no webhooks") || p.Find(testid("webhook-form")).Length() != 0 {
		t.Fatalf("webhooks page without webhooks: %d %q", p.status(), p.text(testid("webhooks-unavailable")))
	}
	if p := b.post(base+"/webhooks", url.Values{"url": {"https://hooks.example.com/"}}); p.status() != http.StatusUnprocessableEntity {
		t.Errorf("create without webhooks: %d", p.status())
	}
}
