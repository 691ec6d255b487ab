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

// createToken makes a token through the form and returns it as shown once.
func (b *browser) createToken(base string, form url.Values) string {
	b.t.Helper()
	p := b.post(base+"/tokens", form)
	tok := p.text(testid("token-value"))
	if p.status() != http.StatusCreated || tok == "" {
		b.t.Fatalf("create token: %d %s", p.status(), p.Find(".field-error").Text()+p.text(testid("form-error")))
	}
	return tok
}

func TestTokensPage(t *testing.T) {
	t.Parallel()
	_, b, _, base := spawnedProject(t)
	p := b.get(base + "/tokens")
	if p.status() != http.StatusOK || p.Find(testid("tokens")).Length() != 1 || p.Find(testid("no-tokens")).Length() != 1 {
		t.Fatalf("tokens page: %d", p.status())
	}
	if p.Find(testid("token-once")).Length() != 0 {
		t.Error("a token is shown with none created")
	}
	form := p.Find(testid("token-form"))
	for _, sc := range plane.AllScopes {
		if _, on := form.Find(`input[name="scopes"][value="` + string(sc) + `"]`).Attr("checked"); !on {
			t.Errorf("scope %s is not ticked by default", sc)
		}
	}
	var expiries []string
	form.Find(testid("field-expires") + " option").Each(func(_ int, o *goquery.Selection) {
		v, _ := o.Attr("value")
		expiries = append(expiries, v)
	})
	if strings.Join(expiries, " ") != "never 1 7 30 90" {
		t.Errorf("expiries %v", expiries)
	}
	if v, _ := form.Find(testid("field-expires") + " option[selected]").Attr("value"); v != "never" {
		t.Errorf("default expiry %q", v)
	}
}

func TestCreateToken(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	before := time.Now()
	p := b.post(base+"/tokens", url.Values{"name": {" ci "}, "scopes": {"images:read", "backends:read"}, "expires": {"7"}})
	if p.status() != http.StatusCreated {
		t.Fatalf("create: %d %s", p.status(), p.Find(".field-error").Text())
	}
	if cc := p.resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	signed := p.text(`[data-testid="token-once"] [data-testid="token-value"]`)
	if signed == "" {
		t.Fatal("the token is not shown")
	}
	row := p.Find(`[data-testid="token-row"][data-token="ci"]`)
	if row.Length() != 1 || strings.TrimSpace(row.Find(testid("token-last-used")).Text()) != "never" {
		t.Fatalf("row %q", row.Text())
	}
	toks, err := d.db.FindTokens(context.Background(), pr.ID)
	if err != nil || len(toks) != 1 {
		t.Fatalf("%d tokens, %v", len(toks), err)
	}
	tok := toks[0]
	if tok.Name != "ci" || len(tok.Scopes) != 2 || !tok.HasScope(plane.ScopeImagesRead) || !tok.HasScope(plane.ScopeBackendsRead) {
		t.Errorf("stored %+v", tok)
	}
	if tok.ExpiresAt == nil || tok.ExpiresAt.Sub(before) < 7*24*time.Hour-time.Second || tok.ExpiresAt.Sub(before) > 7*24*time.Hour+time.Minute {
		t.Errorf("expires %v", tok.ExpiresAt)
	}
	if act := d.activity(pr.ID)[0]; act.Action != plane.ActionTokenCreate || act.Target != "ci" || !strings.HasPrefix(act.Detail, "images:read backends:read, expires ") {
		t.Errorf("activity %+v", act)
	}

	// The token works with its scopes only, and its use shows.
	if status := d.api(signed, http.MethodGet, "/api/v1/images", ""); status != http.StatusOK {
		t.Errorf("list images with the new token: %d", status)
	}
	if status := d.api(signed, http.MethodPost, "/api/v1/images", `{"name": "x", "ref": "x"}`); status != http.StatusForbidden {
		t.Errorf("create an image without images:write: %d", status)
	}
	again := b.get(base + "/tokens")
	if again.Find(testid("token-once")).Length() != 0 || strings.Contains(again.body, signed) {
		t.Error("the token is shown again")
	}
	if used := strings.TrimSpace(again.Find(testid("token-last-used")).Text()); used == "never" || !strings.HasSuffix(used, "ago") {
		t.Errorf("last used %q", used)
	}
}

