package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"plane"
	"plane/auth"
)

// proxyClient sends every request to the drone's proxy, whatever the URL's
// host says, and does not follow redirects.
func (c *cluster) proxyClient() *http.Client { return proxyClientTo(c.drone.ProxyAddr()) }

func proxyClientTo(addr string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			},
			MaxIdleConnsPerHost: 500,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       60 * time.Second,
	}
}

// hostURL is the backend's URL on the proxy's real port.
func (c *cluster) hostURL(id, path string) string {
	_, port, _ := net.SplitHostPort(c.drone.ProxyAddr())
	return "http://" + id + ".plane.localhost:" + port + path
}

// connectToken signs a token with the controller's key, as the API does.
func (c *cluster) connectToken(id, user string, ttl time.Duration) string {
	c.t.Helper()
	key, err := auth.LoadOrCreateKey(c.ctrlCfg.DataDir)
	if err != nil {
		c.t.Fatal(err)
	}
	return plane.SignConnectToken(key, plane.ConnectToken{BackendID: id, User: user, ExpiresAt: time.Now().Add(ttl)})
}

func tokenCookie(tok string) http.Header {
	return http.Header{"Cookie": {"plane_token=" + tok}}
}

func (c *cluster) proxyGet(t *testing.T, client *http.Client, url string, h http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func (c *cluster) dialWS(ctx context.Context, t testing.TB, client *http.Client, id, tok string) *websocket.Conn {
	t.Helper()
	ws, resp, err := websocket.Dial(ctx, strings.Replace(c.hostURL(id, "/ws"), "http", "ws", 1),
		&websocket.DialOptions{HTTPClient: client, HTTPHeader: tokenCookie(tok)})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("websocket to %s: %v (status %d)", id, err, status)
	}
	ws.SetReadLimit(1 << 20)
	return ws
}

