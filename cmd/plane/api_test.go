package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"plane"
)

type apiError struct {
	Error struct {
		Code    plane.ErrorCode `json:"code"`
		Message string          `json:"message"`
		Field   string          `json:"field"`
	} `json:"error"`
}

func decodeError(t *testing.T, data []byte) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(data, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("not an error body: %s", data)
	}
	return e
}

// Tokens see only their project's objects, and revoked or expired tokens
// see nothing.
func TestAPIAuthorization(t *testing.T) {
	c := newCluster(t, clusterOpts{noDrone: true})
	ctx := context.Background()
	other, err := c.ctrl.EnsureProject(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := c.ctrl.DB.CreateBackend(ctx, &plane.Backend{ProjectID: other.ID, Image: "demo", ImageRef: "plane-demo:latest", DroneID: "x", CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	otherToken := c.newToken(other.ID, nil)
	past := time.Now().Add(-time.Minute)
	tests := []struct {
		name   string
		token  string
		method string
		path   string
		status int
		code   plane.ErrorCode
	}{
		{"owner reads", otherToken, http.MethodGet, "/api/v1/backends/" + b.ID, 200, ""},
		{"another project reads", c.token, http.MethodGet, "/api/v1/backends/" + b.ID, 404, plane.ENOTFOUND},
		{"another project terminates", c.token, http.MethodPost, "/api/v1/backends/" + b.ID + "/terminate", 404, plane.ENOTFOUND},
		{"another project's events", c.token, http.MethodGet, "/api/v1/backends/" + b.ID + "/events", 404, plane.ENOTFOUND},
		{"another project's logs", c.token, http.MethodGet, "/api/v1/backends/" + b.ID + "/logs", 404, plane.ENOTFOUND},
		{"another project's list", c.token, http.MethodGet, "/api/v1/backends?status=all", 200, ""},
		{"no token", "", http.MethodGet, "/api/v1/backends", 401, plane.EUNAUTHORIZED},
		{"garbage token", "not.a.token", http.MethodGet, "/api/v1/backends", 401, plane.EUNAUTHORIZED},
		{"revoked token", c.newToken(c.project.ID, func(t *plane.Token) { t.RevokedAt = &past }), http.MethodGet, "/api/v1/backends", 401, plane.EUNAUTHORIZED},
		{"expired token", c.newToken(c.project.ID, func(t *plane.Token) { t.CreatedAt = past.Add(-time.Hour); t.ExpiresAt = &past }), http.MethodGet, "/api/v1/backends", 401, plane.EUNAUTHORIZED},
		{"read-only token spawns", c.newToken(c.project.ID, func(t *plane.Token) { t.Scopes = []plane.Scope{plane.ScopeBackendsRead} }), http.MethodPost, "/api/v1/backends", 403, plane.EFORBIDDEN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, data := c.callWith(tt.token, tt.method, tt.path, map[string]any{"image": "demo"})
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, data)
			}
			if tt.code != "" {
				if e := decodeError(t, data); e.Error.Code != tt.code {
					t.Errorf("code %q, want %q", e.Error.Code, tt.code)
				}
			}
			if tt.name == "another project's list" && strings.Contains(string(data), b.ID) {
				t.Errorf("list shows another project's backend: %s", data)
			}
		})
	}
	// Revocation takes effect on a token that worked before.
	tok := c.newToken(c.project.ID, nil)
	if status, _ := c.callWith(tok, http.MethodGet, "/api/v1/backends", nil); status != 200 {
		t.Fatalf("fresh token: %d", status)
	}
	toks, err := c.ctrl.DB.FindTokens(ctx, c.project.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range toks {
		if rec.RevokedAt == nil {
			if err := c.ctrl.DB.RevokeToken(ctx, rec.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if status, _ := c.callWith(tok, http.MethodGet, "/api/v1/backends", nil); status != 401 {
		t.Fatalf("revoked token: %d, want 401", status)
	}
}

// Bad input gets a 400 that names the field, and nothing is created.
func TestAPIValidation(t *testing.T) {
	c := newCluster(t, clusterOpts{noDrone: true})
	bigEnv := map[string]string{}
	for i := range 100 {
		bigEnv["V"+strings.Repeat("X", i)] = "x"
	}
	tests := []struct {
		name  string
		body  any
		field string // the field the message must name
	}{
		{"malformed JSON", `{"image": "demo"`, ""},
		{"not an object", `[1,2]`, ""},
		{"empty body", ``, ""},
		{"unknown field", `{"image":"demo","imgae":"x"}`, "imgae"},
		{"wrong type", `{"image":"demo","max_idle_seconds":"ten"}`, "max_idle_seconds"},
		{"unknown image", map[string]any{"image": "nope"}, "image"},
		{"bad image name", map[string]any{"image": "Not Valid!"}, "image"},
		{"no image", map[string]any{"key": "k"}, "image"},
		{"negative idle", map[string]any{"image": "demo", "max_idle_seconds": -1}, "max_idle_seconds"},
		{"negative lifetime", map[string]any{"image": "demo", "lifetime_seconds": -5}, "lifetime_seconds"},
		{"negative cpu", map[string]any{"image": "demo", "cpu_millis": -100}, "cpu_millis"},
		{"negative memory", map[string]any{"image": "demo", "memory_mb": -1}, "memory_mb"},
		{"oversized env", map[string]any{"image": "demo", "env": bigEnv}, "env"},
		{"oversized env value", map[string]any{"image": "demo", "env": map[string]string{"A": strings.Repeat("x", 40<<10)}}, "env"},
		{"reserved env", map[string]any{"image": "demo", "env": map[string]string{"PORT": "1"}}, "env"},
		{"bad env name", map[string]any{"image": "demo", "env": map[string]string{"1A": "x"}}, "env"},
		{"key too long", map[string]any{"image": "demo", "key": strings.Repeat("k", 300)}, "key"},
		{"trailing data", `{"image":"demo"} {}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, data := c.call(http.MethodPost, "/api/v1/backends", tt.body)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", status, data)
			}
			e := decodeError(t, data)
			if e.Error.Code != plane.EINVALID || e.Error.Message == "" {
				t.Errorf("error %+v", e.Error)
			}
			if tt.field != "" && (e.Error.Field != tt.field || !strings.Contains(e.Error.Message, tt.field)) {
				t.Errorf("field %q message %q, want them to name %q", e.Error.Field, e.Error.Message, tt.field)
			}
		})
	}
	status, data := c.call(http.MethodGet, "/api/v1/backends?status=all", nil)
	if status != 200 || strings.Contains(string(data), `"id"`) {
		t.Fatalf("bad requests left backends behind: %s", data)
	}
}

// With no drone, a spawn is refused with 503 and leaves no backend behind.
func TestSpawnWithoutDrone(t *testing.T) {
	c := newCluster(t, clusterOpts{noDrone: true})
	status, data := c.call(http.MethodPost, "/api/v1/backends", map[string]any{"image": "demo", "key": "k"})
	if status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", status, data)
	}
	if e := decodeError(t, data); e.Error.Code != plane.EUNAVAILABLE || !strings.Contains(e.Error.Message, "drone") {
		t.Errorf("error %+v, want a message about drones", e.Error)
	}
	status, data = c.call(http.MethodGet, "/api/v1/backends?status=all", nil)
	if status != 200 || strings.Contains(string(data), `"id"`) {
		t.Fatalf("a refused spawn left a backend behind: %s", data)
	}
}

func TestImagesAPI(t *testing.T) {
	c := newCluster(t, clusterOpts{noDrone: true})
	steps := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		has    string
	}{
		{"create", "POST", "/api/v1/images", map[string]any{"name": "app", "ref": "registry.example.com:5000/team/app:v1"}, 201, `"port":8080`},
		{"duplicate", "POST", "/api/v1/images", map[string]any{"name": "app", "ref": "x:y"}, 409, "app"},
		{"bad ref", "POST", "/api/v1/images", map[string]any{"name": "app2", "ref": "UPPER CASE"}, 400, "ref"},
		{"bad port", "POST", "/api/v1/images", map[string]any{"name": "app2", "ref": "a:b", "port": 70000}, 400, "port"},
		{"bad policy", "POST", "/api/v1/images", map[string]any{"name": "app2", "ref": "a:b", "pull_policy": "sometimes"}, 400, "pull_policy"},
		{"get", "GET", "/api/v1/images/app", nil, 200, `"pull_policy":"if_not_present"`},
		{"patch", "PATCH", "/api/v1/images/app", map[string]any{"public": true, "env": map[string]string{"A": "1"}}, 200, `"public":true`},
		{"patch bad", "PATCH", "/api/v1/images/app", map[string]any{"max_idle_seconds": -3}, 400, "max_idle_seconds"},
		{"list", "GET", "/api/v1/images", nil, 200, `"name":"app"`},
		{"delete", "DELETE", "/api/v1/images/app", nil, 204, ""},
		{"gone", "GET", "/api/v1/images/app", nil, 404, "app"},
	}
	for _, s := range steps {
		status, data := c.call(s.method, s.path, s.body)
		if status != s.status || !strings.Contains(string(data), s.has) {
			t.Fatalf("%s: %d %s, want %d containing %q", s.name, status, data, s.status, s.has)
		}
	}
}
