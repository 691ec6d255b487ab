package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"plane"
)

// These tests run the whole proxy in-process: a Proxy serving on a loopback
// listener, in front of net/http backends.

const testDomain = "plane.localhost"

// testBackend is an app behind the proxy.
type testBackend struct {
	name        string
	srv         *httptest.Server
	newConns    atomic.Int64 // connections accepted
	closedConns atomic.Int64 // connections closed or hijacked

	sseNext       chan struct{} // lets /sse send its second event
	held          chan struct{} // /hold arrived
	release       chan struct{} // lets /hold answer
	uploadStarted chan struct{} // closed when /upload read its first byte
	uploadOnce    sync.Once
}

// echoed is what /echo answers: the request as the backend saw it.
type echoed struct {
	Method, Host, URI, Proto string
	Header, Trailer          http.Header
	TransferEncoding         []string
	ContentLength            int64
	Body                     string
}

func newBackend(t *testing.T, name string) *testBackend {
	t.Helper()
	b := &testBackend{
		name:          name,
		sseNext:       make(chan struct{}),
		held:          make(chan struct{}, 16),
		release:       make(chan struct{}),
		uploadStarted: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echoed{
			Method: r.Method, Host: r.Host, URI: r.RequestURI, Proto: r.Proto,
			Header: r.Header, Trailer: r.Trailer, TransferEncoding: r.TransferEncoding,
			ContentLength: r.ContentLength, Body: string(body),
		})
	})
	mux.HandleFunc("/fixed", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		var first [1]byte
		if _, err := io.ReadFull(r.Body, first[:]); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		b.uploadOnce.Do(func() { close(b.uploadStarted) })
		h := sha256.New()
		h.Write(first[:])
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "%d %x", n+1, h.Sum(nil))
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		for _, s := range []string{"one,", "two,", "three"} {
			io.WriteString(w, s)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-b.sseNext:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "data: second\n\n")
	})
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		b.held <- struct{}{}
		select {
		case <-b.release:
		case <-r.Context().Done():
		}
		io.WriteString(w, b.name)
	})
	mux.HandleFunc("/eof", func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until EOF")
		brw.Flush()
		c.Close()
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		// First tell the client what the backend saw of it.
		hello := r.Header.Get("X-Plane-User") + "|" + r.Header.Get("Cookie") + "|" + r.URL.RawQuery
		if err := c.Write(ctx, websocket.MessageText, []byte(hello)); err != nil {
			return
		}
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, data); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, b.name)
	})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", b.name)
		mux.ServeHTTP(w, r)
	})
	b.srv = httptest.NewUnstartedServer(handler)
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			b.newConns.Add(1)
		case http.StateClosed, http.StateHijacked:
			b.closedConns.Add(1)
		}
	}
	b.srv.Start()
	t.Cleanup(func() {
		// Handlers stuck on a request the proxy left hanging would keep
		// Close waiting.
		b.srv.CloseClientConnections()
		b.srv.Close()
	})
	return b
}

func (b *testBackend) addr() string { return b.srv.Listener.Addr().String() }

// testEnv is a proxy serving on loopback with a fresh token key.
type testEnv struct {
	t    testing.TB
	p    *Proxy
	addr string
	port string
	priv ed25519.PrivateKey
}

func newEnv(t testing.TB, cfg Config, secure bool) *testEnv {
	t.Helper()
	if cfg.Domain == "" {
		cfg.Domain = testDomain
	}
	if cfg.WaitReady == 0 {
		cfg.WaitReady = 10 * time.Second
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	p := New(cfg)
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	p.SetKeys(pub)
	ln := listenLoopback(t)
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln, secure) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return &testEnv{t: t, p: p, addr: ln.Addr().String(), port: port, priv: priv}
}

// listenLoopback listens on a free loopback port.
func listenLoopback(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// newEnvWithB1 is a plain proxy (Config{}, not secure) routing backend b1,
// public or not, to a fresh test backend.
func newEnvWithB1(t *testing.T, public bool) (*testEnv, *testBackend) {
	t.Helper()
	e := newEnv(t, Config{}, false)
	b := newBackend(t, "b1")
	e.route("b1", b, public)
	return e, b
}

// route makes backend id reachable at b; public needs no token.
func (e *testEnv) route(id string, b *testBackend, public bool) Route {
	r := Route{BackendID: id, Address: b.addr(), Status: plane.StatusReady, Public: public}
	e.p.SetRoute(r)
	return r
}

func (e *testEnv) token(id, user string, ttl time.Duration) string {
	return plane.SignConnectToken(e.priv, plane.ConnectToken{BackendID: id, User: user, ExpiresAt: time.Now().Add(ttl)})
}

func (e *testEnv) host(id string) string { return id + "." + testDomain + ":" + e.port }
func (e *testEnv) url(id, path string) string {
	return "http://" + e.host(id) + path
}

// client returns an HTTP client that sends everything to the proxy, does
// not follow redirects, and counts the connections it opens.
func (e *testEnv) client() (*http.Client, *atomic.Int64) {
	dials := new(atomic.Int64)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "tcp", e.addr)
		},
		DisableCompression: true,
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, dials
}

func (e *testEnv) do(c *http.Client, method, url string, hdr http.Header, body io.Reader) *http.Response {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, url, err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// get sends a GET and reads the whole answer.
func (e *testEnv) get(c *http.Client, url string, hdr http.Header) (*http.Response, string) {
	e.t.Helper()
	resp := e.do(c, "GET", url, hdr, nil)
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, string(body)
}

func decodeEcho(t *testing.T, resp *http.Response, body string) echoed {
	t.Helper()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200; body %q", resp.StatusCode, body)
	}
	var e echoed
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("decoding echo %q: %v", body, err)
	}
	return e
}

func cookieHeader(tok string) http.Header { return http.Header{"Cookie": {"plane_token=" + tok}} }

// rawConn is a client connection driven byte by byte.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (e *testEnv) dial() *rawConn {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	e.t.Cleanup(func() { c.Close() })
	return &rawConn{t: e.t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("send: %v", err)
	}
}

// response reads one response with its body.
func (rc *rawConn) response(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("reading response body: %v", err)
	}
	return resp, string(body)
}

// roundTrip sends one request and reads the response to it, with its body;
// the method is the first word of req.
func (rc *rawConn) roundTrip(req string) (*http.Response, string) {
	rc.t.Helper()
	rc.send(req)
	method, _, _ := strings.Cut(req, " ")
	return rc.response(method)
}