func TestProxyTraffic(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	client := c.proxyClient()
	_, b := c.spawn(map[string]any{"image": "demo", "user": "alice", "wait": true})

	// The spawn URL carries a token; the proxy trades it for a cookie.
	u, err := url.Parse(b.URL)
	if err != nil {
		t.Fatal(err)
	}
	tok := u.Query().Get("plane_token")
	if tok == "" {
		t.Fatalf("spawn url %q has no plane_token", b.URL)
	}
	resp, _ := c.proxyGet(t, client, c.hostURL(b.ID, "/some/path?a=1&plane_token="+url.QueryEscape(tok)+"&b=2"), nil)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/some/path?a=1&b=2" {
		t.Fatalf("token in URL: %d Location %q, want 302 to the URL without the token", resp.StatusCode, resp.Header.Get("Location"))
	}
	sc := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"plane_token=" + tok, "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %q", sc, want)
		}
	}

	t.Run("GET with cookie, headers rewritten", func(t *testing.T) {
		h := tokenCookie(tok)
		h.Set("X-Plane-User", "mallory")
		h.Set("X-Plane-Backend", "other")
		h.Set("X-Forwarded-For", "10.9.9.9")
		h.Add("Cookie", "app=1")
		resp, body := c.proxyGet(t, client, c.hostURL(b.ID, "/headers"), h)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		var got struct {
			Host    string              `json:"host"`
			Headers map[string][]string `json:"headers"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		hd := http.Header(got.Headers)
		want := map[string]string{"X-Plane-User": "alice", "X-Plane-Backend": b.ID, "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http"}
		for k, v := range want {
			if vals := hd.Values(k); len(vals) != 1 || vals[0] != v {
				t.Errorf("backend saw %s = %q, want only %q", k, vals, v)
			}
		}
		if !strings.HasPrefix(got.Host, b.ID+".plane.localhost") || hd.Get("X-Forwarded-Host") != got.Host {
			t.Errorf("backend saw host %q, X-Forwarded-Host %q", got.Host, hd.Get("X-Forwarded-Host"))
		}
		if strings.Contains(strings.Join(hd.Values("Cookie"), ";"), "plane_token") {
			t.Errorf("backend saw the token cookie: %q", hd.Values("Cookie"))
		}
		if !strings.Contains(strings.Join(hd.Values("Cookie"), ";"), "app=1") {
			t.Errorf("backend lost the app's cookie: %q", hd.Values("Cookie"))
		}
	})

	t.Run("POST 10 MB", func(t *testing.T) {
		body := make([]byte, 10<<20)
		rand.Read(body)
		req, _ := http.NewRequest(http.MethodPost, c.hostURL(b.ID, "/echo"), bytes.NewReader(body))
		req.Header = tokenCookie(tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil || resp.StatusCode != 200 || n != int64(len(body)) || !bytes.Equal(h.Sum(nil), sha(body)) {
			t.Fatalf("echo: status %d, %d bytes, err %v, same bytes %v", resp.StatusCode, n, err, bytes.Equal(h.Sum(nil), sha(body)))
		}
	})

	t.Run("SSE event by event", func(t *testing.T) {
		// An endless stream: only incremental delivery lets the client see events.
		req, _ := http.NewRequest(http.MethodGet, c.hostURL(b.ID, "/sse?n=0&interval_ms=50"), nil)
		req.Header = tokenCookie(tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		for i := range 5 {
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				if strings.HasPrefix(line, "data:") {
					break
				}
			}
		}
	})

	t.Run("WebSocket echo of 1,000 messages", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ws := c.dialWS(ctx, t, client, b.ID, tok)
		defer ws.CloseNow()
		for i := range 1000 {
			msg := fmt.Sprintf("message %d", i)
			if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_, got, err := ws.Read(ctx)
			if err != nil || string(got) != msg {
				t.Fatalf("echo %d: %q %v", i, got, err)
			}
		}
		ws.Close(websocket.StatusNormalClosure, "")
	})

	t.Run("200 concurrent WebSockets", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var wss []*websocket.Conn
		for range 200 {
			wss = append(wss, c.dialWS(ctx, t, client, b.ID, tok))
		}
		eventually(t, 10*time.Second, "200 open connections counted", func() bool {
			n, _ := c.drone.Proxy.Activity(b.ID)
			return n == 200
		})
		var wg sync.WaitGroup
		errs := make(chan error, len(wss))
		for i, ws := range wss {
			wg.Go(func() {
				msg := fmt.Sprint("ws ", i)
				if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
					errs <- err
					return
				}
				if _, got, err := ws.Read(ctx); err != nil || string(got) != msg {
					errs <- fmt.Errorf("ws %d: %q %v", i, got, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for _, ws := range wss {
			ws.Close(websocket.StatusNormalClosure, "")
		}
		eventually(t, 10*time.Second, "connections closed", func() bool {
			n, _ := c.drone.Proxy.Activity(b.ID)
			return n == 0
		})
	})
}

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func TestProxyAccess(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	client := c.proxyClient()
	_, a := c.spawn(map[string]any{"image": "demo", "wait": true})
	_, other := c.spawn(map[string]any{"image": "demo", "wait": true})
	c.registerImage(c.project.ID, "open", "plane-demo:latest", plane.PullNever)
	_, err := c.ctrl.DB.UpdateImage(context.Background(), c.project.ID, "open", plane.ImageInput{Public: ptr(true)})
	if err != nil {
		t.Fatal(err)
	}
	_, pub := c.spawn(map[string]any{"image": "open", "wait": true})
	good := c.connectToken(a.ID, "bob", time.Hour)
	json := http.Header{"Accept": {"application/json"}}

	tests := []struct {
		name   string
		id     string
		header http.Header
		status int
		has    string
	}{
		{"no token", a.ID, nil, 401, "connect token"},
		{"no token, JSON", a.ID, json, 401, `"status":401`},
		{"token of another backend", a.ID, tokenCookie(c.connectToken(other.ID, "bob", time.Hour)), 403, "another backend"},
		{"expired token", a.ID, tokenCookie(c.connectToken(a.ID, "bob", -time.Minute)), 401, "expired"},
		{"forged token", a.ID, tokenCookie(good[:len(good)-4] + "AAAA"), 401, "invalid"},
		{"cookie", a.ID, tokenCookie(good), 200, "Plane demo"},
		{"bearer, not allowed for this image", a.ID, http.Header{"Authorization": {"Bearer " + good}}, 401, ""},
		{"public image, no token", pub.ID, nil, 200, "Plane demo"},
		{"unknown backend", "nosuchbackend0", nil, 404, "nosuchbackend0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := c.proxyGet(t, client, c.hostURL(tt.id, "/"), tt.header)
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.has) {
				t.Fatalf("%d %s, want %d with %q", resp.StatusCode, body, tt.status, tt.has)
			}
		})
	}
	t.Run("WebSocket needs the cookie", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, resp, err := websocket.Dial(ctx, strings.Replace(c.hostURL(a.ID, "/ws"), "http", "ws", 1), &websocket.DialOptions{HTTPClient: client})
		if err == nil || resp == nil || resp.StatusCode != 401 {
			t.Fatalf("websocket without token: %v, %v", err, resp)
		}
		ws := c.dialWS(ctx, t, client, a.ID, good)
		ws.Close(websocket.StatusNormalClosure, "")
	})
	t.Run("terminated backend", func(t *testing.T) {
		c.call(http.MethodPost, "/api/v1/backends/"+other.ID+"/terminate", map[string]bool{"hard": true})
		c.waitStatus(other.ID, plane.StatusTerminated, 15*time.Second)
		resp, body := c.proxyGet(t, client, c.hostURL(other.ID, "/"), tokenCookie(c.connectToken(other.ID, "", time.Hour)))
		if resp.StatusCode != 410 || !strings.Contains(string(body), other.ID) {
			t.Fatalf("%d %s, want 410 naming the backend", resp.StatusCode, body)
		}
	})
}

// A request sent right after spawn, before the backend is ready, waits and
// succeeds once it is.
func TestProxyWaitsForReady(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	_, b := c.spawn(map[string]any{"image": "demo", "env": map[string]string{"DEMO_READY_DELAY_MS": "1500"}})
	if b.Status == plane.StatusReady {
		t.Fatal("backend ready at once; the test needs it not ready")
	}
	resp, body := c.proxyGet(t, c.proxyClient(), c.hostURL(b.ID, "/healthz"), tokenCookie(c.connectToken(b.ID, "", time.Hour)))
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	c.waitStatus(b.ID, plane.StatusReady, 5*time.Second)
}

// Idle and lifetime limits: an open WebSocket keeps a backend alive; once
// it closes the idle limit ends it; nobody connecting ends it too; the
// lifetime ends it even with an open connection.
func TestIdleAndLifetime(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	client := c.proxyClient()

	t.Run("held WebSocket, then idle", func(t *testing.T) {
		t.Parallel()
		_, b := c.spawn(map[string]any{"image": "demo", "max_idle_seconds": 2, "wait": true})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ws := c.dialWS(ctx, t, client, b.ID, c.connectToken(b.ID, "", time.Hour))
		// Hold it 6 s, three times the idle limit, with no traffic.
		hold := time.NewTimer(6 * time.Second)
		eventually(t, 5*time.Second, "the API to show the open connection", func() bool {
			got := c.get(b.ID)
			return got.Connections == 1 && got.IdleDeadline == nil
		})
		<-hold.C
		if got := c.get(b.ID); got.Status != plane.StatusReady {
			t.Fatalf("status %s (%s) with an open WebSocket, want ready", got.Status, got.TerminationReason)
		}
		ws.Close(websocket.StatusNormalClosure, "")
		closed := time.Now()
		eventually(t, 3*time.Second, "the API to show the idle deadline", func() bool {
			got := c.get(b.ID)
			return got.Connections == 0 && got.IdleDeadline != nil || got.Status == plane.StatusTerminated
		})
		got := c.waitStatus(b.ID, plane.StatusTerminated, 10*time.Second)
		if got.TerminationReason != plane.ReasonIdle {
			t.Fatalf("reason %q, want idle", got.TerminationReason)
		}
		var terminating time.Time
		for _, h := range got.StatusHistory {
			if h.Status == plane.StatusTerminating {
				terminating = h.Time
			}
		}
		if d := terminating.Sub(closed); d < 1900*time.Millisecond || d > 4*time.Second {
			t.Errorf("idle shutdown began %s after the close, want 2–4 s", d)
		}
	})
	t.Run("nobody connects", func(t *testing.T) {
		t.Parallel()
		_, b := c.spawn(map[string]any{"image": "demo", "max_idle_seconds": 1, "wait": true})
		if got := c.waitStatus(b.ID, plane.StatusTerminated, 10*time.Second); got.TerminationReason != plane.ReasonIdle {
			t.Fatalf("reason %q, want idle", got.TerminationReason)
		}
	})
	t.Run("lifetime with an open connection", func(t *testing.T) {
		t.Parallel()
		_, b := c.spawn(map[string]any{"image": "demo", "lifetime_seconds": 3, "wait": true})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ws := c.dialWS(ctx, t, client, b.ID, c.connectToken(b.ID, "", time.Hour))
		defer ws.CloseNow()
		got := c.waitStatus(b.ID, plane.StatusTerminated, 15*time.Second)
		if got.TerminationReason != plane.ReasonLifetime {
			t.Fatalf("reason %q, want lifetime", got.TerminationReason)
		}
		// The open WebSocket ends with the backend.
		if _, _, err := ws.Read(ctx); err == nil {
			t.Error("websocket still open after the backend terminated")
		}
	})
}
