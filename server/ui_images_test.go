package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"plane"
	"plane/api"
)

// wantFieldError checks that a form came back with status 422 and the
// error next to field, and returns the form.
func wantFieldError(t *testing.T, p *page, form, field, want string) *goquery.Selection {
	t.Helper()
	if p.status() != http.StatusUnprocessableEntity {
		t.Fatalf("status %d, want 422", p.status())
	}
	f := p.Find(testid(form))
	if got := f.Find(testid("error-" + field)).Text(); !strings.Contains(got, want) {
		t.Errorf("error next to %s: %q, want %q (form error %q)", field, got, want, p.text(testid("form-error")))
	}
	return f
}

// activity returns a project's log, newest first.
func (d *dash) activity(projectID int64) []*plane.Activity {
	d.t.Helper()
	acts, err := d.db.FindActivity(context.Background(), projectID, 100)
	if err != nil {
		d.t.Fatal(err)
	}
	return acts
}

func TestImagesPage(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	// demo is plane-demo:latest, which d1 has.
	other := "other"
	img, _ := plane.NewImage(pr.ID, plane.ImageInput{Name: &other, Ref: ptr("registry.example.com/other:1")})
	if err := d.db.CreateImage(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	if err := d.db.UpsertDrone(context.Background(), &plane.Drone{ID: "lost1", Status: plane.DroneLost}); err != nil {
		t.Fatal(err)
	}

	p := b.get(base + "/images")
	if p.status() != http.StatusOK || p.Find(testid("images")).Length() != 1 {
		t.Fatalf("images page: %d", p.status())
	}
	if p.Find(`[data-testid="tab-images"][aria-current]`).Length() != 1 {
		t.Error("the images tab is not the current one")
	}
	rows := p.Find(testid("image-row"))
	if rows.Length() != 2 {
		t.Fatalf("%d image rows", rows.Length())
	}
	demo := p.Find(`[data-testid="image-row"][data-image="demo"]`)
	if !strings.Contains(demo.Text(), "plane-demo:latest") || !strings.Contains(demo.Text(), "8080") || !strings.Contains(demo.Text(), "if_not_present") {
		t.Errorf("demo row %q", demo.Text())
	}
	if st := demo.Find(testid("pull-state")); st.Length() != 1 || strings.TrimSpace(st.Text()) != "d1: pulled" {
		t.Errorf("demo pull state %q (%d drones; the lost one must not show)", st.Text(), st.Length())
	}
	otherRow := p.Find(`[data-testid="image-row"][data-image="other"]`)
	if st := strings.TrimSpace(otherRow.Find(testid("pull-state")).Text()); st != "d1: not pulled" {
		t.Errorf("other pull state %q", st)
	}
	if href, _ := demo.Find(testid("image-edit")).Attr("href"); href != base+"/images/demo/edit" {
		t.Errorf("edit link %q", href)
	}
	del := demo.Find(testid("image-delete")).Closest("form")
	if action, _ := del.Attr("action"); action != base+"/images/demo/delete" {
		t.Errorf("delete form action %q", action)
	}
	if confirm, _ := del.Attr("data-confirm"); !strings.Contains(confirm, "demo") {
		t.Errorf("delete asks %q", confirm)
	}
	if action, _ := demo.Find(testid("image-pull")).Closest("form").Attr("action"); action != base+"/images/demo/pull" {
		t.Errorf("pull form action %q", action)
	}
	form := p.Find(testid("image-form"))
	if v, _ := form.Find(testid("field-port")).Attr("value"); v != "8080" {
		t.Errorf("port default %q", v)
	}
	if v, _ := form.Find(testid("field-pull_policy") + " option[selected]").Attr("value"); v != "if_not_present" {
		t.Errorf("pull policy default %q", v)
	}
	for _, f := range []string{"name", "ref", "env", "public", "allow_bearer", "max_idle_seconds", "suspend_seconds", "lifetime_seconds", "cpu_millis", "memory_mb", "warm_pool"} {
		if form.Find(testid("field-"+f)).Length() != 1 {
			t.Errorf("no field %s", f)
		}
	}
	if hint := form.Find(testid("hint-warm_pool")).Text(); !strings.Contains(hint, "spawns without env or custom CPU/memory claim one at once") {
		t.Errorf("warm pool hint %q", hint)
	}
	// No image has a pool: no pools section, and the column says none.
	if p.Find(testid("warm-pools")).Length() != 0 {
		t.Error("a warm pools section without a pooled image")
	}
	if got := strings.TrimSpace(demo.Find(testid("image-warm-pool")).Text()); got != "none" {
		t.Errorf("demo's warm pool shows %q, want none", got)
	}
}

func ptr[T any](v T) *T { return &v }

func TestRegisterImage(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	p := b.post(base+"/images", url.Values{
		"name": {"web"}, "ref": {"registry.example.com:5000/team/web:1.2"}, "port": {"3000"}, "pull_policy": {"always"},
		"env": {"A=1\nB=two"}, "public": {"on"}, "max_idle_seconds": {"60"}, "suspend_seconds": {"900"}, "lifetime_seconds": {"3600"}, "cpu_millis": {"500"}, "memory_mb": {"256"},
		"warm_pool": {"3"},
	})
	if p.status() != http.StatusSeeOther || p.location() != base+"/images?flash=image-created" {
		t.Fatalf("register: %d %q %s", p.status(), p.location(), p.Find(".field-error").Text())
	}
	img, err := d.db.FindImage(context.Background(), pr.ID, "web")
	if err != nil {
		t.Fatal(err)
	}
	want := plane.Image{Name: "web", Ref: "registry.example.com:5000/team/web:1.2", Port: 3000, PullPolicy: plane.PullAlways, Public: true,
		Limits: plane.Limits{MaxIdleSeconds: 60, LifetimeSeconds: 3600, CPUMillis: 500, MemoryMB: 256, SuspendSeconds: 900}}
	if img.Name != want.Name || img.Ref != want.Ref || img.Port != want.Port || img.PullPolicy != want.PullPolicy || !img.Public || img.AllowBearer ||
		img.Limits != want.Limits || img.Env["A"] != "1" || img.Env["B"] != "two" || img.WarmPool != 3 {
		t.Errorf("stored %+v", img)
	}
	list := b.get(base + "/images")
	if got := list.text(testid("image-suspend")); got != ", then suspended 15 min 0 s" {
		t.Errorf("the images table shows the suspension as %q", got)
	}
	if got := list.text(`[data-image="web"] ` + testid("image-warm-pool")); got != "3 per drone" {
		t.Errorf("the images table shows the warm pool as %q", got)
	}
	if acts := d.activity(pr.ID); acts[0].Action != plane.ActionImageCreate || acts[0].Target != "web" || acts[0].Actor.Name != "ada@example.com" {
		t.Errorf("activity %+v", acts[0])
	}

	// Left empty, the numbers take the image defaults.
	b.post(base+"/images", url.Values{"name": {"plain"}, "ref": {"plain"}, "pull_policy": {"never"}})
	img, err = d.db.FindImage(context.Background(), pr.ID, "plain")
	if err != nil {
		t.Fatal(err)
	}
	if img.Port != plane.DefaultImagePort || img.MaxIdleSeconds != plane.DefaultIdleSeconds || img.LifetimeSeconds != 0 || img.Public || img.WarmPool != 0 {
		t.Errorf("defaults %+v", img)
	}
	list = b.get(base + "/images?flash=image-created")
	if list.text(testid("flash")) != "The image was registered." {
		t.Errorf("flash %q", list.text(testid("flash")))
	}
	if st := strings.TrimSpace(list.Find(`[data-image="plain"] [data-testid="pull-state"]`).Text()); st != "d1: not pulled" {
		t.Errorf("plain (plain:latest) pull state %q", st)
	}
}

// Each error of the image form shows next to its field, and the form keeps
// what was typed.
func TestImageFormErrors(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	typed := url.Values{"name": {"web"}, "ref": {"web:1"}, "port": {"8080"}, "pull_policy": {"always"}, "env": {"A=1"}, "allow_bearer": {"on"}, "cpu_millis": {"250"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range typed {
			f[kk] = vv
		}
		f.Set(k, v)
		return f
	}
	tests := []struct {
		name  string
		form  url.Values
		field string
		want  string
	}{
		{"invalid ref", with("ref", "Not A Ref!"), "ref", `"Not A Ref!" is not a valid image reference`},
		{"empty ref", with("ref", ""), "ref", "is required"},
		{"bad name", with("name", "Web App"), "name", `"Web App" must be`},
		{"taken name", with("name", "demo"), "name", `image "demo" already exists`},
		{"port not a number", with("port", "http"), "port", `"http" is not a whole number`},
		{"port out of range", with("port", "70000"), "port", "between 1 and 65535"},
		{"unknown pull policy", with("pull_policy", "sometimes"), "pull_policy", "must be if_not_present, always or never"},
		{"env without =", with("env", "A=1\nB"), "env", "line 2: write KEY=value"},
		{"reserved env", with("env", "PORT=1"), "env", "PORT is set by Plane"},
		{"negative idle", with("max_idle_seconds", "-5"), "max_idle_seconds", "must not be negative"},
		{"tiny memory", with("memory_mb", "3"), "memory_mb", "at least 6"},
		{"warm pool not a number", with("warm_pool", "many"), "warm_pool", `"many" is not a whole number`},
		{"warm pool too large", with("warm_pool", "101"), "warm_pool", "must be between 0 and 100 (got 101)"},
		{"negative warm pool", with("warm_pool", "-1"), "warm_pool", "must be between 0 and 100 (got -1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := wantFieldError(t, b.post(base+"/images", tt.form), "image-form", tt.field, tt.want)
			if f := form.Find(testid("field-" + tt.field)).Closest(".field"); !f.HasClass("has-error") {
				t.Errorf("the %s field is not marked", tt.field)
			}
			if v, _ := form.Find(testid("field-name")).Attr("value"); v != tt.form.Get("name") {
				t.Errorf("name kept as %q", v)
			}
			if v, _ := form.Find(testid("field-ref")).Attr("value"); v != tt.form.Get("ref") {
				t.Errorf("ref kept as %q", v)
			}
			if v, _ := form.Find(testid("field-cpu_millis")).Attr("value"); v != "250" {
				t.Errorf("cpu kept as %q", v)
			}
			if v := form.Find(testid("field-env")).Text(); v != tt.form.Get("env") {
				t.Errorf("env kept as %q", v)
			}
			if _, on := form.Find(testid("field-allow_bearer")).Attr("checked"); !on {
				t.Error("allow_bearer unticked")
			}
			if _, on := form.Find(testid("field-public")).Attr("checked"); on {
				t.Error("public ticked")
			}
			if v, _ := form.Find(testid("field-pull_policy") + " option[selected]").Attr("value"); tt.field != "pull_policy" && v != "always" {
				t.Errorf("pull policy kept as %q", v)
			}
		})
	}
	if imgs, _ := d.db.FindImages(context.Background(), pr.ID); len(imgs) != 1 {
		t.Errorf("%d images stored", len(imgs))
	}
}

func TestEditImage(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	img, _ := d.db.FindImage(context.Background(), pr.ID, "demo")
	if _, err := d.db.UpdateImage(context.Background(), pr.ID, "demo", plane.ImageInput{Env: &map[string]string{"B": "2", "A": "1"}, LimitsInput: plane.LimitsInput{CPUMillis: ptr(100), SuspendSeconds: ptr(600)}}); err != nil {
		t.Fatal(err)
	}
	p := b.get(base + "/images/demo/edit")
	if p.status() != http.StatusOK {
		t.Fatalf("edit page: %d", p.status())
	}
	form := p.Find(testid("image-form"))
	if action, _ := form.Attr("action"); action != base+"/images/demo" {
		t.Errorf("form action %q", action)
	}
	for field, want := range map[string]string{"name": "demo", "ref": img.Ref, "port": "8080", "max_idle_seconds": "300", "suspend_seconds": "600", "cpu_millis": "100", "memory_mb": ""} {
		if v, _ := form.Find(testid("field-" + field)).Attr("value"); v != want {
			t.Errorf("%s shows %q, want %q", field, v, want)
		}
	}
	if env := form.Find(testid("field-env")).Text(); env != "A=1\nB=2\n" {
		t.Errorf("env shows %q", env)
	}

	// Cleared, a limit is none; unticked, a checkbox is off.
	save := url.Values{"name": {"demo"}, "ref": {"plane-demo:2"}, "port": {"8080"}, "pull_policy": {"never"}, "env": {"A=1"}, "allow_bearer": {"on"},
		"max_idle_seconds": {"30"}, "cpu_millis": {""}}
	p = b.post(base+"/images/demo", save)
	if p.status() != http.StatusSeeOther || p.location() != base+"/images?flash=image-saved" {
		t.Fatalf("save: %d %q %s", p.status(), p.location(), p.Find(".field-error").Text())
	}
	got, err := d.db.FindImage(context.Background(), pr.ID, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if got.Ref != "plane-demo:2" || got.PullPolicy != plane.PullNever || !got.AllowBearer || got.MaxIdleSeconds != 30 || got.CPUMillis != 0 || got.SuspendSeconds != 0 || len(got.Env) != 1 {
		t.Errorf("saved %+v", got)
	}
	act := d.activity(pr.ID)[0]
	if act.Action != plane.ActionImageUpdate || act.Target != "demo" || act.Detail != "changed ref plane-demo:2, pull_policy, allow_bearer, env, max_idle_seconds, cpu_millis, suspend_seconds" {
		t.Errorf("activity %+v", act)
	}

	save.Set("ref", "bad ref")
	p = b.post(base+"/images/demo", save)
	if p.status() != http.StatusUnprocessableEntity {
		t.Fatalf("bad ref: %d", p.status())
	}
	if e := p.text(testid("error-ref")); !strings.Contains(e, `"bad ref" is not a valid image reference`) {
		t.Errorf("ref error %q", e)
	}
	if v, _ := p.Find(testid("field-ref")).Attr("value"); v != "bad ref" {
		t.Errorf("ref kept as %q", v)
	}
	if action, _ := p.Find(testid("image-form")).Attr("action"); action != base+"/images/demo" {
		t.Errorf("form action after an error %q", action)
	}

	// A rename moves the image.
	save.Set("ref", "plane-demo:2")
	save.Set("name", "renamed")
	if p := b.post(base+"/images/demo", save); p.status() != http.StatusSeeOther {
		t.Fatalf("rename: %d %s", p.status(), p.Find(".field-error").Text())
	}
	if _, err := d.db.FindImage(context.Background(), pr.ID, "renamed"); err != nil {
		t.Errorf("after rename: %v", err)
	}
	for _, path := range []string{base + "/images/demo/edit"} {
		if p := b.get(path); p.status() != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, p.status())
		}
	}
	if p := b.post(base+"/images/demo", save); p.status() != http.StatusNotFound {
		t.Errorf("save a gone image: %d", p.status())
	}
}

