package drone_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"plane"
	"plane/drone"
	"plane/drone/dronetest"
	"plane/drone/proxy"
)

// These tests run the agent with a real proxy on loopback in front of the
// fake runtime's containers, whose apps answer WebSockets: users connect
// with connect tokens over real sockets, and the controller's side reads
// the status stream and sends requests over NATS.

const connDomain = "plane.test"

// connWorld is a drone with its proxy serving.
type connWorld struct {
	*harness
	p    *proxy.Proxy
	addr string // the proxy's listener
	priv ed25519.PrivateKey
}

func newConnWorld(t *testing.T, mutate ...func(*drone.Config)) *connWorld {
	t.Helper()
	h := newHarness(t)
	h.rt.ScriptImage(testImage, dronetest.Behavior{Handler: http.HandlerFunc(wsEcho)})
	p := proxy.New(proxy.Config{Domain: connDomain, WaitReady: waitFor, Logger: slog.New(slog.DiscardHandler)})
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	p.SetKeys(pub)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln, false) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-served; err != nil {
			t.Errorf("proxy: %v", err)
		}
	})
	h.start(append([]func(*drone.Config){func(c *drone.Config) { c.Proxy = p }}, mutate...)...)
	return &connWorld{harness: h, p: p, addr: ln.Addr().String(), priv: priv}
}

// wsEcho is the backends' app: /ws echoes WebSocket messages, the rest
// answers "ok".
func wsEcho(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/ws" {
		io.WriteString(w, "ok")
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	for {
		typ, data, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if err := c.Write(r.Context(), typ, data); err != nil {
			return
		}
	}
}

func (w *connWorld) token(id, user string, expires time.Time) string {
	return plane.SignConnectToken(w.priv, plane.ConnectToken{BackendID: id, User: user, ExpiresAt: expires})
}

// client sends everything to the proxy; keepAlive false closes each
// connection after its response.
func (w *connWorld) client(keepAlive bool) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", w.addr)
		},
		DisableKeepAlives: !keepAlive,
	}
	w.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (w *connWorld) url(id, path string) string {
	_, port, _ := net.SplitHostPort(w.addr)
	return "http://" + id + "." + connDomain + ":" + port + path
}

// get sends GET path to backend id with tok in the token cookie, on a
// connection closed after it, and returns the status.
func (w *connWorld) get(id, path, tok string) int {
	w.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, w.url(id, path), nil)
	req.Header.Set("Cookie", "plane_token="+tok)
	resp, err := w.client(false).Do(req)
	if err != nil {
		w.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// openWS opens a WebSocket to backend id as the holder of tok and checks
// that it echoes.
func (w *connWorld) openWS(id, tok string) *websocket.Conn {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, strings.Replace(w.url(id, "/ws"), "http:", "ws:", 1), &websocket.DialOptions{
		HTTPClient: w.client(false),
		HTTPHeader: http.Header{"Cookie": {"plane_token=" + tok}},
	})
	if err != nil {
		w.t.Fatalf("WebSocket to %s: %v (response %v)", id, err, resp)
	}
	w.t.Cleanup(func() { ws.CloseNow() })
	if err := echoes(ws); err != nil {
		w.t.Fatalf("new WebSocket to %s: %v", id, err)
	}
	return ws
}

// echoes checks that a WebSocket is open: it echoes a message.
func echoes(ws *websocket.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		return err
	}
	_, msg, err := ws.Read(ctx)
	if err == nil && string(msg) != "ping" {
		err = errors.New("echoed " + string(msg))
	}
	return err
}

// closedWithin checks that the server end closed ws within d.
func closedWithin(t *testing.T, ws *websocket.Conn, d time.Duration, who string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if _, _, err := ws.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("%s's WebSocket still open %s after the disconnect (%v)", who, d, err)
	}
}

// connChanges are the connection events among events.
func connChanges(events []plane.BackendEvent) []plane.ConnectionChange {
	var out []plane.ConnectionChange
	for _, e := range events {
		if e.Connection != nil {
			out = append(out, *e.Connection)
		}
	}
	return out
}

func isConnChange(user string, joined bool) func(plane.BackendEvent) bool {
	return func(e plane.BackendEvent) bool {
		return e.Connection != nil && e.Connection.User == user && e.Connection.Joined == joined
	}
}

