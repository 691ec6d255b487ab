package server_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"plane"
	"plane/server"
)

func TestSignup(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
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

// After login, next sends the browser to a page of this site only. Each
// value goes over the wire as raw (the query string or form body as sent),
// and Echo decodes it: "/%09/evil.example" arrives as "/\t/evil.example",
// which a browser would follow to //evil.example, another host.
func TestLoginNextStaysOnSite(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	d.signup("ada@example.com")
	signedIn := d.browser()
	signedIn.post("/login", url.Values{"email": {"ada@example.com"}, "password": {"correct horse"}})
	tests := []struct {
		name, raw string // raw: the value as sent, already encoded
		want      string
	}{
		{"tab, encoded", "/%09/evil.example", "/projects"},
		{"tab", url.QueryEscape("/\t/evil.example"), "/projects"},
		{"line breaks", "/%0D%0A/evil.example", "/projects"},
		{"NUL", "/%00/evil.example", "/projects"},
		{"DEL", "/%7F/evil.example", "/projects"},
		{"scheme-relative", "//evil.example/", "/projects"},
		{"slash backslash", url.QueryEscape("/\\evil.example"), "/projects"},
		{"two backslashes", url.QueryEscape("\\\\evil.example"), "/projects"},
		{"backslash later", url.QueryEscape("/ok\\..\\evil"), "/projects"},
		{"absolute URL", url.QueryEscape("https://evil.example/"), "/projects"},
		{"javascript", url.QueryEscape("javascript:alert(1)"), "/projects"},
		{"no slash", "projects", "/projects"},
		{"empty", "", "/projects"},
		// %2F decodes to "/": the value is "///evil.example".
		{"encoded slashes", "/%2F%2Fevil.example", "/projects"},
		// Encoded twice, the value keeps %2F: a path of this site.
		{"encoded slashes kept in the path", url.QueryEscape("/%2F%2Fevil.example"), "/%2F%2Fevil.example"},
		{"a page of ours", url.QueryEscape("/ok/path?x=1"), "/ok/path?x=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := d.browser()
			body := url.Values{"email": {"ada@example.com"}, "password": {"correct horse"}, "_csrf": {b.csrf()}}.Encode()
			if p := b.postBody("/login", body+"&next="+tt.raw); p.status() != http.StatusSeeOther || p.location() != tt.want {
				t.Errorf("log in with next=%s: %d to %q, want %q", tt.raw, p.status(), p.location(), tt.want)
			}
			// The login page of the signed-in sends them on at once.
			if p := signedIn.get("/login?next=" + tt.raw); p.status() != http.StatusSeeOther || p.location() != tt.want {
				t.Errorf("GET /login?next=%s signed in: %d to %q, want %q", tt.raw, p.status(), p.location(), tt.want)
			}
		})
	}
}

func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
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

// Two controllers of one cluster count the same failed logins and accept
// the same session: a client that moves between them (a load balancer
// without stickiness) neither escapes the limit nor gets logged out.
func TestLoginAcrossControllers(t *testing.T) {
	t.Parallel()
	a := newDash(t)
	b := a.twin()
	a.signup("ada@example.com")
	a.signup("bob@example.com")

	// A session made on a is good on b.
	bob := a.browser()
	if p := bob.post("/login", url.Values{"email": {"bob@example.com"}, "password": {"correct horse"}}); p.status() != http.StatusSeeOther {
		t.Fatalf("log in on a: %d", p.status())
	}
	bob.d = b
	if p := bob.get("/projects"); p.status() != http.StatusOK {
		t.Fatalf("the session of a on b: %d, want 200", p.status())
	}

	// Failures on a and on b add up.
	for i := range 5 {
		c := []*dash{a, b}[i%2].browser()
		if p := c.post("/login", url.Values{"email": {"ada@example.com"}, "password": {"nope nope"}}); p.status() != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i+1, p.status())
		}
	}
	for _, d := range []*dash{a, b} {
		if p := d.browser().post("/login", url.Values{"email": {"ada@example.com"}, "password": {"correct horse"}}); p.status() != http.StatusTooManyRequests {
			t.Errorf("the right password on %s after five failures spread over both: %d, want 429", d.url, p.status())
		}
	}
}