func TestCreateTokenErrors(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	tests := []struct {
		name  string
		form  url.Values
		field string
		want  string
	}{
		{"no name", url.Values{"name": {"  "}, "scopes": {"images:read"}, "expires": {"30"}}, "name", "give the token a name"},
		{"long name", url.Values{"name": {strings.Repeat("n", 101)}, "scopes": {"images:read"}, "expires": {"30"}}, "name", "at most 100"},
		{"no scope", url.Values{"name": {"ci"}, "expires": {"30"}}, "scopes", "tick at least one scope"},
		{"unknown scope", url.Values{"name": {"ci"}, "scopes": {"images:read", "root"}, "expires": {"30"}}, "scopes", `unknown scope "root"`},
		{"odd expiry", url.Values{"name": {"ci"}, "scopes": {"images:read"}, "expires": {"365"}}, "expires", "choose one of the offered lifetimes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := b.post(base+"/tokens", tt.form)
			form := wantFieldError(t, p, "token-form", tt.field, tt.want)
			if v, _ := form.Find(testid("field-name")).Attr("value"); v != tt.form.Get("name") {
				t.Errorf("name kept as %q", v)
			}
			for _, sc := range plane.AllScopes {
				_, on := form.Find(`input[name="scopes"][value="` + string(sc) + `"]`).Attr("checked")
				want := false
				for _, v := range tt.form["scopes"] {
					want = want || v == string(sc)
				}
				if on != want {
					t.Errorf("scope %s ticked: %v, want %v", sc, on, want)
				}
			}
			if v, _ := form.Find(testid("field-expires") + " option[selected]").Attr("value"); tt.field != "expires" && v != "30" {
				t.Errorf("expiry kept as %q", v)
			}
			if p.Find(testid("token-once")).Length() != 0 {
				t.Error("a token is shown")
			}
		})
	}
	if toks, _ := d.db.FindTokens(context.Background(), pr.ID); len(toks) != 0 {
		t.Errorf("%d tokens stored", len(toks))
	}
}

func TestRevokeToken(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	signed := b.createToken(base, url.Values{"name": {"ci"}, "scopes": {"images:read"}, "expires": {"never"}})
	p := b.get(base + "/tokens")
	revoke := p.Find(`[data-token="ci"] [data-testid="token-revoke"]`).Closest("form")
	action, _ := revoke.Attr("action")
	if confirm, _ := revoke.Attr("data-confirm"); !strings.Contains(confirm, "ci") {
		t.Errorf("revoke asks %q", confirm)
	}
	p = b.post(action, nil)
	if p.status() != http.StatusSeeOther || p.location() != base+"/tokens?flash=token-revoked" {
		t.Fatalf("revoke: %d %q", p.status(), p.location())
	}
	if status := d.api(signed, http.MethodGet, "/api/v1/images", ""); status != http.StatusUnauthorized {
		t.Errorf("a revoked token: %d", status)
	}
	p = b.get(base + "/tokens")
	row := p.Find(`[data-token="ci"]`)
	if st, _ := row.Attr("data-state"); st != "revoked" || row.Find(testid("token-revoke")).Length() != 0 {
		t.Errorf("revoked row: state %q, %d revoke buttons", st, row.Find(testid("token-revoke")).Length())
	}
	if act := d.activity(pr.ID)[0]; act.Action != plane.ActionTokenRevoke || act.Target != "ci" {
		t.Errorf("activity %+v", act)
	}

	// Another project's token is not found from this one.
	other := b.project("other")
	if p := b.post("/projects/"+id(other.ID)+"/tokens/"+strings.Split(strings.TrimPrefix(action, base+"/tokens/"), "/")[0]+"/revoke", nil); p.status() != http.StatusNotFound {
		t.Errorf("revoke through another project: %d", p.status())
	}
	if p := b.post(base+"/tokens/tok_nope/revoke", nil); p.status() != http.StatusNotFound {
		t.Errorf("revoke an unknown token: %d", p.status())
	}
}

// Another team's images, tokens and activity are not found.
func TestProjectTabsOfAnotherTeam(t *testing.T) {
	t.Parallel()
	d, ada, pr, base := spawnedProject(t)
	ada.createToken(base, url.Values{"name": {"ci"}, "scopes": {"images:read"}, "expires": {"never"}})
	toks, _ := d.db.FindTokens(context.Background(), pr.ID)
	bob := d.signup("bob@example.com")
	for _, path := range []string{base + "/images", base + "/images/demo/edit", base + "/tokens", base + "/activity"} {
		if p := bob.get(path); p.status() != http.StatusNotFound {
			t.Errorf("GET %s as a non-member: %d, want 404", path, p.status())
		}
	}
	for _, path := range []string{base + "/images", base + "/images/demo", base + "/images/demo/delete", base + "/images/demo/pull", base + "/tokens", base + "/tokens/" + toks[0].ID + "/revoke"} {
		if p := bob.post(path, url.Values{"name": {"x"}, "ref": {"x"}, "scopes": {"images:read"}, "expires": {"never"}}); p.status() != http.StatusNotFound {
			t.Errorf("POST %s as a non-member: %d, want 404", path, p.status())
		}
	}
	if imgs, _ := d.db.FindImages(context.Background(), pr.ID); len(imgs) != 1 {
		t.Errorf("%d images", len(imgs))
	}
	if toks, _ := d.db.FindTokens(context.Background(), pr.ID); len(toks) != 1 || toks[0].RevokedAt != nil {
		t.Errorf("tokens %+v", toks)
	}
	if len(d.sent()) != 0 {
		t.Errorf("drone requests %v", d.sent())
	}
}