// expectOK sends req and checks that the answer is a 200 with body want.
func (rc *rawConn) expectOK(req, want string) {
	rc.t.Helper()
	if resp, body := rc.roundTrip(req); resp.StatusCode != 200 || body != want {
		rc.t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
}

// expectClosed checks that the proxy closed the connection.
func (rc *rawConn) expectClosed() {
	rc.t.Helper()
	if b, err := rc.br.ReadByte(); err == nil {
		rc.t.Fatalf("connection still open: read %q", b)
	} else if isTimeout(err) {
		rc.t.Fatal("connection still open")
	}
}

// expectSilence checks that nothing arrives for a little while.
func (rc *rawConn) expectSilence(d time.Duration) {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(d))
	if _, err := rc.br.Peek(1); !isTimeout(err) {
		rc.t.Fatalf("expected no answer yet, got %v", err)
	}
	rc.c.SetReadDeadline(time.Now().Add(20 * time.Second))
}

// checkPage checks one of the proxy's own error pages.
func checkPage(t *testing.T, resp *http.Response, body string, status int, contains string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %q", resp.StatusCode, status, body)
	}
	if !strings.Contains(body, contains) {
		t.Fatalf("page %q does not say %q", body, contains)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", resp.Header.Get("Cache-Control"))
	}
}

// waitFor polls cond, which has no event to wait on, until a deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitIdle waits until backend id has no request or WebSocket in flight;
// after, if any, says after what, for the failure message.
func (e *testEnv) waitIdle(id, after string) {
	e.t.Helper()
	what := "Activity to drop to 0"
	if after != "" {
		what += " after " + after
	}
	waitFor(e.t, what, func() bool { n, _ := e.p.Activity(id); return n == 0 })
}

// heldRequest is a GET /hold in flight, which its backend answers only once
// released.
type heldRequest struct {
	t    testing.TB
	b    *testBackend
	done chan string // the body of the answer, or the error
}

// holdRequest sends GET /hold for backend id through c, and returns once it
// reached b, which holds it.
func (e *testEnv) holdRequest(c *http.Client, id string, b *testBackend) *heldRequest {
	e.t.Helper()
	h := &heldRequest{t: e.t, b: b, done: make(chan string, 1)}
	go func() {
		req, _ := http.NewRequest("GET", e.url(id, "/hold"), nil)
		resp, err := c.Do(req)
		if err != nil {
			h.done <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h.done <- string(body)
	}()
	select {
	case <-b.held:
	case <-time.After(10 * time.Second):
		e.t.Fatal("request did not reach the backend")
	}
	return h
}

// release lets the backend answer and checks that the client got want.
func (h *heldRequest) release(want string) {
	h.t.Helper()
	close(h.b.release)
	if got := <-h.done; got != want {
		h.t.Fatalf("held request: %q", got)
	}
}

// expectOneConnEach checks that the client opened a single connection to
// the proxy and the proxy a single one to b; during says for what.
func expectOneConnEach(t *testing.T, dials *atomic.Int64, b *testBackend, during string) {
	t.Helper()
	if n := dials.Load(); n != 1 {
		t.Errorf("client opened %d connections to the proxy%s, want 1", n, during)
	}
	if n := b.newConns.Load(); n != 1 {
		t.Errorf("proxy opened %d connections to the backend%s, want 1", n, during)
	}
}

func TestProxyHostRouting(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, true)
	rc := e.dial() // one connection: a 404 for a body-less request keeps it open
	tests := []struct {
		host   string
		status int
		say    string
	}{
		{host: "b1.plane.localhost", status: 200},
		{host: "b1.plane.localhost:" + e.port, status: 200},
		{host: "B1.Plane.LOCALHOST:8080", status: 200},
		{host: "zz.plane.localhost", status: 404, say: "there is no backend zz on this drone"},
		{host: "a.b1.plane.localhost", status: 404, say: "no backend is served at a.b1.plane.localhost"},
		{host: "plane.localhost", status: 404, say: "no backend is served at"},
		{host: "b1.example.com", status: 404, say: "no backend is served at"},
		{host: "b1.plane.localhost.example.com", status: 404, say: "no backend is served at"},
		{host: "127.0.0.1:" + e.port, status: 404, say: "no backend is served at"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			resp, body := rc.roundTrip("GET /echo HTTP/1.1\r\nHost: " + tt.host + "\r\n\r\n")
			if tt.status != 200 {
				checkPage(t, resp, body, tt.status, tt.say)
				if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
					t.Errorf("Content-Type %q, want HTML", resp.Header.Get("Content-Type"))
				}
				return
			}
			got := decodeEcho(t, resp, body)
			if got.Host != tt.host || got.Header.Get("X-Forwarded-Host") != tt.host {
				t.Errorf("backend saw Host %q, X-Forwarded-Host %q; want %q", got.Host, got.Header.Get("X-Forwarded-Host"), tt.host)
			}
			if got.Header.Get("X-Plane-Backend") != "b1" {
				t.Errorf("X-Plane-Backend = %q", got.Header.Get("X-Plane-Backend"))
			}
		})
	}
	t.Run("no host", func(t *testing.T) {
		resp, body := rc.roundTrip("GET /echo HTTP/1.1\r\n\r\n")
		checkPage(t, resp, body, 400, "no Host header")
		rc.expectClosed()
	})
}

// The backend learns its key from every request (X-Plane-Key), as it
// learns its user: an app started before it had a key (a warm pool's) has
// no other way. A client cannot send its own.
func TestProxyKeyHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, false)
	b := newBackend(t, "b")
	e.p.SetRoute(Route{BackendID: "b1", Key: "room-7 ünïcode", Address: b.addr(), Status: plane.StatusReady, Public: true})
	e.p.SetRoute(Route{BackendID: "b2", Address: b.addr(), Status: plane.StatusReady, Public: true})
	rc := e.dial()
	for _, tc := range []struct{ id, want string }{{"b1", "room-7 ünïcode"}, {"b2", ""}} {
		resp, body := rc.roundTrip("GET /echo HTTP/1.1\r\nHost: " + tc.id + ".plane.localhost\r\nX-Plane-Key: forged\r\n\r\n")
		got := decodeEcho(t, resp, body)
		if keys := got.Header.Values("X-Plane-Key"); len(keys) != 1 || keys[0] != tc.want {
			t.Errorf("%s: the backend saw X-Plane-Key %q, want only %q", tc.id, keys, tc.want)
		}
	}
}