// The per-client limit keys on the connection's peer: a client cannot
// escape it by sending a new X-Forwarded-For (or X-Real-IP) with each try.
// Only a configured proxy is believed about the client's address.
func TestLoginRateLimitClientAddress(t *testing.T) {
	t.Parallel() // it waits more than it works
	tests := []struct {
		name    string
		trusted []string // TrustedProxies
		want    int      // the sixth failed login from "another" client
	}{
		{"no trusted proxy: headers ignored", nil, http.StatusTooManyRequests},
		{"peer is not a trusted proxy", []string{"10.0.0.0/8", "192.168.0.0/16"}, http.StatusTooManyRequests},
		{"peer is a trusted proxy", []string{"127.0.0.0/8"}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // a dashboard of its own each
			d := newDash(t, func(c *server.Config) {
				for _, s := range tt.trusted {
					c.TrustedProxies = append(c.TrustedProxies, netip.MustParsePrefix(s))
				}
			})
			b := d.browser()
			try := func(i int) int {
				ip := fmt.Sprintf("203.0.113.%d", i)
				b.header = http.Header{"X-Forwarded-For": {ip}, "X-Real-Ip": {ip}}
				// A new address each time, so that only the client's limit can bite.
				return b.post("/login", url.Values{"email": {fmt.Sprintf("u%d@example.com", i)}, "password": {"nope nope"}}).status()
			}
			for i := range 5 {
				if got := try(i + 1); got != http.StatusUnauthorized {
					t.Fatalf("attempt %d: %d, want 401", i+1, got)
				}
			}
			if got := try(6); got != tt.want {
				t.Fatalf("sixth attempt: %d, want %d", got, tt.want)
			}
		})
	}
}

