package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
	"plane/auth"
)

// connectPublicKey is the key that verifies the cluster's connect tokens.
func (c *cluster) connectPublicKey() ed25519.PublicKey {
	c.t.Helper()
	key, err := auth.LoadOrCreateKey(c.ctrlCfg.DataDir)
	if err != nil {
		c.t.Fatal(err)
	}
	return key.Public().(ed25519.PublicKey)
}

// backendURL is the URL of a backend without a token.
func (c *cluster) backendURL(id string) string {
	return strings.ReplaceAll(c.ctrlCfg.BackendURL, "{id}", id)
}

// splitConnectURL returns rawURL without its query and its plane_token;
// it fails the test if the query holds anything else.
func splitConnectURL(t *testing.T, rawURL string) (base, token string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("url %q: %v", rawURL, err)
	}
	q := u.Query()
	token = q.Get("plane_token")
	q.Del("plane_token")
	if len(q) != 0 {
		t.Errorf("url %q has more than plane_token in its query", rawURL)
	}
	u.RawQuery = ""
	return u.String(), token
}

// verifyConnectToken checks that tok is a valid token of the cluster for
// backend id and user, expiring about ttl from now.
func (c *cluster) verifyConnectToken(t *testing.T, tok, id, user string, ttl time.Duration) plane.ConnectToken {
	t.Helper()
	ct, err := plane.VerifyConnectToken(tok, time.Now(), c.connectPublicKey())
	if err != nil {
		t.Fatalf("token %q: %v", tok, err)
	}
	if ct.BackendID != id || ct.User != user {
		t.Errorf("token names backend %q user %q, want %q %q", ct.BackendID, ct.User, id, user)
	}
	if d := time.Until(ct.ExpiresAt) - ttl; d < -5*time.Second || d > time.Second {
		t.Errorf("token expires at %v, want about %v from now", ct.ExpiresAt, ttl)
	}
	return ct
}