// A suspended backend is woken (Config.Resume) before a request it may
// serve is forwarded; one that cannot be woken answers 503; a request it
// may not serve (no token) does not wake it.
func TestProxyResumesSuspended(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	woken := map[string]int{}
	e := newEnv(t, Config{Resume: func(_ context.Context, id string) error {
		mu.Lock()
		defer mu.Unlock()
		woken[id]++
		if id == "stuck" {
			return errors.New("the runtime refused")
		}
		return nil
	}}, false)
	b := newBackend(t, "b")
	for _, id := range []string{"b1", "stuck"} {
		e.p.SetRoute(Route{BackendID: id, Address: b.addr(), Status: plane.StatusReady, Public: true, Suspended: true})
	}
	e.p.SetRoute(Route{BackendID: "private", Address: b.addr(), Status: plane.StatusReady, Suspended: true})
	c, _ := e.client()
	if resp, body := e.get(c, e.url("b1", "/fixed"), nil); resp.StatusCode != 200 || body != "hello" {
		t.Fatalf("suspended backend: %d %q", resp.StatusCode, body)
	}
	resp, body := e.get(c, e.url("stuck", "/fixed"), nil)
	checkPage(t, resp, body, 503, "could not be woken")
	resp, body = e.get(c, e.url("private", "/fixed"), nil)
	checkPage(t, resp, body, 401, "needs a connect token")
	mu.Lock()
	defer mu.Unlock()
	if woken["b1"] != 1 || woken["stuck"] != 1 || woken["private"] != 0 {
		t.Errorf("woken %v, want b1 and stuck once, private never", woken)
	}
}

func TestProxyLookup(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Lookup: func(id string) (plane.BackendStatus, bool) {
		switch id {
		case "gone", "b1":
			return plane.StatusTerminated, true
		case "adopting":
			return plane.StatusReady, true // in the drone's store, not routed yet
		}
		return "", false
	}}, false)
	c, _ := e.client()

	resp, body := e.get(c, e.url("gone", "/"), nil)
	checkPage(t, resp, body, 410, "this backend has terminated")
	if !strings.Contains(body, "<h1>Gone</h1>") || !strings.Contains(body, "<code>gone</code>") {
		t.Errorf("HTML page %q lacks its title or backend", body)
	}
	resp, body = e.get(c, e.url("nobody", "/"), nil)
	checkPage(t, resp, body, 404, "there is no backend nobody")
	resp, body = e.get(c, e.url("adopting", "/"), nil)
	checkPage(t, resp, body, 503, "the drone is starting")

	// JSON for clients that ask for it.
	resp, body = e.get(c, e.url("gone", "/"), http.Header{"Accept": {"application/json, text/plain"}})
	if resp.StatusCode != 410 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q; want 410 JSON", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var pd pageData
	if err := json.Unmarshal([]byte(body), &pd); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	if want := (pageData{Status: 410, Title: "Gone", Message: "this backend has terminated", Backend: "gone", BackendStatus: "terminated"}); pd != want {
		t.Errorf("JSON page = %+v, want %+v", pd, want)
	}

	// A route that terminates is dropped; Lookup answers for it then.
	b := newBackend(t, "b1")
	e.route("b1", b, true)
	if resp, body := e.get(c, e.url("b1", "/"), nil); resp.StatusCode != 200 {
		t.Fatalf("ready backend: status %d %q", resp.StatusCode, body)
	}
	e.p.SetRoute(Route{BackendID: "b1", Status: plane.StatusTerminated})
	resp, body = e.get(c, e.url("b1", "/"), nil)
	checkPage(t, resp, body, 410, "terminated")

	// A route that is terminating is still in the table: also 410.
	e.p.SetRoute(Route{BackendID: "b2", Address: b.addr(), Status: plane.StatusReady, Public: true})
	e.p.SetRoute(Route{BackendID: "b2", Address: b.addr(), Status: plane.StatusTerminating, Public: true})
	resp, body = e.get(c, e.url("b2", "/"), http.Header{"Accept": {"application/json"}})
	checkPage(t, resp, body, 410, `"backend_status":"terminating"`)

	// HEAD gets the status without a body; the connection stays usable.
	rc := e.dial()
	rc.send("HEAD / HTTP/1.1\r\nHost: gone.plane.localhost\r\n\r\nGET / HTTP/1.1\r\nHost: nobody.plane.localhost\r\n\r\n")
	resp, body = rc.response("HEAD")
	if resp.StatusCode != 410 || body != "" {
		t.Fatalf("HEAD: status %d body %q", resp.StatusCode, body)
	}
	resp, body = rc.response("GET")
	checkPage(t, resp, body, 404, "nobody")
}

func TestProxyKeepAlive(t *testing.T) {
	t.Parallel()
	e, b := newEnvWithB1(t, true)
	c, dials := e.client()
	for i := range 20 {
		resp, body := e.get(c, e.url("b1", fmt.Sprintf("/echo?i=%d", i)), nil)
		if got := decodeEcho(t, resp, body); got.URI != fmt.Sprintf("/echo?i=%d", i) {
			t.Fatalf("request %d reached the backend as %q", i, got.URI)
		}
	}
	expectOneConnEach(t, dials, b, "")

	// Another client connection reuses the same upstream connection.
	e.dial().expectOK("GET /fixed HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n", "hello")
	if n := b.newConns.Load(); n != 1 {
		t.Errorf("proxy opened %d connections to the backend, want 1", n)
	}
}

func TestProxyPipelined(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, true)
	rc := e.dial()
	h := "Host: b1.plane.localhost\r\n"
	rc.send("GET /echo?n=1 HTTP/1.1\r\n" + h + "\r\n" +
		"POST /echo?n=2 HTTP/1.1\r\n" + h + "Content-Length: 5\r\n\r\nhello" +
		"HEAD /fixed HTTP/1.1\r\n" + h + "\r\n" +
		"POST /echo?n=4 HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"GET /echo?n=5 HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n")
	for _, want := range []struct{ method, uri, body string }{
		{"GET", "/echo?n=1", ""}, {"POST", "/echo?n=2", "hello"}, {"HEAD", "", ""}, {"POST", "/echo?n=4", "abc"}, {"GET", "/echo?n=5", ""},
	} {
		resp, body := rc.response(want.method)
		if want.method == "HEAD" {
			if resp.StatusCode != 200 || body != "" || resp.ContentLength != 5 {
				t.Fatalf("HEAD: status %d, Content-Length %d, body %q", resp.StatusCode, resp.ContentLength, body)
			}
			continue
		}
		got := decodeEcho(t, resp, body)
		if got.URI != want.uri || got.Body != want.body {
			t.Fatalf("got %s %q, want %s %q", got.URI, got.Body, want.uri, want.body)
		}
	}
	rc.expectClosed()
}

