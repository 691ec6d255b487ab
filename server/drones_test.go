package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"plane"
	"plane/api"
	"plane/auth"
)

// apiToken makes an API token of a new project straight in the store, as
// plane admin token create does, and returns it signed.
func (d *dash) apiToken(name string, scopes ...plane.Scope) string {
	d.t.Helper()
	ctx := context.Background()
	p := &plane.Project{Name: name}
	if err := d.db.CreateProject(ctx, p); err != nil {
		d.t.Fatal(err)
	}
	tok := &plane.Token{ID: auth.NewTokenID(), ProjectID: p.ID, Name: name, Scopes: scopes, CreatedAt: time.Now()}
	if err := d.db.CreateToken(ctx, tok); err != nil {
		d.t.Fatal(err)
	}
	signed, err := (&auth.Issuer{Key: d.s.ConnectKey}).IssueAPIToken(tok)
	if err != nil {
		d.t.Fatal(err)
	}
	return signed
}

// apiCall calls the JSON API with a token; it returns the status and the
// error's code, if any.
func (d *dash) apiCall(token, method, path string) (int, plane.ErrorCode) {
	d.t.Helper()
	req, err := http.NewRequest(method, d.url+path, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	var e api.ErrorResponse
	if resp.StatusCode >= 400 {
		body, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(body, &e)
	}
	return resp.StatusCode, e.Error.Code
}

// Drones belong to the instance: a project's token, whatever its scopes,
// neither sees nor drains them.
func TestAPIDronesNeedAdminScope(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	d.fakeDrone("d1")
	project := d.apiToken("app", plane.AllScopes...)
	for _, call := range []struct{ method, path string }{
		{http.MethodGet, "/api/v1/drones"},
		{http.MethodPost, "/api/v1/drones/d1/drain"},
		{http.MethodPost, "/api/v1/drones/d1/undrain"},
	} {
		if status, code := d.apiCall(project, call.method, call.path); status != http.StatusForbidden || code != plane.EFORBIDDEN {
			t.Errorf("%s %s with a project token: %d %s, want 403", call.method, call.path, status, code)
		}
		if status, _ := d.apiCall("", call.method, call.path); status != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d, want 401", call.method, call.path, status)
		}
	}
	if len(d.sent()) != 0 {
		t.Errorf("drone requests %v", d.sent())
	}
}

func TestAPIDrones(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	ctx := context.Background()
	d.fakeDrone("d1")
	expiry := time.Now().Add(60 * 24 * time.Hour).UTC().Truncate(time.Millisecond)
	if err := d.db.UpsertDrone(ctx, &plane.Drone{ID: "d2", Address: "10.0.0.2", ProxyAddress: "10.0.0.2:443", Version: "v9",
		ProtocolVersion: plane.ProtocolVersion, Capacity: 20, Backends: 3, CPUPercent: 12.5, MemoryBytes: 3 << 30,
		CertNotAfter: &expiry, CertError: "acme: rate limited", Status: plane.DroneLost, LastHeartbeat: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	c, err := api.NewClient(d.url, d.apiToken("ops", plane.ScopeAdmin), nil)
	if err != nil {
		t.Fatal(err)
	}

	ds, err := c.Drones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].ID != "d1" || ds[1].ID != "d2" {
		t.Fatalf("drones %+v", ds)
	}
	d1, d2 := ds[0], ds[1]
	if d1.Status != plane.DroneReady || d1.Draining || d1.Capacity != 10 || !slices.Equal(d1.Images, []string{"plane-demo:latest"}) || d1.CertNotAfter != nil {
		t.Errorf("d1 %+v", d1)
	}
	if d2.Status != plane.DroneLost || d2.Address != "10.0.0.2" || d2.ProxyAddress != "10.0.0.2:443" || d2.Version != "v9" ||
		d2.Backends != 3 || d2.Capacity != 20 || d2.CPUPercent != 12.5 || d2.MemoryBytes != 3<<30 || d2.CertError != "acme: rate limited" ||
		d2.CertNotAfter == nil || !d2.CertNotAfter.Equal(expiry) || d2.Images == nil || time.Since(d2.LastHeartbeat) < time.Minute {
		t.Errorf("d2 %+v", d2)
	}

	dr, err := c.Drain(ctx, "d1", true)
	if err != nil {
		t.Fatal(err)
	}
	if !dr.Draining || dr.Status != plane.DroneDraining || dr.ID != "d1" {
		t.Errorf("drain answered %+v, want d1 draining", dr)
	}
	if sent := d.sent(); len(sent) != 1 || sent[0] != plane.SubjectDrain("d1") {
		t.Errorf("drone requests %v", sent)
	}
	if st, _ := d.db.FindDroneByID(ctx, "d1"); !st.Draining || st.Status != plane.DroneDraining {
		t.Errorf("stored after drain %+v", st)
	}
	if ds, _ := c.Drones(ctx); len(ds) != 2 || !ds[0].Draining {
		t.Errorf("the list does not show the drain: %+v", ds)
	}

	dr, err = c.Drain(ctx, "d1", false)
	if err != nil {
		t.Fatal(err)
	}
	if dr.Draining || dr.Status != plane.DroneReady {
		t.Errorf("undrain answered %+v, want d1 ready", dr)
	}
	if st, _ := d.db.FindDroneByID(ctx, "d1"); st.Draining || st.Status != plane.DroneReady {
		t.Errorf("stored after undrain %+v", st)
	}
}

func TestAPIDrainErrors(t *testing.T) {
	t.Parallel()
	d := newDash(t)
	ctx := context.Background()
	if err := d.db.UpsertDrone(ctx, &plane.Drone{ID: "mute"}); err != nil {
		t.Fatal(err)
	}
	admin := d.apiToken("ops", plane.ScopeAdmin)
	for _, path := range []string{"/api/v1/drones/nope/drain", "/api/v1/drones/nope/undrain", "/api/v1/drones/NOT%20A%20DRONE/drain"} {
		if status, code := d.apiCall(admin, http.MethodPost, path); status != http.StatusNotFound || code != plane.ENOTFOUND {
			t.Errorf("POST %s: %d %s, want 404", path, status, code)
		}
	}
	c, err := api.NewClient(d.url, admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Drain(ctx, "mute", true)
	if plane.ErrorCodeOf(err) != plane.EUNAVAILABLE || !strings.Contains(plane.ErrorMessageOf(err), "did not answer") {
		t.Errorf("drain a mute drone: %v, want unavailable", err)
	}
	if st, _ := d.db.FindDroneByID(ctx, "mute"); st.Draining {
		t.Error("a drain the drone did not acknowledge was stored")
	}
	if ds, err := c.Drones(ctx); err != nil || len(ds) != 1 || ds[0].Images == nil {
		t.Errorf("drones %+v, %v", ds, err)
	}
}
