package server_test

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"plane"
)

// spawnedProject is a signed-in owner with a project, an image and a drone.
func spawnedProject(t *testing.T) (*dash, *browser, *plane.Project, string) {
	t.Helper()
	d := newDash(t)
	b := d.signup("ada@example.com")
	pr := b.project("app")
	d.image(pr.ID, "demo")
	d.fakeDrone("d1")
	return d, b, pr, "/projects/" + id(pr.ID)
}

func TestSpawnForm(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	page := b.get(base + "/backends")
	if page.status() != http.StatusOK || page.Find(testid("no-backends")).Length() != 1 {
		t.Fatalf("empty backends page: %d", page.status())
	}
	if got, _ := page.Find(testid("backends-live")).Attr("sse-connect"); got != base+"/backends/stream" {
		t.Errorf("stream URL %q", got)
	}
	p := b.post(base+"/backends", url.Values{"image": {"demo"}, "key": {"doc-1"}, "env": {"A=1\n\n# comment\nB = two=2"}, "max_idle_seconds": {"5"}})
	if p.status() != http.StatusSeeOther || p.location() != base+"/backends?flash=spawned" {
		t.Fatalf("spawn: %d %q %s", p.status(), p.location(), p.text(testid("form-error")))
	}
	bs, err := d.db.FindBackends(context.Background(), plane.BackendFilter{ProjectID: &pr.ID})
	if err != nil || len(bs) != 1 {
		t.Fatalf("%d backends, %v", len(bs), err)
	}
	got := bs[0]
	if got.Key != "doc-1" || got.Env["A"] != "1" || got.Env["B"] != " two=2" || got.MaxIdleSeconds != 5 || got.User != "ada@example.com" {
		t.Errorf("stored %+v", got)
	}
	if sent := d.sent(); len(sent) != 1 || sent[0] != plane.SubjectSpawn("d1") {
		t.Errorf("drone requests %v", sent)
	}
	list := b.get(base + "/backends?flash=spawned")
	if list.text(testid("flash")) == "" || list.Find(testid("backend-row")).Length() != 1 {
		t.Fatalf("list after spawn: flash %q, %d rows", list.text(testid("flash")), list.Find(testid("backend-row")).Length())
	}
	if st := list.text(testid("backend-status")); st != "scheduled" {
		t.Errorf("status %q", st)
	}
	acts, _ := d.db.FindActivity(context.Background(), pr.ID, 10)
	if len(acts) == 0 || acts[0].Action != plane.ActionBackendSpawn || acts[0].Target != got.ID || acts[0].Actor.Name != "ada@example.com" {
		t.Errorf("activity %+v", acts)
	}
}

func TestSpawnFormErrors(t *testing.T) {
	t.Parallel()
	_, b, _, base := spawnedProject(t)
	tests := []struct {
		name  string
		form  url.Values
		field string
		want  string
	}{
		{"unknown image", url.Values{"image": {"nope"}}, "image", `no image named "nope"`},
		{"env without =", url.Values{"image": {"demo"}, "env": {"A=1\nBROKEN"}}, "env", "line 2: write KEY=value"},
		{"idle not a number", url.Values{"image": {"demo"}, "max_idle_seconds": {"soon"}}, "max_idle_seconds", `"soon" is not a whole number`},
		{"negative lifetime", url.Values{"image": {"demo"}, "lifetime_seconds": {"-1"}}, "lifetime_seconds", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := b.post(base+"/backends", tt.form)
			if p.status() != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422", p.status())
			}
			if got := p.text(testid("error-" + tt.field)); got == "" || !strings.Contains(got, tt.want) {
				t.Errorf("error next to %s = %q, want %q (form error %q)", tt.field, got, tt.want, p.text(testid("form-error")))
			}
			if got := p.Find(testid("field-env")).Text(); got != tt.form.Get("env") {
				t.Errorf("env kept as %q", got)
			}
		})
	}
}

func TestSpawnFormNoDrone(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	b := d.signup("ada@example.com")
	pr := b.project("app")
	d.image(pr.ID, "demo")
	p := b.post("/projects/"+id(pr.ID)+"/backends", url.Values{"image": {"demo"}})
	if p.status() != http.StatusUnprocessableEntity || !strings.Contains(p.text(testid("form-error")), "no drone") {
		t.Fatalf("spawn without drones: %d %q", p.status(), p.text(testid("form-error")))
	}
}