// gatedReader produces size pseudo-random bytes, hashing them; past first
// bytes it waits for gate, so that a proxy holding the whole body before
// passing it on would never see the end.
type gatedReader struct {
	src          *rand.ChaCha8
	left, before int64
	gate         <-chan struct{}
	hash         io.Writer
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	if g.before <= 0 && g.gate != nil {
		select {
		case <-g.gate:
			g.gate = nil
		case <-time.After(10 * time.Second):
			return 0, errors.New("the backend did not start reading before the client sent the whole body: the proxy buffers it")
		}
	}
	n := int64(len(p))
	n = min(n, g.left)
	if g.gate != nil {
		n = min(n, g.before)
	}
	g.src.Read(p[:n])
	g.hash.Write(p[:n])
	g.left -= n
	g.before -= n
	return int(n), nil
}

func TestProxyLargeUploadStreams(t *testing.T) {
	t.Parallel()
	const size = 10 << 20
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			e, b := newEnvWithB1(t, true)
			c, _ := e.client()
			h := sha256.New()
			body := &gatedReader{src: rand.NewChaCha8([32]byte{1}), left: size, before: 1 << 20, gate: b.uploadStarted, hash: h}
			var r io.Reader = body
			if !chunked {
				r = io.LimitReader(body, size) // keeps the length known below
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", e.url("b1", "/upload"), r)
			if chunked {
				req.ContentLength = -1
			} else {
				req.ContentLength = size
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if want := fmt.Sprintf("%d %x", size, h.Sum(nil)); string(got) != want {
				t.Fatalf("backend got %q, want %q", got, want)
			}
		})
	}
}

func TestProxyChunked(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, true)
	rc := e.dial()

	// A streamed response stays chunked.
	resp, body := rc.roundTrip("GET /stream HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n")
	if resp.StatusCode != 200 || body != "one,two,three" || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("status %d, Transfer-Encoding %q, body %q", resp.StatusCode, resp.TransferEncoding, body)
	}

	// A chunked request reaches the backend chunked, with its data, without
	// extensions or trailers (framing.go).
	resp, body = rc.roundTrip("POST /echo HTTP/1.1\r\nHost: b1.plane.localhost\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
		"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n")
	got := decodeEcho(t, resp, body)
	if got.Body != "hello world" || len(got.Trailer) != 0 || got.Header.Get("Trailer") != "" || len(got.TransferEncoding) != 1 || got.ContentLength != -1 {
		t.Fatalf("backend saw body %q, trailer %v, Transfer-Encoding %q, Content-Length %d", got.Body, got.Trailer, got.TransferEncoding, got.ContentLength)
	}

	// A malformed chunked body: see TestProxyClientAbortsBody.
}

func TestProxyUntilEOFResponse(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, true)
	rc := e.dial()
	resp, body := rc.roundTrip("GET /eof HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n")
	if resp.StatusCode != 200 || body != "body until EOF" || !resp.Close {
		t.Fatalf("status %d, close %v, body %q", resp.StatusCode, resp.Close, body)
	}
	rc.expectClosed()
}

func TestProxySSE(t *testing.T) {
	t.Parallel()
	e, b := newEnvWithB1(t, true)
	c, _ := e.client()
	resp := e.do(c, "GET", e.url("b1", "/sse"), nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	event := func() string {
		t.Helper()
		var lines []string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading event: %v (so far %q)", err, lines)
			}
			if line == "\n" {
				return strings.Join(lines, "")
			}
			lines = append(lines, line)
		}
	}
	// The backend sends the second event only once the first arrived here.
	if got := event(); got != "data: first\n" {
		t.Fatalf("first event %q", got)
	}
	close(b.sseNext)
	if got := event(); got != "data: second\n" {
		t.Fatalf("second event %q", got)
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the events: %q, %v", rest, err)
	}
}

func TestProxyWebSocket(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, false)
	c, _ := e.client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n, _ := e.p.Activity("b1"); n != 0 {
		t.Fatalf("Activity before = %d", n)
	}
	ws, resp, err := websocket.Dial(ctx, "ws://"+e.host("b1")+"/ws?x=1", &websocket.DialOptions{
		HTTPClient: c,
		HTTPHeader: http.Header{"Cookie": {"a=1; plane_token=" + e.token("b1", "alice", time.Hour)}},
	})
	if err != nil {
		t.Fatalf("dial: %v (response %v)", err, resp)
	}
	defer ws.CloseNow()
	_, hello, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(hello) != "alice|a=1|x=1" {
		t.Errorf("backend saw user|cookie|query %q, want %q", hello, "alice|a=1|x=1")
	}
	if n, _ := e.p.Activity("b1"); n != 1 {
		t.Errorf("Activity with a WebSocket open = %d, want 1", n)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 1000 {
		msg := make([]byte, rnd.IntN(2000))
		for j := range msg {
			msg[j] = byte(rnd.Uint32())
		}
		typ := websocket.MessageBinary
		if i%2 == 0 {
			typ, msg = websocket.MessageText, fmt.Appendf(nil, "message %d", i)
		}
		if err := ws.Write(ctx, typ, msg); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		gotTyp, got, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if gotTyp != typ || !bytes.Equal(got, msg) {
			t.Fatalf("message %d: echoed %v %d bytes, want %v %d bytes", i, gotTyp, len(got), typ, len(msg))
		}
	}
	before := time.Now()
	if err := ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
	e.waitIdle("b1", "the WebSocket closed")
	if _, last := e.p.Activity("b1"); last.Before(before) {
		t.Errorf("last activity %v is before the WebSocket closed at %v", last, before)
	}
}