// The edit form shows the warm pool and saves it; cleared, it is none, and
// a bad value is refused next to the field.
func TestEditImageWarmPool(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	warmPool := func() int {
		t.Helper()
		img, err := d.db.FindImage(context.Background(), pr.ID, "demo")
		if err != nil {
			t.Fatal(err)
		}
		return img.WarmPool
	}
	shown := func() string {
		t.Helper()
		v, _ := b.get(base + "/images/demo/edit").Find(testid("field-warm_pool")).Attr("value")
		return v
	}
	if got := shown(); got != "" {
		t.Errorf("no pool shows %q, want an empty field", got)
	}
	save := url.Values{"name": {"demo"}, "ref": {"plane-demo:latest"}, "port": {"8080"}, "pull_policy": {"if_not_present"}, "max_idle_seconds": {"300"}}
	for _, tt := range []struct {
		typed string
		want  int
		shown string
	}{
		{"4", 4, "4"},
		{" 100 ", plane.MaxWarmPool, "100"},
		{"", 0, ""},
		{"0", 0, ""},
	} {
		save.Set("warm_pool", tt.typed)
		if p := b.post(base+"/images/demo", save); p.status() != http.StatusSeeOther {
			t.Fatalf("save warm_pool %q: %d %s", tt.typed, p.status(), p.Find(".field-error").Text())
		}
		if got := warmPool(); got != tt.want {
			t.Errorf("saved warm_pool %q: stored %d, want %d", tt.typed, got, tt.want)
		}
		if got := shown(); got != tt.shown {
			t.Errorf("saved warm_pool %q: the form shows %q, want %q", tt.typed, got, tt.shown)
		}
	}

	save.Set("warm_pool", "2")
	b.post(base+"/images/demo", save)
	save.Set("warm_pool", "500")
	form := wantFieldError(t, b.post(base+"/images/demo", save), "image-form", "warm_pool", "must be between 0 and 100 (got 500)")
	if v, _ := form.Find(testid("field-warm_pool")).Attr("value"); v != "500" {
		t.Errorf("warm_pool kept as %q", v)
	}
	if _, invalid := form.Find(testid("field-warm_pool")).Attr("aria-invalid"); !invalid {
		t.Error("the warm_pool field is not marked invalid")
	}
	if got := warmPool(); got != 2 {
		t.Errorf("after a refused save: warm_pool %d, want 2", got)
	}
}