func TestBackendsFilter(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	d.image(pr.ID, "other")
	for _, f := range []url.Values{{"image": {"demo"}, "key": {"k1"}}, {"image": {"other"}, "key": {"k2"}}} {
		if p := b.post(base+"/backends", f); p.status() != http.StatusSeeOther {
			t.Fatal(p.status())
		}
	}
	tests := []struct {
		query string
		want  int
	}{
		{"", 2}, {"?status=live", 2}, {"?status=terminated", 0}, {"?image=other", 1}, {"?key=k1", 1}, {"?key=k3", 0}, {"?status=bogus", 2},
	}
	for _, tt := range tests {
		p := b.get(base + "/backends" + tt.query)
		if got := p.Find(testid("backend-row")).Length(); got != tt.want {
			t.Errorf("%q: %d rows, want %d", tt.query, got, tt.want)
		}
		if got, _ := p.Find(testid("backends-live")).Attr("sse-connect"); got != base+"/backends/stream"+tt.query {
			t.Errorf("%q: stream %q keeps no filter", tt.query, got)
		}
	}
}

// The table's stream sends the rows at once and again after a change.
func TestBackendsStream(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	next := b.stream(base + "/backends/stream")
	if ev := next(); !strings.HasPrefix(ev, "event: rows\n") || !strings.Contains(ev, "no-backends") {
		t.Fatalf("first event %q", ev)
	}
	b.post(base+"/backends", url.Values{"image": {"demo"}})
	bs, _ := d.db.FindBackends(context.Background(), plane.BackendFilter{ProjectID: &pr.ID})
	ev := next()
	if !strings.Contains(ev, `data-backend="`+bs[0].ID+`"`) || !strings.Contains(ev, "scheduled") {
		t.Fatalf("after spawn %q", ev)
	}
	if _, _, err := d.s.Core().ApplyBackendEvent(context.Background(), plane.BackendEvent{BackendID: bs[0].ID, DroneID: "d1", Status: plane.StatusLoading, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if ev := next(); !strings.Contains(ev, `data-status="loading"`) {
		t.Fatalf("after loading %q", ev)
	}
}

func TestBackendPage(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	b.post(base+"/backends", url.Values{"image": {"demo"}, "max_idle_seconds": {"30"}})
	bs, _ := d.db.FindBackends(context.Background(), plane.BackendFilter{ProjectID: &pr.ID})
	bk := bs[0]
	t0 := bk.CreatedAt
	for i, st := range []plane.BackendStatus{plane.StatusLoading, plane.StatusStarting, plane.StatusWaiting, plane.StatusReady} {
		if _, _, err := d.s.Core().ApplyBackendEvent(context.Background(), plane.BackendEvent{BackendID: bk.ID, DroneID: "d1", Status: st, Time: t0.Add(time.Duration(i+1) * 100 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
	}
	path := base + "/backends/" + bk.ID
	p := b.get(path)
	if p.status() != http.StatusOK {
		t.Fatalf("backend page: %d", p.status())
	}
	if got := p.text(testid("backend-status")); got != "ready" {
		t.Errorf("status %q", got)
	}
	if n := p.Find(testid("timeline") + " li").Length(); n != 5 {
		t.Errorf("timeline has %d phases, want 5", n)
	}
	if got := p.Find(testid("timeline") + ` li[data-status="loading"] .dur`).Text(); got != "100 ms" {
		t.Errorf("loading lasted %q, want 100 ms", got)
	}
	if href, _ := p.Find(testid("open-backend")).Attr("href"); href != path+"/open" {
		t.Errorf("open link %q", href)
	}
	if p.Find(testid("terminate-form")).Length() != 1 || p.text(testid("idle-policy")) == "" {
		t.Error("no terminate form or idle policy")
	}
	if sse, _ := p.Find(testid("backend-live")).Attr("sse-connect"); sse != path+"/stream" {
		t.Errorf("stream %q", sse)
	}

	// Open: a fresh connect URL for the signed-in user.
	open := b.get(path + "/open")
	loc, _ := url.Parse(open.location())
	if open.status() != http.StatusSeeOther || loc.Query().Get("plane_token") == "" || !strings.HasPrefix(loc.Host, bk.ID+".") {
		t.Fatalf("open: %d %q", open.status(), open.location())
	}
	ct, err := plane.VerifyConnectToken(loc.Query().Get("plane_token"), time.Now(), d.s.ConnectKey.Public().(ed25519.PublicKey))
	if err != nil || ct.BackendID != bk.ID || ct.User != "ada@example.com" {
		t.Fatalf("token %+v %v", ct, err)
	}

	// Terminate asks the drone and logs who did.
	if p := b.post(path+"/terminate", url.Values{"mode": {"hard"}}); p.status() != http.StatusSeeOther {
		t.Fatalf("terminate: %d", p.status())
	}
	if sent := d.sent(); sent[len(sent)-1] != plane.SubjectTerminate("d1") {
		t.Errorf("drone requests %v", sent)
	}
	acts, _ := d.db.FindActivity(context.Background(), pr.ID, 1)
	if acts[0].Action != plane.ActionBackendTerminate || acts[0].Detail != "hard" {
		t.Errorf("activity %+v", acts[0])
	}
	if _, _, err := d.s.Core().ApplyBackendEvent(context.Background(), plane.BackendEvent{BackendID: bk.ID, DroneID: "d1", Status: plane.StatusTerminated, Reason: plane.ReasonRequested, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	p = b.get(path)
	if got := p.text(testid("backend-status")); got != "terminated (requested)" {
		t.Errorf("status %q", got)
	}
	if p.Find(testid("open-backend")).Length() != 0 || p.Find(testid("terminate-form")).Length() != 0 {
		t.Error("a terminated backend offers Open or Terminate")
	}
	if p := b.get(path + "/open"); p.status() != http.StatusConflict {
		t.Errorf("open a terminated backend: %d", p.status())
	}
	if p := b.get(base + "/backends/nosuchbackend1"); p.status() != http.StatusNotFound {
		t.Errorf("unknown backend: %d", p.status())
	}
}

// A live backend whose drone is unreachable keeps its status, flagged; a
// terminated one is not flagged.
func TestBackendOfUnreachableDrone(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	if p := b.post(base+"/backends", url.Values{"image": {"demo"}}); p.status() != http.StatusSeeOther {
		t.Fatalf("spawn: %d", p.status())
	}
	if err := d.db.SetDroneStatus(context.Background(), "d1", plane.DroneUnreachable); err != nil {
		t.Fatal(err)
	}
	list := b.get(base + "/backends")
	if st := list.text(testid("backend-status")); st != "scheduled" || list.Find(testid("backend-drone-unreachable")).Length() != 1 {
		t.Fatalf("status %q, %d unreachable flags", st, list.Find(testid("backend-drone-unreachable")).Length())
	}
	bs, err := d.db.FindBackends(context.Background(), plane.BackendFilter{ProjectID: &pr.ID})
	if err != nil || len(bs) != 1 {
		t.Fatalf("%d backends, %v", len(bs), err)
	}
	if page := b.get(base + "/backends/" + bs[0].ID); page.Find(testid("backend-drone-unreachable")).Length() != 1 {
		t.Error("the backend's page does not flag its unreachable drone")
	}
	if _, _, err := d.s.Core().ApplyBackendEvent(context.Background(), plane.BackendEvent{BackendID: bs[0].ID, DroneID: "d1", Status: plane.StatusTerminated, Reason: plane.ReasonLost, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if list := b.get(base + "/backends"); list.Find(testid("backend-drone-unreachable")).Length() != 0 {
		t.Error("a terminated backend is flagged")
	}
}

// The backend's page shows who is connected, from the stored joins and
// leaves, and its stream sends the list again as users join and leave.
func TestBackendPageConnections(t *testing.T) {
	t.Parallel()
	d, b, pr, base := hooksProject(t)
	if p := b.post(base+"/backends", url.Values{"image": {"demo"}, "max_idle_seconds": {"30"}}); p.status() != http.StatusSeeOther {
		t.Fatalf("spawn: %d", p.status())
	}
	bs, _ := d.db.FindBackends(context.Background(), plane.BackendFilter{ProjectID: &pr.ID})
	bk := bs[0]
	path := base + "/backends/" + bk.ID
	t0 := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	d.apply(plane.BackendEvent{BackendID: bk.ID, DroneID: "d1", Status: plane.StatusReady, Time: t0})
	if p := b.get(path); p.Find(testid("no-connected-users")).Length() != 1 {
		t.Fatalf("before any join: %q", p.text(testid("connections-panel")))
	}
	join := func(user string, joined bool, users int, at time.Time) {
		d.apply(plane.BackendEvent{BackendID: bk.ID, Status: plane.StatusReady, Time: at, Connection: &plane.ConnectionChange{User: user, Joined: joined, Users: users}})
	}
	join("ada@example.com", true, 1, t0.Add(time.Second))

	p := b.get(path)
	rows := p.Find(testid("connected-user"))
	if rows.Length() != 1 {
		t.Fatalf("%d connected users: %q", rows.Length(), p.text(testid("connections-panel")))
	}
	if u, _ := rows.Attr("data-user"); u != "ada@example.com" || p.text(testid("user-connections")) != "1" {
		t.Errorf("connected: %q with %q connections", u, p.text(testid("user-connections")))
	}
	if since, _ := rows.Find("time").Attr("datetime"); since != t0.Add(time.Second).UTC().Format(time.RFC3339Nano) && !strings.HasPrefix(since, t0.Add(time.Second).UTC().Format("2006-01-02T15:04:05")) {
		t.Errorf("since %q", since)
	}
	bk, _ = d.db.FindBackendByID(context.Background(), bk.ID)
	if why := d.s.BackendResponse(bk, false).UpBecause; why != "" {
		// The API's reason, when it gives one, is on the page too (its
		// countdown, if any, a second on).
		if got := p.text(testid("up-because")); got == "" || !strings.HasPrefix(got, "Still up: "+strings.TrimRightFunc(why, func(r rune) bool { return r == 's' || r == ' ' || r >= '0' && r <= '9' })) {
			t.Errorf("up because %q, want %q", got, why)
		}
	}

	// Live: the stream's first connections panel, then one per change.
	next := b.events(path + "/stream")
	nextConns := func() string {
		t.Helper()
		for {
			if ev := next(); ev.Type == "connections" {
				return ev.Data
			}
		}
	}
	if ev := nextConns(); !strings.Contains(ev, `data-user="ada@example.com"`) {
		t.Fatalf("first connections %q", ev)
	}
	join("bob", true, 2, t0.Add(2*time.Second))
	if ev := nextConns(); strings.Count(ev, `data-testid="connected-user"`) != 2 || !strings.Contains(ev, `data-user="bob"`) {
		t.Fatalf("after bob joined %q", ev)
	}
	join("ada@example.com", false, 1, t0.Add(3*time.Second))
	if ev := nextConns(); strings.Count(ev, `data-testid="connected-user"`) != 1 || !strings.Contains(ev, `data-user="bob"`) {
		t.Fatalf("after ada left %q", ev)
	}
	d.apply(plane.BackendEvent{BackendID: bk.ID, DroneID: "d1", Status: plane.StatusTerminated, Reason: plane.ReasonRequested, Time: t0.Add(4 * time.Second)})
	// bob's leave (the log) and the status may come in either order.
	if ev := nextConns(); !strings.Contains(ev, "connections-ended") {
		if ev2 := nextConns(); !strings.Contains(ev, "no-connected-users") || !strings.Contains(ev2, "connections-ended") {
			t.Fatalf("after the end %q, then %q", ev, ev2)
		}
	}
	if p := b.get(path); p.Find(testid("connections-ended")).Length() != 1 {
		t.Error("a terminated backend's page lists users")
	}
}

// Without an event log the page says it cannot tell who is connected.
func TestBackendPageConnectionsUnknown(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	b.post(base+"/backends", url.Values{"image": {"demo"}})
	bs, _ := d.db.FindBackends(context.Background(), plane.BackendFilter{ProjectID: &pr.ID})
	if p := b.get(base + "/backends/" + bs[0].ID); p.status() != http.StatusOK || p.Find(testid("connections-unknown")).Length() != 1 {
		t.Errorf("page without an event log: %d %q", p.status(), p.text(testid("connections-panel")))
	}
}