func TestProxyExpectContinue(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, true)
	rc := e.dial()
	rc.send("POST /echo HTTP/1.1\r\nHost: b1.plane.localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	resp, _ := rc.response("POST")
	if resp.StatusCode != 100 {
		t.Fatalf("status %d before the body was sent, want 100", resp.StatusCode)
	}
	rc.send("hello")
	resp, body := rc.response("POST")
	got := decodeEcho(t, resp, body)
	if got.Body != "hello" {
		t.Fatalf("backend got body %q", got.Body)
	}
	if v := got.Header.Get("Expect"); v != "" {
		t.Errorf("backend saw Expect: %q", v)
	}

	// A request that is refused gets no 100 and the connection ends, so
	// that the body the client may still send is not read as a request.
	rc = e.dial()
	resp, body = rc.roundTrip("POST /echo HTTP/1.1\r\nHost: zz.plane.localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	checkPage(t, resp, body, 404, "no backend zz")
	if !resp.Close {
		t.Error("refusal of a request with a body keeps the connection")
	}
}

// TestProxyExpectContinueHTTP10: RFC 9110 §10.1.1 "A server that receives a
// 100-continue expectation in an HTTP/1.0 request MUST ignore that
// expectation"; an HTTP/1.0 client does not know 1xx responses.
func TestProxyExpectContinueHTTP10(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, true)
	rc := e.dial()
	resp, body := rc.roundTrip("POST /echo HTTP/1.0\r\nHost: b1.plane.localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP/1.0 request got status %d first (body %q), want the final 200", resp.StatusCode, body)
	}
}

func TestProxyHTTP10(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, true)

	rc := e.dial()
	rc.expectOK("GET /fixed HTTP/1.0\r\nHost: b1.plane.localhost\r\n\r\n", "hello")
	rc.expectClosed()

	rc = e.dial()
	for range 2 {
		resp, body := rc.roundTrip("GET /fixed HTTP/1.0\r\nHost: b1.plane.localhost\r\nConnection: keep-alive\r\n\r\n")
		if resp.StatusCode != 200 || body != "hello" || resp.Header.Get("Connection") != "keep-alive" {
			t.Fatalf("status %d, Connection %q, body %q", resp.StatusCode, resp.Header.Get("Connection"), body)
		}
	}

	// A chunked response reaches an HTTP/1.0 client, which cannot read
	// chunks, as its data, ended by the end of the connection.
	rc = e.dial()
	rc.send("GET /stream HTTP/1.0\r\nHost: b1.plane.localhost\r\nConnection: keep-alive\r\n\r\n")
	head, err := rc.br.ReadString('\n')
	if err != nil || head != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("status line %q, %v", head, err)
	}
	rest, err := io.ReadAll(rc.br)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(rest), "Transfer-Encoding") || !strings.Contains(string(rest), "Connection: close\r\n") ||
		!strings.HasSuffix(string(rest), "\r\n\r\none,two,three") {
		t.Fatalf("answer to HTTP/1.0: %q", rest)
	}
}

func TestProxyBadRequests(t *testing.T) {
	t.Parallel()
	e, b := newEnvWithB1(t, true)
	tests := []struct {
		name, req string
		status    int
	}{
		{"garbage", "hello\r\n\r\n", 400},
		{"absolute URL", "GET http://b1.plane.localhost/ HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: b1.plane.localhost\r\nHost: b2.plane.localhost\r\n\r\n", 400},
		{"content-length and chunked", "POST /echo HTTP/1.1\r\nHost: b1.plane.localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"differing content-lengths", "POST /echo HTTP/1.1\r\nHost: b1.plane.localhost\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"folded header", "GET / HTTP/1.1\r\nHost: b1.plane.localhost\r\nX: a\r\n b\r\n\r\n", 400},
		{"head too large", "GET / HTTP/1.1\r\nHost: b1.plane.localhost\r\nX: " + strings.Repeat("a", maxHeadBytes) + "\r\n\r\n", 431},
		{"too many headers", "GET / HTTP/1.1\r\nHost: b1.plane.localhost\r\n" + manyHeaders(maxHeaders+1) + "\r\n", 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := e.dial()
			rc.send(tt.req)
			resp, body := rc.response("GET")
			checkPage(t, resp, body, tt.status, "the request could not be read")
			rc.expectClosed()
		})
	}
	if n := b.newConns.Load(); n != 0 {
		t.Errorf("bad requests opened %d connections to the backend", n)
	}
}

func TestProxyWaitsForReady(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, false)
	b := newBackend(t, "b1")
	r := Route{BackendID: "b1", Address: b.addr(), Status: plane.StatusStarting, Public: true}
	e.p.SetRoute(r)
	rc := e.dial()
	rc.send("GET /echo HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n")
	rc.expectSilence(100 * time.Millisecond)
	r.Status = plane.StatusWaiting
	e.p.SetRoute(r)
	rc.expectSilence(50 * time.Millisecond)
	r.Status = plane.StatusReady
	e.p.SetRoute(r)
	resp, body := rc.response("GET")
	decodeEcho(t, resp, body)

	// A backend that terminates while a request waits: 410. (Under load
	// the proxy may read the request only after the route is gone: the
	// drone's records say terminated then, as Lookup does here.)
	e.p.cfg.Lookup = func(id string) (plane.BackendStatus, bool) { return plane.StatusTerminated, id == "b2" }
	e.p.SetRoute(Route{BackendID: "b2", Address: b.addr(), Status: plane.StatusStarting, Public: true})
	rc = e.dial()
	rc.send("GET /echo HTTP/1.1\r\nHost: b2.plane.localhost\r\n\r\n")
	rc.expectSilence(50 * time.Millisecond)
	e.p.SetRoute(Route{BackendID: "b2", Status: plane.StatusTerminated})
	resp, body = rc.response("GET")
	checkPage(t, resp, body, 410, "terminated")
}

func TestProxyWaitReadyExceeded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{WaitReady: 50 * time.Millisecond}, false)
	b := newBackend(t, "b1")
	e.p.SetRoute(Route{BackendID: "b1", Address: b.addr(), Status: plane.StatusStarting, Public: true})
	c, _ := e.client()
	resp, body := e.get(c, e.url("b1", "/"), http.Header{"Accept": {"application/json"}})
	checkPage(t, resp, body, 503, `"backend_status":"starting"`)
	if resp.Header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After = %q, want 1", resp.Header.Get("Retry-After"))
	}
	if b.newConns.Load() != 0 {
		t.Error("the proxy connected to a backend that is not ready")
	}
}

func TestProxyBackendRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, false)
	ln := listenLoopback(t)
	addr := ln.Addr().String()
	ln.Close()
	e.p.SetRoute(Route{BackendID: "b1", Address: addr, Status: plane.StatusReady, Public: true})
	rc := e.dial()
	resp, body := rc.roundTrip("GET / HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n")
	checkPage(t, resp, body, 502, "the backend refused the connection")
	// The connection stays usable.
	resp, body = rc.roundTrip("GET / HTTP/1.1\r\nHost: b1.plane.localhost\r\nAccept: application/json\r\n\r\n")
	checkPage(t, resp, body, 502, `"status":502`)
	e.waitIdle("b1", "failed requests")
}