// spawnReady spawns backend id and waits until it is ready.
func (w *connWorld) spawnReady(s plane.SpawnSpec) {
	w.t.Helper()
	w.mustSpawn(s)
	w.waitStatus(s.BackendID, plane.StatusReady)
}

// TestConnectionEvents: two users with WebSockets join once each, through
// the status stream; the stats list both; a reload (close and reopen
// within the debounce) reports nothing; a close reports one leave, after
// the debounce.
func TestConnectionEvents(t *testing.T) {
	t.Parallel()
	w := newConnWorld(t)
	const id = "conn1"
	w.spawnReady(spec(id))
	f := w.statusOf(id)
	stats := make(chan plane.BackendStats, 64)
	sub, err := w.nc.Subscribe(plane.SubjectBackendStats(id), func(m *nats.Msg) {
		if s, err := plane.Decode[plane.BackendStats](m.Data); err == nil {
			select {
			case stats <- s:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	exp := time.Now().Add(time.Hour)
	alice := w.openWS(id, w.token(id, "alice", exp))
	f.next(t, 0, isConnChange("alice", true))
	bob := w.openWS(id, w.token(id, "bob", exp))
	_, j := f.next(t, 0, isConnChange("bob", true))
	want := []plane.ConnectionChange{{User: "alice", Joined: true, Users: 1}, {User: "bob", Joined: true, Users: 2}}
	if got := connChanges(f.items()[:j+1]); !equalChanges(got, want) {
		t.Fatalf("connection events %+v, want %+v", got, want)
	}
	for _, e := range f.items()[:j+1] {
		if e.Connection != nil && (e.Status != plane.StatusReady || e.Suspended != nil || e.DroneID != droneID) {
			t.Errorf("connection event %+v: want a ready backend's, of this drone, without a suspension", e)
		}
	}
	deadline := time.After(waitFor)
	for {
		var s plane.BackendStats
		select {
		case s = <-stats:
		case <-deadline:
			t.Fatal("no stats with both users")
		}
		if len(s.Users) == 2 {
			if s.Users[0].User != "alice" || s.Users[1].User != "bob" || s.Users[0].Connections != 1 || s.Users[0].Since.IsZero() {
				t.Errorf("stats users %+v, want alice then bob, one connection each, with their join time", s.Users)
			}
			if err := s.Validate(); err != nil {
				t.Errorf("stats do not validate: %v", err)
			}
			break
		}
	}

	// A reload: alice's socket closes and another opens within the
	// debounce (once the proxy has seen the close).
	alice.CloseNow()
	waitUntil(t, "the proxy to see alice's close", func() bool {
		for _, u := range w.p.Users(id) {
			if u.User == "alice" {
				return u.Connections == 0
			}
		}
		return false
	})
	alice = w.openWS(id, w.token(id, "alice", exp))
	// Bob leaves: his leave comes after alice's would have.
	closed := time.Now()
	bob.Close(websocket.StatusNormalClosure, "")
	left, k := f.next(t, j+1, isConnChange("bob", false))
	if d := left.Time.Sub(closed); d < plane.ConnectionLeaveDebounce {
		t.Errorf("bob left %s after closing his socket, within the debounce", d)
	}
	want = append(want, plane.ConnectionChange{User: "bob", Users: 1})
	if got := connChanges(f.items()[:k+1]); !equalChanges(got, want) {
		t.Fatalf("connection events %+v, want %+v (no leave of alice for her reload)", got, want)
	}
	alice.CloseNow()
	_, l := f.next(t, k+1, isConnChange("alice", false))
	want = append(want, plane.ConnectionChange{User: "alice", Users: 0})
	if got := connChanges(f.items()[:l+1]); !equalChanges(got, want) {
		t.Fatalf("connection events %+v, want %+v", got, want)
	}
	// Terminated: the stream ends with it, nothing after.
	w.mustTerminate(id, true)
	events := w.lifecycle(id)
	if got := connChanges(events); !equalChanges(got, want) {
		t.Errorf("connection events %+v over the lifecycle, want %+v", got, want)
	}
}

func equalChanges(x, y []plane.ConnectionChange) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// TestConnectionLeaveAfterTerminate: a leave pending when the backend
// terminates is never reported.
func TestConnectionLeaveAfterTerminate(t *testing.T) {
	t.Parallel()
	w := newConnWorld(t)
	const id = "conn2"
	w.spawnReady(spec(id))
	ws := w.openWS(id, w.token(id, "alice", time.Now().Add(time.Hour)))
	w.statusOf(id).next(t, 0, isConnChange("alice", true))
	ws.CloseNow()
	w.mustTerminate(id, true)
	events := w.lifecycle(id)
	// A sentinel: another backend's leave, which comes after alice's would have.
	w.spawnReady(spec("conn3"))
	other := w.openWS("conn3", w.token("conn3", "bob", time.Now().Add(time.Hour)))
	other.CloseNow()
	w.statusOf("conn3").next(t, 0, isConnChange("bob", false))
	for _, e := range w.statusOf(id).items()[len(events):] {
		t.Errorf("event after terminated: %+v", e)
	}
	for _, e := range events {
		if e.Connection != nil && !e.Connection.Joined {
			t.Errorf("a leave reported around the termination: %+v", e)
		}
	}
}

// TestDisconnect: a disconnect closes the user's WebSocket within well
// under a second and refuses their old token (401); a token for them that
// expires after the cutoff works; the other user's socket stays open; the
// leave is reported as any. A disconnect of everyone closes the rest.
func TestDisconnect(t *testing.T) {
	t.Parallel()
	w := newConnWorld(t)
	const id = "disc1"
	w.spawnReady(spec(id))
	f := w.statusOf(id)
	exp := time.Now().Add(time.Hour)
	aliceTok, bobTok := w.token(id, "alice", exp), w.token(id, "bob", exp)
	alice := w.openWS(id, aliceTok)
	bob := w.openWS(id, bobTok)
	f.next(t, 0, isConnChange("alice", true))
	f.next(t, 0, isConnChange("bob", true))

	cutoff := time.Now().Add(plane.DefaultConnectTokenTTL + time.Minute)
	if err := w.request(plane.SubjectDisconnect(droneID), plane.DisconnectRequest{BackendID: id, User: "alice", TokensExpiringBefore: cutoff}); err != nil {
		t.Fatalf("disconnect alice: %v", err)
	}
	closedWithin(t, alice, 500*time.Millisecond, "alice")
	if err := echoes(bob); err != nil {
		t.Fatalf("bob's WebSocket after alice's disconnect: %v", err)
	}
	if st := w.get(id, "/", aliceTok); st != http.StatusUnauthorized {
		t.Errorf("alice's old token: status %d, want 401", st)
	}
	_, i := f.next(t, 0, isConnChange("alice", false)) // as any leave
	if st := w.get(id, "/", w.token(id, "alice", cutoff.Add(time.Second))); st != http.StatusOK {
		t.Errorf("alice's fresh token: status %d, want 200", st)
	}

	if err := w.request(plane.SubjectDisconnect(droneID), plane.DisconnectRequest{BackendID: id, All: true, TokensExpiringBefore: cutoff}); err != nil {
		t.Fatalf("disconnect all: %v", err)
	}
	closedWithin(t, bob, 500*time.Millisecond, "bob")
	if st := w.get(id, "/", bobTok); st != http.StatusUnauthorized {
		t.Errorf("bob's old token after disconnecting all: status %d, want 401", st)
	}
	f.next(t, i+1, isConnChange("bob", false))

	// A backend this drone never ran: not found; one that terminated:
	// nothing to do.
	err := w.request(plane.SubjectDisconnect(droneID), plane.DisconnectRequest{BackendID: "nosuch", All: true})
	if plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		t.Errorf("disconnect from an unknown backend: %v, want not found", err)
	}
	w.mustTerminate(id, true)
	w.lifecycle(id)
	if err := w.request(plane.SubjectDisconnect(droneID), plane.DisconnectRequest{BackendID: id, All: true}); err != nil {
		t.Errorf("disconnect from a terminated backend: %v, want none", err)
	}
}

// TestKeepAlive: a keep-alive holds an idle backend past max_idle_seconds
// until its Until, replacing an earlier one, and the idle clock starts
// there; it never outlasts the lifetime. Each case waits seconds for a
// backend's idle time or lifetime, so each runs on a drone of its own, at
// once.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	keep := func(t *testing.T, w *connWorld, id string, until time.Time) {
		t.Helper()
		if err := w.request(plane.SubjectKeepAlive(droneID), plane.KeepAliveRequest{BackendID: id, Until: until}); err != nil {
			t.Fatalf("keep %s alive: %v", id, err)
		}
	}

	t.Run("the idle clock starts at its end", func(t *testing.T) {
		t.Parallel()
		w := newConnWorld(t)
		s := spec("keep1")
		s.MaxIdleSeconds = 1
		w.spawnReady(s)
		keep(t, w, s.BackendID, time.Now().Add(time.Hour))
		until := time.Now().Add(2500 * time.Millisecond)
		keep(t, w, s.BackendID, until) // replaces the hour
		events := w.lifecycle(s.BackendID)
		end := events[len(events)-1]
		if end.Reason != plane.ReasonIdle {
			t.Fatalf("ended %q, want idle", end.Reason)
		}
		if d := end.Time.Sub(until); d < time.Second || d > 30*time.Second {
			t.Errorf("ended %s after the keep-alive's end, want max_idle_seconds (1 s) after it", d)
		}

		err := w.request(plane.SubjectKeepAlive(droneID), plane.KeepAliveRequest{BackendID: "nosuch", Until: time.Now().Add(time.Minute)})
		if plane.ErrorCodeOf(err) != plane.ENOTFOUND {
			t.Errorf("keep-alive of an unknown backend: %v, want not found", err)
		}
		err = w.request(plane.SubjectKeepAlive(droneID), plane.KeepAliveRequest{BackendID: "keep1", Until: time.Now().Add(time.Minute)})
		if plane.ErrorCodeOf(err) != plane.ECONFLICT {
			t.Errorf("keep-alive of a terminated backend: %v, want conflict", err)
		}
	})

	t.Run("bounded by the lifetime", func(t *testing.T) {
		t.Parallel()
		w := newConnWorld(t)
		s := spec("keep2")
		s.MaxIdleSeconds, s.LifetimeSeconds = 1, 2
		w.spawnReady(s)
		keep(t, w, s.BackendID, time.Now().Add(time.Hour))
		events := w.lifecycle(s.BackendID)
		if end := events[len(events)-1]; end.Reason != plane.ReasonLifetime {
			t.Errorf("kept alive past its lifetime: ended %q, want lifetime", end.Reason)
		}
	})

	// A backend that would be suspended when idle is suspended only once
	// idle after the keep-alive.
	t.Run("suspended only once idle after it", func(t *testing.T) {
		t.Parallel()
		w := newConnWorld(t)
		s := spec("keep3")
		s.MaxIdleSeconds, s.SuspendSeconds = 1, 3600
		w.spawnReady(s)
		until := time.Now().Add(2 * time.Second)
		keep(t, w, s.BackendID, until)
		susp, _ := w.statusOf(s.BackendID).next(t, 0, func(e plane.BackendEvent) bool { return e.Suspended != nil && *e.Suspended })
		if d := susp.Time.Sub(until); d < time.Second {
			t.Errorf("suspended %s after the keep-alive's end, want max_idle_seconds (1 s) after it", d)
		}
	})
}

// TestConnectionRequestsMalformed: bad request bytes get a clear error.
func TestConnectionRequestsMalformed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	for _, tc := range []struct {
		name, subject, data, want string
	}{
		{"disconnect not JSON", plane.SubjectDisconnect(droneID), `{"backend_id":`, "malformed message"},
		{"disconnect bad ID", plane.SubjectDisconnect(droneID), `{"backend_id":"Not An ID","all":true}`, "Not An ID"},
		{"disconnect user and all", plane.SubjectDisconnect(droneID), `{"backend_id":"abc","user":"alice","all":true}`, "user"},
		{"keepalive not JSON", plane.SubjectKeepAlive(droneID), `[1,2`, "malformed message"},
		{"keepalive without until", plane.SubjectKeepAlive(droneID), `{"backend_id":"abc"}`, "until"},
		{"keepalive bad until", plane.SubjectKeepAlive(droneID), `{"backend_id":"abc","until":"soon"}`, "malformed message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.reply(tc.subject, []byte(tc.data))
			if r.Error == nil || r.Error.Code != plane.EINVALID || !strings.Contains(r.Error.Message, tc.want) {
				t.Errorf("reply %+v, want invalid, saying %q", r.Error, tc.want)
			}
		})
	}
}