// spawnSpecs records the spawn specs the controller sends to the drone;
// NATS delivers a copy of each request to every subscriber, and only the
// drone replies.
func (c *cluster) spawnSpecs(t *testing.T) <-chan plane.SpawnSpec {
	t.Helper()
	nc, err := nats.Connect(c.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ch := make(chan plane.SpawnSpec, 16)
	if _, err := nc.Subscribe(plane.SubjectSpawn(c.droneID), func(m *nats.Msg) {
		var spec plane.SpawnSpec
		if err := json.Unmarshal(m.Data, &spec); err == nil {
			ch <- spec
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

func nextSpec(t *testing.T, ch <-chan plane.SpawnSpec, id string) plane.SpawnSpec {
	t.Helper()
	for {
		select {
		case spec := <-ch:
			if spec.BackendID == id {
				return spec
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no spawn spec for %s on NATS", id)
		}
	}
}

// A spawn answers with a URL that carries a connect token for the
// request's user, unless the backend is public; the spec tells the drone
// the image's public and allow_bearer flags.
func TestConnectSpawnURL(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	specs := c.spawnSpecs(t)

	status, b := c.spawn(map[string]any{"image": "demo", "key": "room-1", "user": "Zoë <zoe@example.com>"})
	if status != http.StatusCreated {
		t.Fatalf("spawn: %d", status)
	}
	base, tok := splitConnectURL(t, b.URL)
	if base != c.backendURL(b.ID) || tok == "" {
		t.Fatalf("url %q, want %s?plane_token=…", b.URL, c.backendURL(b.ID))
	}
	c.verifyConnectToken(t, tok, b.ID, "Zoë <zoe@example.com>", plane.DefaultConnectTokenTTL)
	if spec := nextSpec(t, specs, b.ID); spec.Public || spec.AllowBearer {
		t.Errorf("spec of a private image: public %v allow_bearer %v", spec.Public, spec.AllowBearer)
	}

	// The backend found by its key: a token for this request's user.
	status, again := c.spawn(map[string]any{"image": "demo", "key": "room-1", "user": "bob"})
	if status != http.StatusOK || again.ID != b.ID {
		t.Fatalf("respawn: %d %s, want 200 %s", status, again.ID, b.ID)
	}
	_, tok = splitConnectURL(t, again.URL)
	c.verifyConnectToken(t, tok, b.ID, "bob", plane.DefaultConnectTokenTTL)

	// Elsewhere the URL is bare.
	if got := c.get(b.ID).URL; got != c.backendURL(b.ID) {
		t.Errorf("GET url %q, want %q", got, c.backendURL(b.ID))
	}

	// A public image's backend needs no token.
	if st, data := c.call(http.MethodPost, "/api/v1/images", map[string]any{
		"name": "open", "ref": "plane-demo:latest", "pull_policy": "never", "public": true, "allow_bearer": true,
	}); st != http.StatusCreated {
		t.Fatalf("register public image: %d %s", st, data)
	}
	_, pb := c.spawn(map[string]any{"image": "open", "user": "alice"})
	if pb.URL != c.backendURL(pb.ID) {
		t.Errorf("public backend url %q, want %q without a token", pb.URL, c.backendURL(pb.ID))
	}
	if spec := nextSpec(t, specs, pb.ID); !spec.Public || !spec.AllowBearer {
		t.Errorf("spec of a public image with allow_bearer: public %v allow_bearer %v", spec.Public, spec.AllowBearer)
	}
}

type connectOut struct {
	URL       string    `json:"url"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

func TestConnectEndpoint(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	ctx := context.Background()
	_, b := c.spawn(map[string]any{"image": "demo", "user": "alice", "wait": true})
	if b.Status != plane.StatusReady {
		t.Fatalf("backend %s (%s)", b.Status, b.Error)
	}
	other, err := c.ctrl.EnsureProject(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	ob, _, err := c.ctrl.DB.CreateBackend(ctx, &plane.Backend{ProjectID: other.ID, Image: "demo", ImageRef: "plane-demo:latest", DroneID: "x", CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	// It has no container: end it before the harness waits for live
	// backends to settle.
	t.Cleanup(func() {
		ev := plane.BackendEvent{BackendID: ob.ID, DroneID: "x", Status: plane.StatusTerminated, Time: time.Now(), Reason: plane.ReasonRequested}
		if _, err := c.ctrl.Dispatch.Apply(ctx, ev); err != nil {
			t.Error(err)
		}
	})
	readOnly := c.newToken(c.project.ID, func(t *plane.Token) { t.Scopes = []plane.Scope{plane.ScopeBackendsRead} })
	path := "/api/v1/backends/" + b.ID + "/connect"

	ok := []struct {
		name string
		body any
		user string
	}{
		{"no body: the backend's user", nil, "alice"},
		{"empty object", map[string]any{}, "alice"},
		{"null user", `{"user":null}`, "alice"},
		{"another user", map[string]any{"user": "bob"}, "bob"},
		{"no user", map[string]any{"user": ""}, ""},
		{"longest user", map[string]any{"user": strings.Repeat("u", plane.MaxUserLen)}, strings.Repeat("u", plane.MaxUserLen)},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			status, data := c.call(http.MethodPost, path, tt.body)
			if status != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", status, data)
			}
			var out connectOut
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&out); err != nil {
				t.Fatalf("decode %s: %v", data, err)
			}
			ct := c.verifyConnectToken(t, out.Token, b.ID, tt.user, plane.DefaultConnectTokenTTL)
			if !out.ExpiresAt.Equal(ct.ExpiresAt) {
				t.Errorf("expires_at %v, token expires %v", out.ExpiresAt, ct.ExpiresAt)
			}
			base, tok := splitConnectURL(t, out.URL)
			if base != c.backendURL(b.ID) || tok != out.Token {
				t.Errorf("url %q, want %s?plane_token=<token>", out.URL, c.backendURL(b.ID))
			}
		})
	}

	bad := []struct {
		name   string
		token  string
		path   string
		body   any
		status int
		code   plane.ErrorCode
		field  string
	}{
		{"user too long", c.token, path, map[string]any{"user": strings.Repeat("u", plane.MaxUserLen+1)}, 400, plane.EINVALID, "user"},
		{"user with a control character", c.token, path, map[string]any{"user": "a\x01b"}, 400, plane.EINVALID, "user"},
		{"user not a string", c.token, path, `{"user":42}`, 400, plane.EINVALID, "user"},
		{"unknown field", c.token, path, `{"usr":"x"}`, 400, plane.EINVALID, "usr"},
		{"malformed JSON", c.token, path, `{"user":`, 400, plane.EINVALID, ""},
		{"too large", c.token, path, `{"user":"` + strings.Repeat("u", 5000) + `"}`, 400, plane.EINVALID, ""},
		{"another project's backend", c.token, "/api/v1/backends/" + ob.ID + "/connect", nil, 404, plane.ENOTFOUND, ""},
		{"unknown backend", c.token, "/api/v1/backends/zzzzzzzzzzzzzz/connect", nil, 404, plane.ENOTFOUND, ""},
		{"malformed ID", c.token, "/api/v1/backends/NOT-AN-ID/connect", nil, 404, plane.ENOTFOUND, ""},
		{"read-only token", readOnly, path, nil, 403, plane.EFORBIDDEN, ""},
		{"no token", "", path, nil, 401, plane.EUNAUTHORIZED, ""},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			status, data := c.callWith(tt.token, http.MethodPost, tt.path, tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, data)
			}
			e := decodeError(t, data)
			if e.Error.Code != tt.code {
				t.Errorf("code %q, want %q", e.Error.Code, tt.code)
			}
			if tt.field != "" && e.Error.Field != tt.field {
				t.Errorf("field %q, want %q (%s)", e.Error.Field, tt.field, e.Error.Message)
			}
			if bytes.Contains(data, []byte("pc1.")) {
				t.Errorf("an error carries a token: %s", data)
			}
		})
	}

	// Once terminated, nobody can connect.
	if status, data := c.call(http.MethodPost, "/api/v1/backends/"+b.ID+"/terminate", map[string]any{"hard": true}); status != http.StatusAccepted {
		t.Fatalf("terminate: %d %s", status, data)
	}
	c.waitStatus(b.ID, plane.StatusTerminated, 15*time.Second)
	status, data := c.call(http.MethodPost, path, nil)
	if status != http.StatusConflict {
		t.Fatalf("connect to a terminated backend: %d %s, want 409", status, data)
	}
	if e := decodeError(t, data); e.Error.Code != plane.ECONFLICT || !strings.Contains(e.Error.Message, "terminated") {
		t.Errorf("error %+v, want a conflict saying the backend is terminated", e.Error)
	}
}

// The controller's connect-token lifetime is configurable.
func TestConnectTokenTTL(t *testing.T) {
	c := newCluster(t, clusterOpts{noDrone: true})
	c.ctrl.Close()
	c.ctrlCfg.ConnectTokenTTL = 10 * time.Minute
	c.startController()
	b, out := c.storedBackendConnect(t, "u")
	c.verifyConnectToken(t, out.Token, b.ID, "u", 10*time.Minute)
}

// Drones fetch the key that verifies connect tokens over NATS.
func TestConnectKeyOverNATS(t *testing.T) {
	c := newCluster(t, clusterOpts{noDrone: true})
	nc, err := nats.Connect(c.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	m, err := nc.Request(plane.SubjectConnectKey, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", plane.SubjectConnectKey, err)
	}
	k, err := plane.Decode[plane.ConnectKey](m.Data)
	if err != nil {
		t.Fatalf("answer %s: %v", m.Data, err)
	}
	pub := c.connectPublicKey()
	if !pub.Equal(ed25519.PublicKey(k.PublicKey)) {
		t.Fatalf("key %x, want the controller's %x", k.PublicKey, pub)
	}
	// The key verifies what the API signs.
	_, out := c.storedBackendConnect(t, "")
	if _, err := plane.VerifyConnectToken(out.Token, time.Now(), ed25519.PublicKey(k.PublicKey)); err != nil {
		t.Fatalf("the key from NATS does not verify the API's token: %v", err)
	}
}

// allow_bearer round-trips through the images API, false by default.
func TestImagesAllowBearer(t *testing.T) {
	c := newCluster(t, clusterOpts{noDrone: true})
	steps := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		want   bool
	}{
		{"default", "POST", "/api/v1/images", map[string]any{"name": "plain", "ref": "a:b"}, 201, false},
		{"create", "POST", "/api/v1/images", map[string]any{"name": "app", "ref": "a:b", "allow_bearer": true}, 201, true},
		{"get", "GET", "/api/v1/images/app", nil, 200, true},
		{"patch other field", "PATCH", "/api/v1/images/app", map[string]any{"port": 9000}, 200, true},
		{"patch off", "PATCH", "/api/v1/images/app", map[string]any{"allow_bearer": false}, 200, false},
		{"get after patch", "GET", "/api/v1/images/app", nil, 200, false},
		{"patch on", "PATCH", "/api/v1/images/plain", map[string]any{"allow_bearer": true}, 200, true},
	}
	for _, s := range steps {
		status, data := c.call(s.method, s.path, s.body)
		if status != s.status {
			t.Fatalf("%s: %d %s, want %d", s.name, status, data, s.status)
		}
		var img map[string]any
		if err := json.Unmarshal(data, &img); err != nil {
			t.Fatal(err)
		}
		if got, ok := img["allow_bearer"].(bool); !ok || got != s.want {
			t.Fatalf("%s: allow_bearer %v in %s, want %v", s.name, img["allow_bearer"], data, s.want)
		}
	}
	status, data := c.call("PATCH", "/api/v1/images/app", `{"allow_bearer":"yes"}`)
	if status != 400 || decodeError(t, data).Error.Field != "allow_bearer" {
		t.Fatalf("bad allow_bearer: %d %s, want 400 naming the field", status, data)
	}
	status, data = c.call("GET", "/api/v1/images", nil)
	if status != 200 || !strings.Contains(string(data), `"allow_bearer":true`) || !strings.Contains(string(data), `"allow_bearer":false`) {
		t.Fatalf("list: %d %s", status, data)
	}
}

// storedBackendConnect stores a backend of the cluster's project (no drone
// needed) and asks the API for a connect URL to it.
func (c *cluster) storedBackendConnect(t *testing.T, user string) (*plane.Backend, connectOut) {
	t.Helper()
	b, _, err := c.ctrl.DB.CreateBackend(context.Background(), &plane.Backend{ProjectID: c.project.ID, Image: "demo", ImageRef: "plane-demo:latest", DroneID: "x", User: user, CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	status, data := c.call(http.MethodPost, "/api/v1/backends/"+b.ID+"/connect", nil)
	if status != http.StatusOK {
		t.Fatalf("connect: %d %s", status, data)
	}
	var out connectOut
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return b, out
}