// TestProxyRetriesStaleUpstream: a kept-alive upstream connection that the
// backend closed meanwhile costs the client nothing.
func TestProxyRetriesStaleUpstream(t *testing.T) {
	t.Parallel()
	e, b := newEnvWithB1(t, true)
	c, _ := e.client()
	for i := range 3 {
		if resp, body := e.get(c, e.url("b1", "/fixed"), nil); resp.StatusCode != 200 || body != "hello" {
			t.Fatalf("request %d: status %d body %q", i, resp.StatusCode, body)
		}
		b.srv.CloseClientConnections()
	}
}

// TestProxyAddressChange: once a backend's address changes, no request
// goes to the old one, even over a connection that was busy at the time.
func TestProxyAddressChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, false)
	old, cur := newBackend(t, "old"), newBackend(t, "new")
	e.route("b1", old, true)
	c, _ := e.client()
	held := e.holdRequest(c, "b1", old)
	e.route("b1", cur, true)
	held.release("old")
	resp, body := e.get(c, e.url("b1", "/"), nil)
	if body != "new" {
		t.Fatalf("after the address changed, the request went to %q (X-Served-By %q), want new", body, resp.Header.Get("X-Served-By"))
	}
}

// TestProxyRemovedRouteClosesUpstream: a connection that was busy when its
// backend's route was dropped is closed once the exchange ends, not kept in
// the pool of a route nobody can reach any more.
func TestProxyRemovedRouteClosesUpstream(t *testing.T) {
	t.Parallel()
	e, b := newEnvWithB1(t, true)
	c, _ := e.client()
	held := e.holdRequest(c, "b1", b)
	e.p.SetRoute(Route{BackendID: "b1", Status: plane.StatusTerminated})
	held.release("b1")
	waitFor(t, "the proxy to close its connection to the removed backend", func() bool {
		return b.closedConns.Load() == b.newConns.Load()
	})
}

func TestProxyTokens(t *testing.T) {
	t.Parallel() // it waits more than it works
	e, b := newEnvWithB1(t, false)
	e.route("b2", b, false)
	c, _ := e.client()
	good := e.token("b1", "alice", time.Hour)
	tests := []struct {
		name   string
		hdr    http.Header
		status int
		say    string
	}{
		{"missing", nil, 401, "needs a connect token"},
		{"other cookies only", http.Header{"Cookie": {"a=1; b=2"}}, 401, "needs a connect token"},
		{"empty cookie", cookieHeader(""), 401, "needs a connect token"},
		{"other backend's token", cookieHeader(e.token("b2", "alice", time.Hour)), 403, "for another backend"},
		{"expired", cookieHeader(e.token("b1", "alice", -time.Second)), 401, "expired"},
		{"garbage", cookieHeader("pc1.garbage"), 401, "invalid connect token"},
		{"signed by another key", cookieHeader(plane.SignConnectToken(ed25519.NewKeyFromSeed(make([]byte, 32)),
			plane.ConnectToken{BackendID: "b1", User: "alice", ExpiresAt: time.Now().Add(time.Hour)})), 401, "invalid connect token"},
		{"bearer without AllowBearer", http.Header{"Authorization": {"Bearer " + good}}, 401, "needs a connect token"},
		{"valid", cookieHeader(good), 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.get(c, e.url("b1", "/echo"), tt.hdr)
			if tt.status == 200 {
				if got := decodeEcho(t, resp, body); got.Header.Get("X-Plane-User") != "alice" {
					t.Errorf("X-Plane-User = %q", got.Header.Get("X-Plane-User"))
				}
				return
			}
			checkPage(t, resp, body, tt.status, tt.say)
		})
	}

	// An expired token answers 401 from the cache too.
	short := e.token("b1", "bob", 2500*time.Millisecond) // expiry is in whole seconds
	if resp, body := e.get(c, e.url("b1", "/echo"), cookieHeader(short)); resp.StatusCode != 200 {
		t.Fatalf("short-lived token: status %d %q", resp.StatusCode, body)
	}
	waitFor(t, "the short token to expire", func() bool {
		resp, _ := e.get(c, e.url("b1", "/echo"), cookieHeader(short))
		return resp.StatusCode == 401
	})
}

// A rotation of the controllers' signing key: while the old key is still
// accepted, tokens of both keys open the backend; once it is dropped, the
// old key's tokens fail at once, even those the proxy had cached.
func TestProxyKeyRotation(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, false)
	c, _ := e.client()
	oldPriv := e.priv
	oldTok := e.token("b1", "alice", time.Hour)
	if resp, body := e.get(c, e.url("b1", "/echo"), cookieHeader(oldTok)); resp.StatusCode != 200 {
		t.Fatalf("before the rotation: %d %q", resp.StatusCode, body)
	}
	newPub, newPriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	e.p.SetKeys(newPub, oldPriv.Public().(ed25519.PublicKey))
	e.priv = newPriv
	newTok := e.token("b1", "bob", time.Hour)
	for name, tok := range map[string]string{"old": oldTok, "new": newTok} {
		if resp, body := e.get(c, e.url("b1", "/echo"), cookieHeader(tok)); resp.StatusCode != 200 {
			t.Errorf("%s key's token while both are accepted: %d %q", name, resp.StatusCode, body)
		}
	}
	e.p.SetKeys(newPub)
	if resp, _ := e.get(c, e.url("b1", "/echo"), cookieHeader(oldTok)); resp.StatusCode != 401 {
		t.Errorf("old key's token after it was dropped: %d, want 401", resp.StatusCode)
	}
	if resp, body := e.get(c, e.url("b1", "/echo"), cookieHeader(newTok)); resp.StatusCode != 200 {
		t.Errorf("new key's token: %d %q", resp.StatusCode, body)
	}
}

func TestProxyNoKey(t *testing.T) {
	t.Parallel()
	p := New(Config{Domain: testDomain, Logger: slog.New(slog.DiscardHandler)})
	ln := listenLoopback(t)
	go p.Serve(ln, false)
	defer p.Close()
	b := newBackend(t, "b1")
	p.SetRoute(Route{BackendID: "b1", Address: b.addr(), Status: plane.StatusReady})
	e := &testEnv{t: t, p: p, addr: ln.Addr().String()}
	rc := e.dial()
	resp, body := rc.roundTrip("GET / HTTP/1.1\r\nHost: b1.plane.localhost\r\nCookie: plane_token=pc1.x.y\r\n\r\n")
	checkPage(t, resp, body, 503, "cannot check connect tokens yet")
}

