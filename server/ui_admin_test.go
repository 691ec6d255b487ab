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

// adminDash has an admin (the first user), a member and a drone.
func adminDash(t *testing.T) (d *dash, admin, member *browser) {
	t.Helper()
	d = newDash(t)
	admin = d.signup("root@example.com")
	member = d.signup("bob@example.com")
	if !d.user("root@example.com").Admin || d.user("bob@example.com").Admin {
		t.Fatal("the first user is not the only admin")
	}
	d.fakeDrone("d1")
	return d, admin, member
}

func TestAdminOnly(t *testing.T) {
	t.Parallel()
	d, _, member := adminDash(t)
	for _, path := range []string{"/admin", "/admin/drones", "/admin/drones/stream", "/admin/backends", "/admin/backends/stream", "/admin/users"} {
		p := member.get(path)
		if p.status() != http.StatusForbidden || !strings.Contains(p.text(testid("error-message")), "these pages are for the admins") {
			t.Errorf("GET %s as a member: %d %q", path, p.status(), p.text(testid("error-message")))
		}
	}
	for _, path := range []string{"/admin/drones/d1/drain", "/admin/drones/d1/undrain"} {
		if p := member.post(path, nil); p.status() != http.StatusForbidden {
			t.Errorf("POST %s as a member: %d", path, p.status())
		}
	}
	if len(d.sent()) != 0 {
		t.Errorf("drone requests %v", d.sent())
	}
	if p := member.get("/projects"); p.Find(testid("nav-admin")).Length() != 0 {
		t.Error("a member sees the admin link")
	}
	if p := d.browser().get("/admin/drones"); p.status() != http.StatusSeeOther || !strings.HasPrefix(p.location(), "/login?next=") {
		t.Errorf("signed out: %d %q", p.status(), p.location())
	}
}

