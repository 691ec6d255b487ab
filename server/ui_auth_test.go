package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestSignup(t *testing.T) {
	d := newDash(t)
	b := d.browser()
	p := b.get("/signup")
	if p.status() != http.StatusOK || p.Find(testid("first-user")).Length() != 1 {
		t.Fatalf("sign-up page: %d, first-user notice %d", p.status(), p.Find(testid("first-user")).Length())
	}
	if p.Find(`input[name="_csrf"]`).Length() != 1 {
		t.Fatal("the sign-up form has no CSRF field")
	}
	p = b.post("/signup", url.Values{"email": {"ada@example.com"}, "name": {"Ada"}, "password": {"correct horse"}})
	if p.status() != http.StatusSeeOther || !strings.HasPrefix(p.location(), "/projects") {
		t.Fatalf("sign up: %d to %q", p.status(), p.location())
	}
	if b.cookie("plane_session") == "" {
		t.Fatal("signed up without a session cookie")
	}
	if !d.user("ada@example.com").Admin {
		t.Error("the first user is not an admin")
	}
	home := b.get("/projects")
	if got := home.text(testid("current-user")); got != "Ada" {
		t.Errorf("signed in as %q, want Ada", got)
	}
	if home.Find(testid("nav-admin")).Length() != 1 {
		t.Error("the admin sees no Admin link")
	}
	if !strings.Contains(home.text(`[data-testid^="team-"] h2`), "Ada") {
		t.Errorf("no personal team on the projects page: %q", home.text(`[data-testid^="team-"] h2`))
	}
	d.signup("bob@example.com")
	if d.user("bob@example.com").Admin {
		t.Error("the second user is an admin")
	}
}

func TestSignupErrors(t *testing.T) {
	d := newDash(t)
	d.signup("taken@example.com")
	tests := []struct {
		name, email, password string
		field, want           string
	}{
		{"no email", "", "correct horse", "email", "enter your email address"},
		{"bad email", "not-an-address", "correct horse", "email", "is not an email address"},
		{"short password", "new@example.com", "short", "password", "at least 8 characters"},
		{"taken email", "TAKEN@example.com", "correct horse", "email", "exists already"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := d.browser()
			p := b.post("/signup", url.Values{"email": {tt.email}, "name": {"Someone"}, "password": {tt.password}})
			if p.status() != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422", p.status())
			}
			if got := p.text(testid("error-" + tt.field)); !strings.Contains(got, tt.want) {
				t.Errorf("error next to %s = %q, want %q", tt.field, got, tt.want)
			}
			if got, _ := p.Find(testid("field-email")).Attr("value"); got != tt.email {
				t.Errorf("email field keeps %q, want %q", got, tt.email)
			}
			if got, _ := p.Find(testid("field-name")).Attr("value"); got != "Someone" {
				t.Errorf("name field keeps %q", got)
			}
			if b.cookie("plane_session") != "" {
				t.Error("a failed sign-up signed in")
			}
		})
	}
}

func TestLogin(t *testing.T) {
	d := newDash(t)
	d.signup("ada@example.com")
	tests := []struct {
		name, email, password string
		status                int
	}{
		{"right", "ada@example.com", "correct horse", http.StatusSeeOther},
		{"email case ignored", "ADA@example.com", "correct horse", http.StatusSeeOther},
		{"wrong password", "ada@example.com", "wrong horse", http.StatusUnauthorized},
		{"unknown email", "nobody@example.com", "correct horse", http.StatusUnauthorized},
		{"empty", "", "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := d.browser()
			p := b.post("/login", url.Values{"email": {tt.email}, "password": {tt.password}, "next": {"/projects?x=1"}})
			if p.status() != tt.status {
				t.Fatalf("status %d, want %d", p.status(), tt.status)
			}
			if tt.status == http.StatusSeeOther {
				if p.location() != "/projects?x=1" || b.cookie("plane_session") == "" {
					t.Errorf("to %q, session %q", p.location(), b.cookie("plane_session"))
				}
				return
			}
			if got := p.text(testid("form-error")); got != "Wrong email or password." {
				t.Errorf("error %q", got)
			}
			if got, _ := p.Find(testid("field-email")).Attr("value"); got != tt.email {
				t.Errorf("email kept as %q, want %q", got, tt.email)
			}
			if v, ok := p.Find(testid("field-password")).Attr("value"); ok && v != "" {
				t.Error("the password is sent back")
			}
		})
	}
}

func TestLoginNextStaysOnSite(t *testing.T) {
	d := newDash(t)
	d.signup("ada@example.com")
	for _, next := range []string{"https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"} {
		b := d.browser()
		p := b.post("/login", url.Values{"email": {"ada@example.com"}, "password": {"correct horse"}, "next": {next}})
		if p.location() != "/projects" {
			t.Errorf("next %q sent to %q, want /projects", next, p.location())
		}
	}
}