func TestProxyTokenRedirect(t *testing.T) {
	t.Parallel()
	for _, secure := range []bool{false, true} {
		t.Run(fmt.Sprintf("secure=%v", secure), func(t *testing.T) {
			e := newEnv(t, Config{}, secure)
			b := newBackend(t, "b1")
			e.route("b1", b, false)
			c, _ := e.client()
			tok := e.token("b1", "alice", time.Hour)

			resp, body := e.get(c, e.url("b1", "/echo?a=1&plane_token="+tok+"&b=%2F"), nil)
			if resp.StatusCode != 302 {
				t.Fatalf("status %d, want 302; body %q", resp.StatusCode, body)
			}
			if loc := resp.Header.Get("Location"); loc != "/echo?a=1&b=%2F" {
				t.Errorf("Location %q, want /echo?a=1&b=%%2F", loc)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", resp.Header.Get("Cache-Control"))
			}
			cookies := resp.Cookies()
			if len(cookies) != 1 {
				t.Fatalf("cookies %v", resp.Header["Set-Cookie"])
			}
			ck := cookies[0]
			if ck.Name != "plane_token" || ck.Value != tok || ck.Path != "/" || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode ||
				ck.Secure != secure || ck.MaxAge < 3500 || ck.MaxAge > 3600 || ck.Domain != "" {
				t.Errorf("Set-Cookie %q", resp.Header.Get("Set-Cookie"))
			}
			if b.newConns.Load() != 0 {
				t.Error("the redirect reached the backend")
			}

			// The cookie alone lets the browser in; the app sees neither the
			// parameter nor the cookie, but its own cookies.
			resp, body = e.get(c, e.url("b1", "/echo?a=1&b=%2F"), http.Header{"Cookie": {"app=1; plane_token=" + tok + "; theme=dark"}})
			got := decodeEcho(t, resp, body)
			if got.URI != "/echo?a=1&b=%2F" || got.Header.Get("Cookie") != "app=1; theme=dark" {
				t.Errorf("backend saw %q with Cookie %q", got.URI, got.Header.Get("Cookie"))
			}
			if got.Header.Get("X-Plane-User") != "alice" {
				t.Errorf("X-Plane-User %q", got.Header.Get("X-Plane-User"))
			}
			resp, body = e.get(c, e.url("b1", "/echo"), cookieHeader(tok))
			if got := decodeEcho(t, resp, body); got.Header["Cookie"] != nil {
				t.Errorf("backend saw Cookie %q", got.Header["Cookie"])
			}
			wantProto := map[bool]string{false: "http", true: "https"}[secure]
			if got.Header.Get("X-Forwarded-Proto") != wantProto {
				t.Errorf("X-Forwarded-Proto %q, want %q", got.Header.Get("X-Forwarded-Proto"), wantProto)
			}

			// A bad token in the URL: no cookie, an error page.
			for _, tt := range []struct {
				tok    string
				status int
			}{
				{e.token("b2", "alice", time.Hour), 403},
				{e.token("b1", "alice", -time.Minute), 401},
				{"garbage", 401},
				{"", 401},
			} {
				resp, body := e.get(c, e.url("b1", "/echo?plane_token="+tt.tok), nil)
				checkPage(t, resp, body, tt.status, "")
				if resp.Header.Get("Set-Cookie") != "" {
					t.Errorf("bad token got a cookie: %q", resp.Header.Get("Set-Cookie"))
				}
			}
		})
	}
}

// TestProxyTokenRedirectHeaderInjection: the token from the query is
// written into Set-Cookie. encoding/base64 skips CR and LF when decoding,
// so a valid token with "%0D%0A" inserted in its signature still verifies;
// it must not break the response head.
func TestProxyTokenRedirectHeaderInjection(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, false)
	tok := e.token("b1", "alice", time.Hour)
	dot := strings.LastIndexByte(tok, '.')
	evil := tok[:dot+5] + "%0D%0A%0D%0A" + tok[dot+5:]
	rc := e.dial()
	rc.send("GET /?plane_token=" + evil + " HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n")
	head, err := rc.br.ReadString('\n')
	for err == nil {
		line, rerr := rc.br.ReadString('\n')
		if rerr != nil || line == "\r\n" {
			break
		}
		if !strings.HasSuffix(line, "\r\n") || !strings.Contains(line, ": ") {
			t.Errorf("response head holds a broken line %q", line)
		}
		head += line
	}
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(head, "HTTP/1.1 302") && !strings.Contains(head, "Content-Length: 0\r\n") {
		t.Errorf("injected line break split the head:\n%s", head)
	}
}

func TestProxyPublic(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, true)
	c, _ := e.client()
	for _, tt := range []struct {
		name string
		hdr  http.Header
		user string
	}{
		{"no token", nil, ""},
		{"stale cookie", http.Header{"Cookie": {"plane_token=" + e.token("b1", "alice", -time.Minute) + "; app=1"}}, ""},
		{"other backend's cookie", http.Header{"Cookie": {"plane_token=" + e.token("b2", "alice", time.Hour) + "; app=1"}}, ""},
		{"valid cookie", http.Header{"Cookie": {"plane_token=" + e.token("b1", "alice", time.Hour) + "; app=1"}}, "alice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.get(c, e.url("b1", "/echo"), tt.hdr)
			got := decodeEcho(t, resp, body)
			if u := got.Header.Get("X-Plane-User"); u != tt.user {
				t.Errorf("X-Plane-User %q, want %q", u, tt.user)
			}
			if ck := got.Header.Get("Cookie"); strings.Contains(ck, "plane_token") {
				t.Errorf("backend saw Cookie %q", ck)
			}
		})
	}
}