func TestAdminDrones(t *testing.T) {
	t.Parallel()
	d, admin, _ := adminDash(t)
	expiry := time.Now().Add(60 * 24 * time.Hour)
	if err := d.db.UpsertDrone(context.Background(), &plane.Drone{ID: "d2", Address: "10.0.0.2", ProxyAddress: "10.0.0.2:443", Version: "v9",
		Capacity: 20, Backends: 3, CPUPercent: 12.5, MemoryBytes: 3 << 30, CertNotAfter: &expiry, CertError: "acme: rate limited",
		Status: plane.DroneLost, LastHeartbeat: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	p := admin.get("/admin/drones")
	if p.status() != http.StatusOK || p.Find(testid("drones")).Length() != 1 {
		t.Fatalf("drones page: %d", p.status())
	}
	if p.Find(`[data-testid="admin-tab-drones"][aria-current]`).Length() != 1 || p.Find(`[data-testid="nav-admin"][aria-current]`).Length() != 1 {
		t.Error("the drones tab is not the current one")
	}
	if url, _ := p.Find(testid("drones-live")).Attr("sse-connect"); url != "/admin/drones/stream" {
		t.Errorf("stream %q", url)
	}
	d1 := p.Find(`[data-testid="drone-row"][data-drone="d1"]`)
	if st, _ := d1.Attr("data-status"); st != "ready" || d1.Find(testid("drone-status")).Text() != "ready" {
		t.Errorf("d1 status %q", st)
	}
	if since, ok := d1.Find(testid("heartbeat-age")).Attr("data-since"); !ok || since == "" {
		t.Error("the heartbeat age does not tick")
	}
	if d1.Find(testid("drone-drain")).Length() != 1 || d1.Find(testid("drone-undrain")).Length() != 0 {
		t.Error("d1 has no drain button")
	}
	d2 := p.Find(`[data-testid="drone-row"][data-drone="d2"]`)
	for _, want := range []string{"10.0.0.2:443", "v9", "lost", "1 min ago", "12.5 %", "3.0 GiB", "acme: rate limited", "until " + expiry.UTC().Format("2006-01-02")} {
		if !strings.Contains(d2.Text(), want) {
			t.Errorf("d2 row lacks %q: %q", want, d2.Text())
		}
	}
	if got := strings.TrimSpace(d2.Find(testid("drone-backends")).Text()); got != "3 / 20" {
		t.Errorf("d2 backends %q", got)
	}
	if d2.Find(testid("drone-drain")).Length()+d2.Find(testid("drone-undrain")).Length() != 0 {
		t.Error("a lost drone can be drained")
	}

	drain := d1.Find(testid("drone-drain")).Closest("form")
	if confirm, _ := drain.Attr("data-confirm"); !strings.Contains(confirm, "d1") {
		t.Errorf("drain asks %q", confirm)
	}
	action, _ := drain.Attr("action")
	p = admin.post(action, nil)
	if p.status() != http.StatusSeeOther || p.location() != "/admin/drones?flash=drained" {
		t.Fatalf("drain: %d %q %s", p.status(), p.location(), p.text(testid("error-message")))
	}
	if sent := d.sent(); len(sent) != 1 || sent[0] != plane.SubjectDrain("d1") {
		t.Errorf("drone requests %v", sent)
	}
	p = admin.get("/admin/drones?flash=drained")
	d1 = p.Find(`[data-testid="drone-row"][data-drone="d1"]`)
	if st, _ := d1.Attr("data-status"); st != "draining" || d1.Find(testid("drone-undrain")).Length() != 1 || p.text(testid("flash")) == "" {
		t.Errorf("after drain: status %q, flash %q", st, p.text(testid("flash")))
	}
	action, _ = d1.Find(testid("drone-undrain")).Closest("form").Attr("action")
	if p := admin.post(action, nil); p.status() != http.StatusSeeOther || p.location() != "/admin/drones?flash=undrained" {
		t.Fatalf("undrain: %d %q", p.status(), p.location())
	}
	if dr, _ := d.db.FindDroneByID(context.Background(), "d1"); dr.Draining || dr.Status != plane.DroneReady {
		t.Errorf("after undrain %+v", dr)
	}
}

func TestAdminDrainErrors(t *testing.T) {
	t.Parallel()
	d, admin, _ := adminDash(t)
	if err := d.db.UpsertDrone(context.Background(), &plane.Drone{ID: "mute"}); err != nil {
		t.Fatal(err)
	}
	p := admin.post("/admin/drones/mute/drain", nil)
	if p.status() != http.StatusServiceUnavailable || !strings.Contains(p.text(testid("form-error")), "mute: drone did not answer") {
		t.Errorf("drain a mute drone: %d %q", p.status(), p.text(testid("form-error")))
	}
	if p.Find(testid("drones")).Length() != 1 {
		t.Error("no drones table with the error")
	}
	if dr, _ := d.db.FindDroneByID(context.Background(), "mute"); dr.Draining {
		t.Error("a drain the drone did not acknowledge was stored")
	}
	if p := admin.post("/admin/drones/nope/drain", nil); p.status() != http.StatusNotFound {
		t.Errorf("drain an unknown drone: %d", p.status())
	}
}

// stream is events with each event as its text: "event: <type>\n" and
// its data lines.
func (b *browser) stream(path string) func() string {
	b.t.Helper()
	next := b.events(path)
	return func() string {
		b.t.Helper()
		ev := next()
		return "event: " + ev.Type + "\ndata: " + strings.ReplaceAll(ev.Data, "\n", "\ndata: ") + "\n"
	}
}

// The drones table is sent at once, and again after each change the bus
// announces (a drain here; a heartbeat, the sweep's verdicts), or every two
// seconds for what changes with the clock alone.
func TestAdminDronesStream(t *testing.T) {
	t.Parallel()
	_, admin, _ := adminDash(t)
	next := admin.stream("/admin/drones/stream")
	if ev := next(); !strings.HasPrefix(ev, "event: rows\n") || !strings.Contains(ev, `data-drone="d1"`) || !strings.Contains(ev, `name="_csrf"`) {
		t.Fatalf("first event %q", ev)
	}
	if p := admin.post("/admin/drones/d1/drain", nil); p.status() != http.StatusSeeOther {
		t.Fatalf("drain: %d", p.status())
	}
	if ev := next(); !strings.Contains(ev, `data-status="draining"`) || !strings.Contains(ev, "drone-undrain") {
		t.Fatalf("after draining %q", ev)
	}
}

// Admins see every project's backends, live.
func TestAdminBackends(t *testing.T) {
	t.Parallel()
	d, admin, member := adminDash(t)
	pr := member.project("bobs")
	d.image(pr.ID, "demo")
	if p := member.post("/projects/"+id(pr.ID)+"/backends", url.Values{"image": {"demo"}}); p.status() != http.StatusSeeOther {
		t.Fatalf("spawn: %d", p.status())
	}
	p := admin.get("/admin/backends")
	if p.status() != http.StatusOK {
		t.Fatalf("backends page: %d", p.status())
	}
	rows := p.Find(`[data-testid="admin-backends"] ` + testid("backend-row"))
	if rows.Length() != 1 || strings.TrimSpace(rows.Find(testid("backend-project")).Text()) != "bobs" {
		t.Fatalf("%d rows: %q", rows.Length(), rows.Text())
	}
	if p := admin.get("/admin/backends?status=terminated"); p.Find(testid("backend-row")).Length() != 0 || p.Find(testid("no-backends")).Length() != 1 {
		t.Error("the terminated filter shows a live backend")
	}
	p = admin.get("/admin/backends?status=live")
	if url, _ := p.Find(testid("admin-backends-live")).Attr("sse-connect"); url != "/admin/backends/stream?status=live" {
		t.Errorf("stream %q", url)
	}
	if v, _ := p.Find(testid("filter-status") + " option[selected]").Attr("value"); v != "live" {
		t.Errorf("filter shows %q", v)
	}

	next := admin.stream("/admin/backends/stream?status=live")
	if ev := next(); !strings.Contains(ev, "bobs") {
		t.Fatalf("first event %q", ev)
	}
	bs, _ := d.db.FindBackends(context.Background(), plane.BackendFilter{ProjectID: &pr.ID})
	if _, _, err := d.s.Core().ApplyBackendEvent(context.Background(), plane.BackendEvent{BackendID: bs[0].ID, DroneID: "d1", Status: plane.StatusTerminated, Reason: plane.ReasonRequested, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if ev := next(); !strings.Contains(ev, "no-backends") {
		t.Fatalf("after termination %q", ev)
	}
}

func TestAdminUsers(t *testing.T) {
	t.Parallel()
	_, admin, _ := adminDash(t)
	p := admin.get("/admin/users")
	if p.status() != http.StatusOK {
		t.Fatalf("users page: %d", p.status())
	}
	var users []string
	p.Find(testid("user-row")).Each(func(_ int, r *goquery.Selection) {
		email, _ := r.Attr("data-user")
		if r.Find(testid("user-admin")).Length() == 1 {
			email += " (admin)"
		}
		users = append(users, email)
	})
	if got := strings.Join(users, ", "); got != "root@example.com (admin), bob@example.com" {
		t.Errorf("users: %s", got)
	}
}
