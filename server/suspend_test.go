package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"plane"
	"plane/api"
)

// suspend applies a drone's report that backend id was suspended (or
// resumed) at t, through the core as the dispatcher does.
func (d *dash) suspend(id string, suspended bool, t time.Time) {
	d.t.Helper()
	_, applied, err := d.s.Core().ApplyBackendEvent(context.Background(),
		plane.BackendEvent{BackendID: id, DroneID: "d1", Status: plane.StatusReady, Time: t, Suspended: &suspended})
	if err != nil || !applied {
		d.t.Fatalf("suspended %v at %v: applied %v, %v", suspended, t, applied, err)
	}
}

// A suspended backend is shown so, since when, in the live table and on
// its page, whose timeline holds its suspension and resume; the activity
// log says Plane did it.
func TestSuspendedBackendBadge(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	if p := b.post(base+"/backends", url.Values{"image": {"demo"}, "max_idle_seconds": {"30"}, "suspend_seconds": {"600"}}); p.status() != http.StatusSeeOther {
		t.Fatalf("spawn: %d %s", p.status(), p.text(testid("form-error")))
	}
	bs, err := d.db.FindBackends(context.Background(), plane.BackendFilter{ProjectID: &pr.ID})
	if err != nil || len(bs) != 1 || bs[0].SuspendSeconds != 600 {
		t.Fatalf("backends %+v, %v; want one with suspend_seconds 600", bs, err)
	}
	bk := bs[0]
	t0 := bk.CreatedAt
	if _, _, err := d.s.Core().ApplyBackendEvent(context.Background(), plane.BackendEvent{BackendID: bk.ID, DroneID: "d1", Status: plane.StatusReady, Time: t0.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	next := b.stream(base + "/backends/stream")
	if ev := next(); strings.Contains(ev, "backend-suspended") {
		t.Fatalf("a ready backend shown suspended: %q", ev)
	}

	suspendedAt := t0.Add(40 * time.Second).Truncate(time.Millisecond)
	d.suspend(bk.ID, true, suspendedAt)
	// The bus brings the change to the live table.
	if ev := next(); !strings.Contains(ev, `data-testid="backend-suspended"`) || !strings.Contains(ev, `data-status="ready"`) {
		t.Fatalf("the table after the suspension: %q", ev)
	}
	since := suspendedAt.UTC().Format(time.RFC3339Nano)
	list := b.get(base + "/backends")
	badge := list.Find(testid("backend-suspended"))
	if got, _ := badge.Find("time").Attr("data-since"); badge.Length() != 1 || got != since || list.text(testid("backend-status")) != "ready" {
		t.Fatalf("table: %d suspended badges since %q, status %q; want one since %s, ready", badge.Length(), got, list.text(testid("backend-status")), since)
	}
	page := b.get(base + "/backends/" + bk.ID)
	if got, _ := page.Find(testid("backend-suspended") + " time").Attr("datetime"); got != since {
		t.Errorf("backend page: suspended since %q, want %s", got, since)
	}
	if page.Find(testid("timeline-suspended")).Length() != 1 || page.Find(testid("suspended-countdown")).Length() != 1 {
		t.Errorf("backend page: %d suspensions in the timeline, %d countdowns; want 1 of each",
			page.Find(testid("timeline-suspended")).Length(), page.Find(testid("suspended-countdown")).Length())
	}
	acts, _ := d.db.FindActivity(context.Background(), pr.ID, 1)
	if len(acts) != 1 || acts[0].Action != plane.ActionBackendSuspend || acts[0].Target != bk.ID || acts[0].Actor.Name != "plane" {
		t.Errorf("activity %+v, want the suspension by plane", acts)
	}

	d.suspend(bk.ID, false, suspendedAt.Add(5*time.Second))
	if ev := next(); strings.Contains(ev, "backend-suspended") {
		t.Fatalf("the table after the resume: %q", ev)
	}
	page = b.get(base + "/backends/" + bk.ID)
	if page.Find(testid("backend-suspended")).Length() != 0 {
		t.Error("a resumed backend is shown suspended")
	}
	if got := page.text(testid("timeline-suspended") + " .dur"); got != "5.0 s" || page.Find(testid("timeline-resumed")).Length() != 1 {
		t.Errorf("timeline: suspended for %q, %d resumes; want 5.0 s and one", got, page.Find(testid("timeline-resumed")).Length())
	}
	acts, _ = d.db.FindActivity(context.Background(), pr.ID, 1)
	if acts[0].Action != plane.ActionBackendResume || acts[0].Detail != "after 5 s suspended" {
		t.Errorf("activity %+v, want the resume", acts[0])
	}
}

// The API takes suspend_seconds with the other limits (images, spawns) and
// shows a backend's suspension: suspended, when, and when it stops.
func TestAPISuspension(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	d.fakeDrone("d1")
	tok := d.apiToken("app", plane.AllScopes...)

	var img plane.Image
	if st := d.apiJSON(tok, http.MethodPost, "/api/v1/images", `{"name":"demo","ref":"plane-demo:latest","max_idle_seconds":30,"suspend_seconds":600}`, &img); st != http.StatusCreated || img.SuspendSeconds != 600 {
		t.Fatalf("create image: %d %+v", st, img)
	}
	if st := d.apiJSON(tok, http.MethodPatch, "/api/v1/images/demo", `{"suspend_seconds":900}`, &img); st != http.StatusOK || img.SuspendSeconds != 900 || img.MaxIdleSeconds != 30 {
		t.Fatalf("update image: %d %+v", st, img)
	}
	var e api.ErrorResponse
	if st := d.apiJSON(tok, http.MethodPatch, "/api/v1/images/demo", `{"suspend_seconds":-1}`, &e); st != http.StatusBadRequest || e.Error.Field != "suspend_seconds" {
		t.Fatalf("negative suspend_seconds: %d %+v", st, e)
	}

	var b api.Backend
	if st := d.apiJSON(tok, http.MethodPost, "/api/v1/backends", `{"image":"demo"}`, &b); st != http.StatusCreated || b.SuspendSeconds != 900 || b.Suspended || b.SuspendedAt != nil || b.ResumedAt != nil {
		t.Fatalf("spawn with the image's suspend_seconds: %d %+v", st, b)
	}
	if st := d.apiJSON(tok, http.MethodPost, "/api/v1/backends", `{"image":"demo","suspend_seconds":120}`, &b); st != http.StatusCreated || b.SuspendSeconds != 120 {
		t.Fatalf("spawn with suspend_seconds: %d %+v", st, b)
	}
	if _, _, err := d.s.Core().ApplyBackendEvent(context.Background(), plane.BackendEvent{BackendID: b.ID, DroneID: "d1", Status: plane.StatusReady, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(time.Second).Truncate(time.Millisecond).UTC()
	d.suspend(b.ID, true, at)
	if st := d.apiJSON(tok, http.MethodGet, "/api/v1/backends/"+b.ID, "", &b); st != http.StatusOK || !b.Suspended || b.Status != plane.StatusReady ||
		b.SuspendedAt == nil || !b.SuspendedAt.Equal(at) || b.ResumedAt != nil || b.IdleDeadline == nil || !b.IdleDeadline.Equal(at.Add(120*time.Second)) {
		t.Fatalf("suspended backend: %d %+v", st, b)
	}
	d.suspend(b.ID, false, at.Add(time.Second))
	var list api.Backends
	if st := d.apiJSON(tok, http.MethodGet, "/api/v1/backends", "", &list); st != http.StatusOK || len(list.Backends) != 2 {
		t.Fatalf("list: %d %+v", st, list)
	}
	for _, got := range list.Backends {
		if got.ID == b.ID && (got.Suspended || got.ResumedAt == nil || !got.ResumedAt.Equal(at.Add(time.Second)) || !got.SuspendedAt.Equal(at)) {
			t.Fatalf("resumed backend: %+v", got)
		}
	}
}