func TestProxyBearer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, false)
	b := newBackend(t, "b1")
	e.p.SetRoute(Route{BackendID: "b1", Address: b.addr(), Status: plane.StatusReady, AllowBearer: true})
	c, _ := e.client()
	tok := e.token("b1", "alice", time.Hour)

	resp, body := e.get(c, e.url("b1", "/echo"), http.Header{"Authorization": {"Bearer " + tok}})
	got := decodeEcho(t, resp, body)
	if got.Header.Get("Authorization") != "" || got.Header.Get("X-Plane-User") != "alice" {
		t.Errorf("backend saw Authorization %q, X-Plane-User %q", got.Header.Get("Authorization"), got.Header.Get("X-Plane-User"))
	}

	// The app's own bearer tokens are not ours: no access without a
	// connect token, and passed on untouched with one.
	resp, body = e.get(c, e.url("b1", "/echo"), http.Header{"Authorization": {"Bearer app-token"}})
	checkPage(t, resp, body, 401, "needs a connect token")
	resp, body = e.get(c, e.url("b1", "/echo"), http.Header{"Authorization": {"Bearer app-token"}, "Cookie": {"plane_token=" + tok}})
	if got := decodeEcho(t, resp, body); got.Header.Get("Authorization") != "Bearer app-token" {
		t.Errorf("backend saw Authorization %q", got.Header.Get("Authorization"))
	}

	// A bad bearer connect token is refused.
	resp, body = e.get(c, e.url("b1", "/echo"), http.Header{"Authorization": {"Bearer " + e.token("b2", "alice", time.Hour)}})
	checkPage(t, resp, body, 403, "another backend")
}

func TestProxyForwardedHeaders(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, false)
	c, _ := e.client()
	resp, body := e.get(c, e.url("b1", "/echo"), http.Header{
		"Cookie":            {"plane_token=" + e.token("b1", "alice", time.Hour)},
		"X-Plane-User":      {"admin"},
		"X-Plane-Backend":   {"other"},
		"X-Plane-Whatever":  {"1"},
		"X-Forwarded-For":   {"1.2.3.4"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"evil.example"},
		"X-Forwarded-Port":  {"443"},
		"Keep-Alive":        {"timeout=5"},
		"Proxy-Connection":  {"keep-alive"},
		"X-App":             {"kept"},
	})
	got := decodeEcho(t, resp, body)
	want := map[string][]string{
		"X-Plane-Backend":   {"b1"},
		"X-Plane-User":      {"alice"},
		"X-Forwarded-For":   {"127.0.0.1"},
		"X-Forwarded-Proto": {"http"},
		"X-Forwarded-Host":  {e.host("b1")},
		"X-Plane-Whatever":  nil,
		"X-Forwarded-Port":  nil,
		"Keep-Alive":        nil,
		"Proxy-Connection":  nil,
		"X-App":             {"kept"},
	}
	for k, v := range want {
		if fmt.Sprint(got.Header[k]) != fmt.Sprint(v) {
			t.Errorf("backend saw %s %q, want %q", k, got.Header[k], v)
		}
	}
}

// TestProxyConnectionNamedHeaders: RFC 9110 §7.6.1, "Intermediaries MUST
// parse a received Connection header field before a message is forwarded
// and, for each connection-option in this field, remove any header or
// trailer field(s) from the message with the same name".
func TestProxyConnectionNamedHeaders(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, true)
	rc := e.dial()
	resp, body := rc.roundTrip("GET /echo HTTP/1.1\r\nHost: b1.plane.localhost\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\n\r\n")
	if got := decodeEcho(t, resp, body); got.Header.Get("X-Hop") != "" {
		t.Errorf("backend saw X-Hop %q, a header the client named in Connection", got.Header.Get("X-Hop"))
	}
}

func TestProxyActivity(t *testing.T) {
	t.Parallel()
	created := time.Now()
	e, b := newEnvWithB1(t, true)
	if n, last := e.p.Activity("b1"); n != 0 || last.Before(created.Add(-time.Second)) {
		t.Fatalf("new route: Activity = %d, %v", n, last)
	}
	if n, last := e.p.Activity("nobody"); n != 0 || !last.IsZero() {
		t.Fatalf("unknown backend: Activity = %d, %v", n, last)
	}
	c, _ := e.client()
	held := e.holdRequest(c, "b1", b)
	if n, _ := e.p.Activity("b1"); n != 1 {
		t.Errorf("Activity with a request in flight = %d, want 1", n)
	}
	before := time.Now()
	held.release("b1")
	e.waitIdle("b1", "")
	if _, last := e.p.Activity("b1"); last.Before(before) {
		t.Errorf("last activity %v is before the request ended at %v", last, before)
	}
}

// TestProxyRefusedUpload: a client sending a large body to a backend it may
// not reach must still read the refusal, not a connection reset.
func TestProxyRefusedUpload(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, false)
	c, _ := e.client()
	for i := range 5 {
		req, _ := http.NewRequest("POST", e.url("b1", "/upload"), bytes.NewReader(make([]byte, 4<<20)))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		checkPage(t, resp, string(body), 401, "needs a connect token")
	}
}

// TestProxyClientAbortsBody: a client that stops sending its request body
// halfway, or sends a malformed chunked one, must not hold the backend's
// connection and its count of open connections forever: the idle limit
// reads that count.
func TestProxyClientAbortsBody(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, req string }{
		{"content-length, then gone", "POST /echo HTTP/1.1\r\nHost: b1.plane.localhost\r\nContent-Length: 1000\r\n\r\n0123456789"},
		{"chunked, then gone", "POST /echo HTTP/1.1\r\nHost: b1.plane.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
		{"malformed chunk", "POST /echo HTTP/1.1\r\nHost: b1.plane.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := newEnvWithB1(t, true)
			rc := e.dial()
			rc.c.SetDeadline(time.Now().Add(5 * time.Second))
			rc.send(tt.req)
			rc.c.(*net.TCPConn).CloseWrite()
			// The proxy ends the exchange: an error page or a closed connection.
			if resp, err := http.ReadResponse(rc.br, nil); err == nil {
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode == 200 {
					t.Fatalf("an incomplete body got 200: %q", body)
				}
			} else if isTimeout(err) {
				t.Fatal("the proxy neither answered nor closed the connection: it waits for the backend, which waits for the rest of the body")
			}
			e.waitIdle("b1", "")
		})
	}
}

// TestProxyKeepAliveWithBodies: requests with bodies keep the client and
// upstream connections like any other. The proxy must not close a
// connection after a response that did not say "Connection: close": the
// client sends its next request on it and gets a reset.
func TestProxyKeepAliveWithBodies(t *testing.T) {
	t.Parallel()
	e, b := newEnvWithB1(t, true)
	c, dials := e.client()
	for i := range 500 {
		msg := fmt.Sprintf("body %d", i)
		resp := e.do(c, "POST", e.url("b1", "/echo"), nil, strings.NewReader(msg))
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeEcho(t, resp, string(body)); got.Body != msg {
			t.Fatalf("request %d: backend got %q", i, got.Body)
		}
	}
	expectOneConnEach(t, dials, b, " for 500 POSTs")
}
