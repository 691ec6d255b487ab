package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"plane"
)

// seenEvent is one project event as the SSE stream or a webhook gave it.
type seenEvent struct {
	ID   string
	Type string
	Data struct {
		BackendID string `json:"backend_id"`
		User      string `json:"user"`
		Users     int    `json:"users"`
		Status    string `json:"status"`
	}
}

// events is what a listener collected, safe to read while it grows.
type events struct {
	mu   sync.Mutex
	list []seenEvent
}

func (e *events) add(ev seenEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, ev)
}

// of returns the events of type typ about backend (and user, when not "-").
func (e *events) of(typ, backend, user string) []seenEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []seenEvent
	for _, ev := range e.list {
		if ev.Type == typ && ev.Data.BackendID == backend && (user == "-" || ev.Data.User == user) {
			out = append(out, ev)
		}
	}
	return out
}

// followEvents reads the project's event stream (GET /api/v1/events)
// until the test ends.
func (c *cluster) followEvents(t *testing.T) *events {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.api+"/api/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/events: %v %v", resp, err)
	}
	got := &events{}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev seenEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				ev.ID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.Type = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				var body struct {
					Data json.RawMessage `json:"data"`
				}
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &body); err == nil {
					_ = json.Unmarshal(body.Data, &ev.Data)
				}
			case line == "":
				if ev.Type != "" {
					got.add(ev)
				}
				ev = seenEvent{}
			}
		}
	}()
	return got
}

// webhookReceiver accepts the deliveries signed with secret, checking
// each signature as the Standard Webhooks specification says, with its
// own code rather than the controller's.
func webhookReceiver(t *testing.T) (*httptest.Server, *events, func(secret string)) {
	t.Helper()
	got := &events{}
	var mu sync.Mutex
	var key []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, ts, sigs := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
		mu.Lock()
		mac := hmac.New(sha256.New, key)
		mu.Unlock()
		mac.Write([]byte(id + "." + ts + "." + string(body)))
		want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		if !strings.Contains(" "+sigs+" ", " "+want+" ") {
			t.Errorf("webhook %s: signature %q, want %q", id, sigs, want)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("webhook body %s: %v", body, err)
		}
		s := seenEvent{ID: id, Type: ev.Type}
		_ = json.Unmarshal(ev.Data, &s.Data)
		got.add(s)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	setSecret := func(secret string) {
		k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		if err != nil {
			t.Fatalf("secret %q: %v", secret, err)
		}
		mu.Lock()
		key = k
		mu.Unlock()
	}
	return srv, got, setSecret
}