// A session id the browser had before login (planted by an attacker, say)
// is not the one it has after: login issues a new one and ends the old.
func TestLoginRotatesSession(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
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

// A CSRF token is bound to the browser's session (before sign-in, to its
// pre-session cookie): a token of another session or cookie, one of the
// browser's own from before login, or a cookie and token of an attacker's
// choosing (a sibling host of the same domain can set cookies) are all
// refused, and change nothing.
func TestCSRFBoundToSession(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	ada, bob := d.signup("ada@example.com"), d.signup("bob@example.com")
	bobTeam, _ := bob.get("/projects").Find(`select[name="team_id"] option`).First().Attr("value")

	// Carol's token from the login page, before she logs in.
	d.signup("carol@example.com")
	carol := d.browser()
	preLogin := carol.csrf()
	if p := carol.post("/login", url.Values{"email": {"carol@example.com"}, "password": {"correct horse"}}); p.status() != http.StatusSeeOther {
		t.Fatalf("carol's login: %d", p.status())
	}
	carolTeam, _ := carol.get("/projects").Find(`select[name="team_id"] option`).First().Attr("value")

	// Two signed-out browsers, each with its own pre-session cookie.
	eve, frank := d.browser(), d.browser()
	eveToken := eve.csrf()
	frank.csrf()

	// Cookies planted by a sibling host, with the token to match them, as
	// a double-submit check would want.
	const planted = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	mallory := d.signup("mallory@example.com")
	malloryTeam, _ := mallory.get("/projects").Find(`select[name="team_id"] option`).First().Attr("value")
	mallory.setCookie("plane_csrf", planted)
	gina := d.browser()
	gina.setCookie("plane_csrf", planted)

	login := func(email string) url.Values {
		return url.Values{"email": {email}, "password": {"correct horse"}}
	}
	project := func(team, name string) url.Values { return url.Values{"team_id": {team}, "name": {name}} }
	tests := []struct {
		name   string
		b      *browser
		path   string
		form   url.Values
		token  string      // "own": the browser's own token
		header http.Header // sent as well
		want   int
	}{
		{"session A's token with session B's cookie", bob, "/projects", project(bobTeam, "sneaky-a"), ada.csrf(), nil, http.StatusForbidden},
		{"a token from before login", carol, "/projects", project(carolTeam, "sneaky-b"), preLogin, nil, http.StatusForbidden},
		{"another browser's pre-session token", frank, "/login", login("ada@example.com"), eveToken, nil, http.StatusForbidden},
		{"planted cookie and token, signed in", mallory, "/projects", project(malloryTeam, "sneaky-c"), planted, nil, http.StatusForbidden},
		{"planted cookie and token, signed out", gina, "/login", login("ada@example.com"), planted, nil, http.StatusForbidden},
		{"own token from another site", bob, "/projects", project(bobTeam, "sneaky-d"), "own", http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"own token from a sibling host", bob, "/projects", project(bobTeam, "sneaky-e"), "own", http.Header{"Sec-Fetch-Site": {"same-site"}}, http.StatusForbidden},
		{"own token", bob, "/projects", project(bobTeam, "fine-a"), "own", nil, http.StatusSeeOther},
		{"own token after login", carol, "/projects", project(carolTeam, "fine-b"), "own", http.Header{"Sec-Fetch-Site": {"same-origin"}}, http.StatusSeeOther},
		{"own token in the htmx header", bob, "/projects", project(bobTeam, "fine-c"), "header", nil, http.StatusSeeOther},
		{"own pre-session token", eve, "/login", login("ada@example.com"), "own", nil, http.StatusSeeOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{}
			for k, v := range tt.form {
				form[k] = v
			}
			switch tt.token {
			case "own":
				form.Set("_csrf", tt.b.csrf())
			case "header":
				tt.header = http.Header{"X-Csrf-Token": {tt.b.csrf()}}
			default:
				form.Set("_csrf", tt.token)
			}
			session := tt.b.cookie("plane_session")
			tt.b.header = tt.header
			defer func() { tt.b.header = nil }()
			p := tt.b.postRaw(tt.path, form)
			if p.status() != tt.want {
				t.Fatalf("status %d, want %d", p.status(), tt.want)
			}
			if tt.want != http.StatusForbidden {
				return
			}
			if !strings.Contains(p.text(testid("error-message")), "reload the page") {
				t.Errorf("message %q", p.text(testid("error-message")))
			}
			if name := tt.form.Get("name"); name != "" {
				if _, err := d.db.FindProjectByName(context.Background(), name); plane.ErrorCodeOf(err) != plane.ENOTFOUND {
					t.Errorf("the refused post created project %s (err %v)", name, err)
				}
			}
			if got := tt.b.cookie("plane_session"); got != session {
				t.Errorf("the refused post changed the session: %q → %q", session, got)
			}
		})
	}
}

// CSRF tokens come from the controller's signing key: a form loaded before
// a restart still posts after it, and a controller with another key
// refuses it.
func TestCSRFSurvivesRestart(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	ada := d.signup("ada@example.com")
	team, _ := ada.get("/projects").Find(`select[name="team_id"] option`).First().Attr("value")
	token := ada.csrf()
	_, otherKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  ed25519.PrivateKey
		want int
	}{
		{"same signing key", d.s.ConnectKey, http.StatusSeeOther},
		{"another signing key", otherKey, http.StatusForbidden},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := d.s.Config
			cfg.ConnectKey = tt.key
			hs := httptest.NewServer(server.New(cfg).Handler())
			defer hs.Close()
			// The same browser (cookies are not kept apart by port).
			b := &browser{t: t, d: &dash{t: t, db: d.db, url: hs.URL}, c: ada.c, jar: ada.jar}
			name := fmt.Sprintf("after-restart-%d", i)
			if p := b.postRaw("/projects", url.Values{"_csrf": {token}, "team_id": {team}, "name": {name}}); p.status() != tt.want {
				t.Fatalf("post with a token from before: %d, want %d", p.status(), tt.want)
			}
		})
	}
}

func TestSignedOutRedirects(t *testing.T) {
	t.Parallel()
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
