package server_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"plane"
	"plane/auth"
	"plane/server"
	"plane/server/dispatch"
	"plane/server/sqlite"
)

// dash is a controller's HTTP side on a real sqlite file and a real
// in-process NATS server, for the dashboard's handler tests. Drones are
// played by fakeDrone, which answers requests the way a drone does.
type dash struct {
	t   testing.TB
	db  *sqlite.DB
	cfg server.Config
	s   *server.Server
	nc  *nats.Conn
	url string

	mu       sync.Mutex
	requests []string // subjects the fake drones were sent
}

// The minimum cost: tests hash many passwords. Set once, before any test
// runs, as some run in parallel.
func init() { auth.BcryptCost = 4 }

// newDash starts a controller's HTTP side; edits change its config first.
func newDash(t testing.TB, edits ...func(*server.Config)) *dash {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "plane.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats did not start")
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := &dispatch.Dispatcher{NC: nc, Backends: db, Drones: db, Logger: log, RequestTimeout: 2 * time.Second}
	if err := d.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	key, err := auth.LoadOrCreateKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		Projects: db, Images: db, Backends: db, Drones: db, Tokens: db, Users: db, Teams: db, Activity: db,
		Auth: &auth.Authenticator{Key: key.Public().(ed25519.PublicKey), Tokens: db}, Dispatch: d,
		ConnectKey: key, Logger: log,
	}
	for _, edit := range edits {
		edit(&cfg)
	}
	s := server.New(cfg)
	d.Applier = s.Core()
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return &dash{t: t, db: db, cfg: cfg, s: s, nc: nc, url: hs.URL}
}

// twin starts a second controller's HTTP side on d's store, NATS and
// signing key: another controller of the same cluster.
func (d *dash) twin() *dash {
	d.t.Helper()
	s := server.New(d.cfg)
	hs := httptest.NewServer(s.Handler())
	d.t.Cleanup(hs.Close)
	return &dash{t: d.t, db: d.db, cfg: d.cfg, s: s, nc: d.nc, url: hs.URL}
}

// fakeDrone records a drone with a fresh heartbeat and answers its
// requests with success.
func (d *dash) fakeDrone(id string) {
	d.t.Helper()
	now := time.Now()
	if err := d.db.UpsertDrone(context.Background(), &plane.Drone{ID: id, Address: "127.0.0.1", Version: "test", ProtocolVersion: plane.ProtocolVersion, Capacity: 10, LastHeartbeat: now, Images: []string{"plane-demo:latest"}}); err != nil {
		d.t.Fatal(err)
	}
	sub, err := d.nc.Subscribe("plane.drone."+id+".*", func(m *nats.Msg) {
		d.mu.Lock()
		d.requests = append(d.requests, m.Subject)
		d.mu.Unlock()
		data, _ := json.Marshal(plane.Reply{})
		_ = m.Respond(data)
	})
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// sent lists the subjects sent to fake drones so far.
func (d *dash) sent() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.requests...)
}

// browser is a cookie-keeping client that does not follow redirects, so
// tests see each answer.
type browser struct {
	t   testing.TB
	d   *dash
	c   *http.Client
	jar *cookiejar.Jar
	// header is added to every request.
	header http.Header

	// token is the CSRF token of the page last read for it, while the
	// cookies are tokenFor.
	token, tokenFor string
}

func (d *dash) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		d.t.Fatal(err)
	}
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{t: d.t, d: d, c: c, jar: jar}
}

// page is an answer with its parsed HTML.
type page struct {
	*goquery.Document
	resp *http.Response
	body string
}

// status returns the answer's status code.
func (p *page) status() int { return p.resp.StatusCode }

// location is where a redirect points.
func (p *page) location() string { return p.resp.Header.Get("Location") }

// text is the trimmed text of the first element matching sel.
func (p *page) text(sel string) string { return strings.TrimSpace(p.Find(sel).First().Text()) }