func TestLoginRateLimit(t *testing.T) {
	d := newDash(t)
	d.signup("ada@example.com")
	b := d.browser()
	for i := range 5 {
		if p := b.post("/login", url.Values{"email": {"ada@example.com"}, "password": {"nope nope"}}); p.status() != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i+1, p.status())
		}
	}
	// Now even the right password waits: the limit is per address.
	p := d.browser().post("/login", url.Values{"email": {"ada@example.com"}, "password": {"correct horse"}})
	if p.status() != http.StatusTooManyRequests || p.resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d Retry-After %q, want 429 with Retry-After", p.status(), p.resp.Header.Get("Retry-After"))
	}
	if !strings.Contains(p.text(testid("form-error")), "Too many failed attempts") {
		t.Errorf("error %q", p.text(testid("form-error")))
	}
}

// A session id the browser had before login (planted by an attacker, say)
// is not the one it has after: login issues a new one and ends the old.
func TestLoginRotatesSession(t *testing.T) {
	d := newDash(t)
	b := d.signup("ada@example.com")
	before := b.cookie("plane_session")
	p := b.post("/login", url.Values{"email": {"ada@example.com"}, "password": {"correct horse"}})
	after := b.cookie("plane_session")
	if p.status() != http.StatusSeeOther || after == "" || after == before {
		t.Fatalf("login: %d, session %q → %q: want a new id", p.status(), before, after)
	}
	old := d.browser()
	old.setCookie("plane_session", before)
	if p := old.get("/projects"); p.status() != http.StatusSeeOther || !strings.HasPrefix(p.location(), "/login") {
		t.Fatalf("the session from before login still works: %d %q", p.status(), p.location())
	}

	// A planted, made-up id gets the same treatment.
	c := d.browser()
	c.setCookie("plane_session", "planted-by-someone-else-0123456789abcdefghijk")
	c.post("/login", url.Values{"email": {"ada@example.com"}, "password": {"correct horse"}})
	if got := c.cookie("plane_session"); got == "" || strings.HasPrefix(got, "planted") {
		t.Fatalf("session after login %q", got)
	}
}

func TestLogout(t *testing.T) {
	d := newDash(t)
	b := d.signup("ada@example.com")
	secret := b.cookie("plane_session")
	if p := b.post("/logout", nil); p.status() != http.StatusSeeOther || p.location() != "/login" {
		t.Fatalf("logout: %d %q", p.status(), p.location())
	}
	if b.cookie("plane_session") != "" {
		t.Error("the session cookie stays after logout")
	}
	again := d.browser()
	again.setCookie("plane_session", secret)
	if p := again.get("/projects"); p.status() != http.StatusSeeOther {
		t.Fatalf("the session works after logout: %d", p.status())
	}
}

// Every state-changing form needs the CSRF token; without it nothing
// changes.
func TestCSRF(t *testing.T) {
	d := newDash(t)
	b := d.signup("ada@example.com")
	team, _ := b.get("/projects").Find(`select[name="team_id"] option`).First().Attr("value")
	tests := []struct {
		name  string
		token []string
	}{
		{"missing", nil},
		{"wrong", []string{"not-the-token"}},
		{"empty", []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"team_id": {team}, "name": {"sneaky"}}
			if tt.token != nil {
				form["_csrf"] = tt.token
			}
			p := b.postRaw("/projects", form)
			if p.status() != http.StatusForbidden {
				t.Fatalf("status %d, want 403", p.status())
			}
			if !strings.Contains(p.text(testid("error-message")), "reload the page") {
				t.Errorf("message %q", p.text(testid("error-message")))
			}
		})
	}
	if p := b.get("/projects"); strings.Contains(p.body, "sneaky") {
		t.Fatal("a post without a valid CSRF token created a project")
	}
	// Logging in needs the token too, so no other site can sign you in.
	if p := d.browser().postRaw("/login", url.Values{"email": {"ada@example.com"}, "password": {"correct horse"}}); p.status() != http.StatusForbidden {
		t.Fatalf("login without token: %d", p.status())
	}
}

func TestSignedOutRedirects(t *testing.T) {
	d := newDash(t)
	b := d.browser()
	for _, path := range []string{"/", "/projects", "/projects/1/backends", "/admin/drones"} {
		p := b.get(path)
		if p.status() != http.StatusSeeOther || !strings.HasPrefix(p.location(), "/login") {
			t.Errorf("GET %s signed out: %d %q", path, p.status(), p.location())
		}
	}
	if p := b.get("/projects/1/backends"); p.location() != "/login?next=%2Fprojects%2F1%2Fbackends" {
		t.Errorf("next not kept: %q", p.location())
	}
}