// Connections as data, on real Docker and real sockets: three users open
// WebSockets to one backend; the API lists them; a reload within the
// debounce says nothing; one leaves: exactly one user_left, in the
// project's event stream and at a webhook that checks its signature;
// disconnecting another closes their socket within a second and refuses
// their old cookie, while the third stays connected; a keep-alive holds
// an idle backend past max_idle_seconds, then lets it stop.
func TestConnectionsDocker(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	srv, hooked, setSecret := webhookReceiver(t)
	status, data := c.call(http.MethodPost, "/api/v1/webhooks", map[string]any{"url": srv.URL + "/hook", "events": []string{"backend.user_joined", "backend.user_left"}})
	if status != http.StatusCreated {
		t.Fatalf("create webhook: %d %s", status, data)
	}
	var hook struct{ Secret string }
	if err := json.Unmarshal(data, &hook); err != nil || !strings.HasPrefix(hook.Secret, "whsec_") {
		t.Fatalf("webhook answer %s: %v", data, err)
	}
	setSecret(hook.Secret)
	stream := c.followEvents(t)

	_, b := c.spawn(map[string]any{"image": "demo", "max_idle_seconds": 60, "wait": true})
	if b.Status != plane.StatusReady {
		t.Fatalf("spawn: %s", b.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	users := []string{"alice", "bob", "carol"}
	toks, ws := map[string]string{}, map[string]*websocket.Conn{}
	for _, u := range users {
		toks[u] = c.connectToken(b.ID, u, time.Hour)
		ws[u] = c.dialWS(ctx, t, c.proxyClient(), b.ID, toks[u])
	}
	echo := func(u string) error {
		if err := ws[u].Write(ctx, websocket.MessageText, []byte("hi "+u)); err != nil {
			return err
		}
		_, msg, err := ws[u].Read(ctx)
		if err == nil && string(msg) != "hi "+u {
			t.Errorf("%s's echo: %q", u, msg)
		}
		return err
	}
	for _, u := range users {
		if err := echo(u); err != nil {
			t.Fatalf("%s's WebSocket: %v", u, err)
		}
	}

	// The API lists the three, each with one connection.
	var conns struct {
		Connections []struct {
			User        string
			Connections int
			Since       time.Time
		}
	}
	eventually(t, 10*time.Second, "GET connections to list the three users", func() bool {
		status, data := c.call(http.MethodGet, "/api/v1/backends/"+b.ID+"/connections", nil)
		return status == http.StatusOK && json.Unmarshal(data, &conns) == nil && len(conns.Connections) == 3
	})
	for _, u := range users {
		eventually(t, 10*time.Second, "a user_joined of "+u+" in the stream and at the webhook", func() bool {
			return len(stream.of("backend.user_joined", b.ID, u)) == 1 && len(hooked.of("backend.user_joined", b.ID, u)) == 1
		})
	}

	// A reload within the debounce: no leave, no second join.
	ws["alice"].Close(websocket.StatusGoingAway, "reload")
	ws["alice"] = c.dialWS(ctx, t, c.proxyClient(), b.ID, toks["alice"])

	// Bob leaves: exactly one user_left, after the debounce.
	ws["bob"].Close(websocket.StatusNormalClosure, "bye")
	left := time.Now()
	eventually(t, 10*time.Second, "bob's user_left in the stream and at the webhook", func() bool {
		return len(stream.of("backend.user_left", b.ID, "bob")) == 1 && len(hooked.of("backend.user_left", b.ID, "bob")) == 1
	})
	t.Logf("bob's leave reached the stream and the webhook %s after his socket closed", time.Since(left).Round(time.Millisecond))
	if ev := stream.of("backend.user_left", b.ID, "bob")[0]; ev.Data.Users != 2 {
		t.Errorf("bob's leave says %d users stay, want 2", ev.Data.Users)
	}
	// The reload, longer ago than the debounce, said nothing.
	if j, l := len(stream.of("backend.user_joined", b.ID, "alice")), len(stream.of("backend.user_left", b.ID, "alice")); j != 1 || l != 0 {
		t.Errorf("after alice's reload: %d joins and %d leaves of hers, want 1 and 0", j, l)
	}

	// Disconnect alice: her socket closes at once, her old cookie is
	// refused; carol stays.
	start := time.Now()
	readErr := make(chan error, 1)
	go func() { _, _, err := ws["alice"].Read(ctx); readErr <- err }()
	if status, data := c.call(http.MethodPost, "/api/v1/backends/"+b.ID+"/disconnect", map[string]any{"user": "alice"}); status != http.StatusNoContent {
		t.Fatalf("disconnect alice: %d %s", status, data)
	}
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("alice's socket read a message instead of closing")
		}
		t.Logf("alice's WebSocket closed %s after the disconnect was sent", time.Since(start).Round(time.Millisecond))
	case <-time.After(2 * time.Second):
		t.Fatal("alice's WebSocket still open 2 s after the disconnect")
	}
	eventually(t, 10*time.Second, "alice's user_left", func() bool { return len(stream.of("backend.user_left", b.ID, "alice")) == 1 })
	resp, _ := c.proxyGet(t, c.proxyClient(), c.hostURL(b.ID, "/"), tokenCookie(toks["alice"]))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("alice's old cookie after the disconnect: %d, want 401", resp.StatusCode)
	}
	status, data = c.call(http.MethodPost, "/api/v1/backends/"+b.ID+"/connect", map[string]any{"user": "alice"})
	var fresh struct{ Token string }
	if status != http.StatusOK || json.Unmarshal(data, &fresh) != nil {
		t.Fatalf("a fresh connect for alice: %d %s", status, data)
	}
	if resp, _ := c.proxyGet(t, c.proxyClient(), c.hostURL(b.ID, "/"), tokenCookie(fresh.Token)); resp.StatusCode != http.StatusOK {
		t.Errorf("alice's token issued after the disconnect: %d, want 200", resp.StatusCode)
	}
	if err := echo("carol"); err != nil {
		t.Errorf("carol's WebSocket after alice's disconnect: %v", err)
	}
	eventually(t, 10*time.Second, "alice's second user_joined (her fresh token)", func() bool {
		return len(stream.of("backend.user_joined", b.ID, "alice")) == 2
	})
	if n := len(stream.of("backend.user_left", b.ID, "alice")); n != 1 {
		t.Errorf("alice left %d times, want once (the reload is no leave)", n)
	}
	if n := len(stream.of("backend.user_left", b.ID, "bob")); n != 1 {
		t.Errorf("bob left %d times, want once", n)
	}
	ws["carol"].Close(websocket.StatusNormalClosure, "")
}