// heartbeat publishes a drone's heartbeat with pools, as a drone does.
func (d *dash) heartbeat(droneID string, pools ...plane.PoolState) {
	d.t.Helper()
	data, err := json.Marshal(plane.Heartbeat{ProtocolVersion: plane.ProtocolVersion, DroneID: droneID, Address: "127.0.0.1",
		Version: "test", Capacity: 10, Images: []string{"plane-demo:latest"}, Pools: pools, Time: time.Now()})
	if err != nil {
		d.t.Fatal(err)
	}
	if err := d.nc.Publish(plane.SubjectHeartbeat, data); err != nil {
		d.t.Fatal(err)
	}
}

// The images page shows each pooled image's pool on every drone, as the
// drones' heartbeats report it.
func TestImageWarmPools(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	ctx := context.Background()
	demo, err := d.db.UpdateImage(ctx, pr.ID, "demo", plane.ImageInput{WarmPool: ptr(3)})
	if err != nil {
		t.Fatal(err)
	}
	waiting := d.image(pr.ID, "waiting")
	if _, err := d.db.UpdateImage(ctx, pr.ID, waiting.Name, plane.ImageInput{WarmPool: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	d.image(pr.ID, "cold")

	// The pool of demo's current spec, as the controller asks the drones
	// for it.
	specs, err := d.s.Core().PoolSpecs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var spec plane.PoolSpec
	for _, s := range specs {
		if s.ID == plane.PoolID(demo.ID) {
			spec = s
		}
	}
	if spec.ID == "" {
		t.Fatalf("no pool of demo among %+v", specs)
	}
	d.heartbeat("d1", plane.PoolState{ID: spec.ID, Hash: spec.Hash, Size: 3, Ready: []string{plane.NewBackendID(), plane.NewBackendID()}, Starting: 1, RefillMillis: 1500})
	// d2 still runs members of a former spec of demo.
	d.heartbeat("d2", plane.PoolState{ID: spec.ID, Hash: "0123456789abcdef", Size: 3, Starting: 3})
	eventually(t, 5*time.Second, "the dispatcher to record both drones' pools", func() bool {
		return len(d.s.Core().ImagePools(demo)) == 2
	})

	p := b.get(base + "/images")
	section := p.Find(testid("warm-pools"))
	if section.Length() != 1 {
		t.Fatal("no warm pools section")
	}
	if n := section.Find(testid("warm-pool")).Length(); n != 2 {
		t.Errorf("%d pools shown, want demo's and waiting's (cold has none)", n)
	}
	tests := []struct {
		drone, ready, starting, wanted, refill string
		stale                                  bool
	}{
		{drone: "d1", ready: "2", starting: "1", wanted: "3", refill: "1.5 s"},
		{drone: "d2", ready: "0", starting: "3", wanted: "3", refill: "none yet", stale: true},
	}
	rows := section.Find(`[data-testid="warm-pool"][data-image="demo"] ` + testid("warm-pool-drone"))
	if rows.Length() != len(tests) {
		t.Fatalf("%d drones in demo's pool, want %d", rows.Length(), len(tests))
	}
	for i, tt := range tests {
		row := rows.Eq(i)
		cell := func(id string) string { return strings.TrimSpace(row.Find(testid(id)).Text()) }
		if got, _ := row.Attr("data-drone"); got != tt.drone {
			t.Errorf("row %d is drone %q, want %s", i, got, tt.drone)
		}
		if got := [4]string{cell("warm-pool-ready"), cell("warm-pool-starting"), cell("warm-pool-wanted"), cell("warm-pool-refill")}; got != [4]string{tt.ready, tt.starting, tt.wanted, tt.refill} {
			t.Errorf("%s: ready, starting, wanted, refill %q, want %q", tt.drone, got, [4]string{tt.ready, tt.starting, tt.wanted, tt.refill})
		}
		if stale := cell("warm-pool-stale"); (stale == "replacing members of the former spec") != tt.stale {
			t.Errorf("%s: stale note %q, want one: %v", tt.drone, stale, tt.stale)
		}
	}
	if got := section.Find(`[data-testid="warm-pool"][data-image="waiting"] ` + testid("warm-pool-none")).Text(); got != "No drone reports this pool yet." {
		t.Errorf("waiting's pool says %q", got)
	}
	if got := p.text(`[data-image="demo"] ` + testid("image-warm-pool")); got != "3 per drone" {
		t.Errorf("demo's warm pool column %q", got)
	}

	// Set to none, the image's pool is no longer shown, though the drones
	// still report it until they empty it.
	if _, err := d.db.UpdateImage(ctx, pr.ID, "demo", plane.ImageInput{WarmPool: ptr(0)}); err != nil {
		t.Fatal(err)
	}
	if n := b.get(base + "/images").Find(`[data-testid="warm-pool"][data-image="demo"]`).Length(); n != 0 {
		t.Errorf("a pool without warm_pool is shown %d times", n)
	}
}

// The API takes warm_pool on create and update, keeps it when an update
// leaves it out, and refuses one out of range.
func TestAPIImageWarmPool(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	tok := d.apiToken("app", plane.AllScopes...)

	var img plane.Image
	if st := d.apiJSON(tok, http.MethodPost, "/api/v1/images", `{"name":"demo","ref":"plane-demo:latest","warm_pool":2}`, &img); st != http.StatusCreated || img.WarmPool != 2 {
		t.Fatalf("create image: %d %+v", st, img)
	}
	tests := []struct {
		name, method, path, body string
		status                   int
		want                     int    // warm_pool after the call
		field                    string // of the error, if any
	}{
		{"get", http.MethodGet, "/api/v1/images/demo", "", http.StatusOK, 2, ""},
		{"update without it", http.MethodPatch, "/api/v1/images/demo", `{"port":9000}`, http.StatusOK, 2, ""},
		{"update", http.MethodPatch, "/api/v1/images/demo", `{"warm_pool":5}`, http.StatusOK, 5, ""},
		{"too large", http.MethodPatch, "/api/v1/images/demo", `{"warm_pool":101}`, http.StatusBadRequest, 5, "warm_pool"},
		{"negative", http.MethodPatch, "/api/v1/images/demo", `{"warm_pool":-1}`, http.StatusBadRequest, 5, "warm_pool"},
		{"back to none", http.MethodPatch, "/api/v1/images/demo", `{"warm_pool":0}`, http.StatusOK, 0, ""},
	}
	for _, tt := range tests {
		var e api.ErrorResponse
		var got plane.Image
		out := any(&got)
		if tt.field != "" {
			out = &e
		}
		if st := d.apiJSON(tok, tt.method, tt.path, tt.body, out); st != tt.status || tt.field != e.Error.Field {
			t.Fatalf("%s: %d %+v %+v, want %d", tt.name, st, got, e, tt.status)
		}
		var list api.Images
		if st := d.apiJSON(tok, http.MethodGet, "/api/v1/images", "", &list); st != http.StatusOK || len(list.Images) != 1 || list.Images[0].WarmPool != tt.want {
			t.Fatalf("%s: list %d %+v, want warm_pool %d", tt.name, st, list, tt.want)
		}
	}
}

func TestDeleteImage(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	p := b.post(base+"/images/demo/delete", nil)
	if p.status() != http.StatusSeeOther || p.location() != base+"/images?flash=image-deleted" {
		t.Fatalf("delete: %d %q", p.status(), p.location())
	}
	if _, err := d.db.FindImage(context.Background(), pr.ID, "demo"); plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		t.Errorf("after delete: %v", err)
	}
	if act := d.activity(pr.ID)[0]; act.Action != plane.ActionImageDelete || act.Target != "demo" {
		t.Errorf("activity %+v", act)
	}
	if p := b.post(base+"/images/demo/delete", nil); p.status() != http.StatusNotFound {
		t.Errorf("delete again: %d", p.status())
	}
	if p := b.get(base + "/images"); p.Find(testid("no-images")).Length() != 1 {
		t.Error("the empty table says nothing")
	}
}

func TestPullImage(t *testing.T) {
	t.Parallel()
	d, b, _, base := spawnedProject(t)
	p := b.post(base+"/images/demo/pull", nil)
	if p.status() != http.StatusSeeOther || p.location() != base+"/images?flash=image-pulling" {
		t.Fatalf("pull: %d %q %s", p.status(), p.location(), p.text(testid("pull-results")))
	}
	if sent := d.sent(); len(sent) != 1 || sent[0] != plane.SubjectPull("d1") {
		t.Errorf("drone requests %v", sent)
	}

	// A drone that does not answer is named in the page.
	if err := d.db.UpsertDrone(context.Background(), &plane.Drone{ID: "mute"}); err != nil {
		t.Fatal(err)
	}
	p = b.post(base+"/images/demo/pull", nil)
	if p.status() != http.StatusServiceUnavailable {
		t.Fatalf("pull with a mute drone: %d", p.status())
	}
	if r := p.text(`[data-testid="pull-result"][data-drone="mute"]`); !strings.Contains(r, "mute: drone did not answer") {
		t.Errorf("mute drone's result %q", r)
	}
	if r := p.text(`[data-testid="pull-result"][data-drone="d1"]`); r != "d1: pulling" {
		t.Errorf("d1's result %q", r)
	}
	if p.Find(testid("images")).Length() != 1 {
		t.Error("no images table with the results")
	}
}

func TestPullImageNoDrone(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	b := d.signup("ada@example.com")
	pr := b.project("app")
	d.image(pr.ID, "demo")
	p := b.post("/projects/"+id(pr.ID)+"/images/demo/pull", nil)
	if p.status() != http.StatusServiceUnavailable || !strings.Contains(p.text(testid("pull-error")), "No drone is ready") {
		t.Fatalf("pull without drones: %d %q", p.status(), p.text(testid("pull-error")))
	}
}

// The API records its image changes in the activity log, naming the token.
func TestAPIImageActivity(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	tok := b.createToken(base, url.Values{"name": {"ci"}, "scopes": {"images:write", "images:read"}, "expires": {"never"}})
	for _, call := range []struct{ method, path, body string }{
		{http.MethodPost, "/api/v1/images", `{"name": "api", "ref": "api:1"}`},
		{http.MethodPatch, "/api/v1/images/api", `{"port": 9000}`},
		{http.MethodDelete, "/api/v1/images/api", ``},
	} {
		if status := d.api(tok, call.method, call.path, call.body); status >= 300 {
			t.Fatalf("%s %s: %d", call.method, call.path, status)
		}
	}
	acts := d.activity(pr.ID)
	want := []struct {
		action plane.Action
		detail string
	}{{plane.ActionImageDelete, ""}, {plane.ActionImageUpdate, "changed port"}, {plane.ActionImageCreate, "api:1"}}
	for i, w := range want {
		a := acts[i]
		if a.Action != w.action || a.Target != "api" || a.Detail != w.detail || a.Actor.Name != "token ci" || a.Actor.TokenID == "" || a.Actor.UserID != 0 {
			t.Errorf("entry %d: %+v, want %s %q by token ci", i, a, w.action, w.detail)
		}
	}
}

// api calls the JSON API with a token and returns the status.
func (d *dash) api(token, method, path, body string) int {
	d.t.Helper()
	return d.apiJSON(token, method, path, body, nil)
}

// apiJSON calls the JSON API with a token, decodes its answer into out
// (unless nil) and returns the status.
func (d *dash) apiJSON(token, method, path, body string, out any) int {
	d.t.Helper()
	req, err := http.NewRequest(method, d.url+path, strings.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out == nil {
		return resp.StatusCode
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		d.t.Fatalf("%s %s: %v in %s", method, path, err, data)
	}
	return resp.StatusCode
}