// testid selects by data-testid.
func testid(id string) string { return `[data-testid="` + id + `"]` }

func (b *browser) do(req *http.Request) *page {
	b.t.Helper()
	req.Header.Set("Accept", "text/html")
	for k, v := range b.header {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(string(raw)))
	if err != nil {
		b.t.Fatal(err)
	}
	return &page{Document: doc, resp: resp, body: string(raw)}
}

func (b *browser) get(path string) *page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.d.url+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// cookie returns the value of the browser's cookie name ("" when none).
func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.d.url)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// setCookie plants a cookie, as another site or an attacker might.
func (b *browser) setCookie(name, value string) {
	u, _ := url.Parse(b.d.url)
	b.jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// csrf returns the CSRF token that the browser's pages carry now, read
// from a page the first time and again whenever its cookies change.
func (b *browser) csrf() string {
	b.t.Helper()
	cookies := func() string { return b.cookie("plane_session") + " " + b.cookie("plane_csrf") }
	if b.token != "" && b.tokenFor == cookies() {
		return b.token
	}
	p := b.get("/login")
	if p.status() == http.StatusSeeOther { // signed in: the login page sends us on
		p = b.get("/projects")
	}
	tok, _ := p.Find(`meta[name="csrf-token"]`).Attr("content")
	if tok == "" {
		b.t.Fatalf("no CSRF token on %s (%d)", p.resp.Request.URL.Path, p.status())
	}
	b.token, b.tokenFor = tok, cookies()
	return tok
}

// post sends a form with the CSRF token a page of ours would carry.
func (b *browser) post(path string, form url.Values) *page {
	b.t.Helper()
	f := url.Values{"_csrf": {b.csrf()}}
	for k, v := range form {
		f[k] = v
	}
	return b.postRaw(path, f)
}

// postRaw sends a form as it is, CSRF token or not.
func (b *browser) postRaw(path string, form url.Values) *page {
	b.t.Helper()
	return b.postBody(path, form.Encode())
}

// postBody sends a form body exactly as given.
func (b *browser) postBody(path, body string) *page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.d.url+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// signup creates an account in a new browser, signed in.
func (d *dash) signup(email string) *browser {
	d.t.Helper()
	b := d.browser()
	p := b.post("/signup", url.Values{"email": {email}, "name": {strings.Split(email, "@")[0]}, "password": {"correct horse"}})
	if p.status() != http.StatusSeeOther {
		d.t.Fatalf("sign up %s: %d %s", email, p.status(), p.text(testid("form-error"))+p.Find(".field-error").Text())
	}
	return b
}

// user returns the stored account of email.
func (d *dash) user(email string) *plane.User {
	d.t.Helper()
	u, err := d.db.FindUserByEmail(context.Background(), email)
	if err != nil {
		d.t.Fatal(err)
	}
	return u
}

// project creates a project through the form, in the browser's first
// team, and returns it.
func (b *browser) project(name string) *plane.Project {
	b.t.Helper()
	list := b.get("/projects")
	team, _ := list.Find(`select[name="team_id"] option`).First().Attr("value")
	p := b.post("/projects", url.Values{"team_id": {team}, "name": {name}})
	if p.status() != http.StatusSeeOther {
		b.t.Fatalf("create project %s: %d %s", name, p.status(), p.Find(".field-error").Text())
	}
	pr, err := b.d.db.FindProjectByName(context.Background(), name)
	if err != nil {
		b.t.Fatal(err)
	}
	return pr
}

// image registers an image in a project, straight in the store.
func (d *dash) image(projectID int64, name string) *plane.Image {
	d.t.Helper()
	ref := "plane-demo:latest"
	img, err := plane.NewImage(projectID, plane.ImageInput{Name: &name, Ref: &ref})
	if err != nil {
		d.t.Fatal(err)
	}
	if err := d.db.CreateImage(context.Background(), img); err != nil {
		d.t.Fatal(err)
	}
	return img
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