// TestKeepAliveDocker: a keep-alive holds an idle backend past its
// max_idle_seconds, says so in the API, then lets it stop as idle.
func TestKeepAliveDocker(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	_, b := c.spawn(map[string]any{"image": "demo", "max_idle_seconds": 2, "wait": true})
	status, data := c.call(http.MethodPost, "/api/v1/backends/"+b.ID+"/keepalive", map[string]any{"seconds": 4})
	var kept backendOut
	if status != http.StatusOK || json.Unmarshal(data, &kept) != nil {
		t.Fatalf("keepalive: %d %s", status, data)
	}
	if kept.KeepAliveUntil == nil || !strings.HasPrefix(kept.UpBecause, "kept alive by ") {
		t.Fatalf("keepalive answer: until %v, up_because %q", kept.KeepAliveUntil, kept.UpBecause)
	}
	until := *kept.KeepAliveUntil
	t.Logf("kept alive until %s: %s", until.Format(time.RFC3339Nano), kept.UpBecause)
	// Past max_idle_seconds from ready, still up.
	time.Sleep(time.Until(b.CreatedAt.Add(3 * time.Second)))
	if got := c.get(b.ID); got.Status != plane.StatusReady {
		t.Fatalf("%s after max_idle_seconds under a keep-alive, want ready", got.Status)
	}
	got := c.waitStatus(b.ID, plane.StatusTerminated, 30*time.Second)
	if got.TerminationReason != plane.ReasonIdle {
		t.Errorf("ended %q, want idle", got.TerminationReason)
	}
	for _, h := range got.StatusHistory {
		if h.Status == plane.StatusTerminating && h.Time.Before(until.Add(2*time.Second-100*time.Millisecond)) {
			t.Errorf("stopping at %s, before the keep-alive's end plus max_idle_seconds (%s)", h.Time, until.Add(2*time.Second))
		}
	}
	if status, _ := c.call(http.MethodPost, "/api/v1/backends/"+b.ID+"/keepalive", map[string]any{"seconds": 4}); status != http.StatusConflict {
		t.Errorf("keepalive of a terminated backend: %d, want 409", status)
	}
	if status, data := c.call(http.MethodPost, "/api/v1/backends/"+b.ID+"/keepalive", map[string]any{}); status != http.StatusBadRequest || !strings.Contains(string(data), "seconds") {
		t.Errorf("keepalive without seconds: %d %s", status, data)
	}
}
