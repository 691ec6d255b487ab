package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"plane"
)

// userFeed collects the proxy's joins and leaves.
type userFeed struct {
	mu      sync.Mutex
	got     []UserChange
	changed chan struct{}
}

func watchUsers(p *Proxy) *userFeed {
	f := &userFeed{changed: make(chan struct{})}
	p.OnUsers(func(c UserChange) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.got = append(f.got, c)
		close(f.changed)
		f.changed = make(chan struct{})
	})
	return f
}

// wait waits for the n-th change and returns the first n.
func (f *userFeed) wait(t *testing.T, n int) []UserChange {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		got, changed := slices.Clone(f.got), f.changed
		f.mu.Unlock()
		if len(got) >= n {
			return got[:n]
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d user changes within 10 s, want %d: %+v", len(got), n, got)
		}
	}
}

func (f *userFeed) all() []UserChange {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

// change is a UserChange without its time, to compare.
type change struct {
	backend, user string
	joined        bool
	users         int
}

func changes(cs []UserChange) []change {
	out := make([]change, len(cs))
	for i, c := range cs {
		out[i] = change{c.BackendID, c.User, c.Joined, c.Users}
	}
	return out
}

func wantChanges(t *testing.T, got []UserChange, want ...change) {
	t.Helper()
	if !slices.Equal(changes(got), want) {
		t.Fatalf("user changes %+v, want %+v", changes(got), want)
	}
}

// openWS opens a WebSocket to backend id's /ws with header, on a
// connection of its own, and reads the backend's hello.
func (e *testEnv) openWS(id string, header http.Header) *websocket.Conn {
	e.t.Helper()
	c, _ := e.client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "ws://"+e.host(id)+"/ws", &websocket.DialOptions{HTTPClient: c, HTTPHeader: header})
	if err != nil {
		e.t.Fatalf("dial WebSocket: %v (response %v)", err, resp)
	}
	e.t.Cleanup(func() { ws.CloseNow() })
	if _, _, err := ws.Read(ctx); err != nil {
		e.t.Fatalf("WebSocket hello: %v", err)
	}
	return ws
}

// echoes checks that the WebSocket is open: it echoes a message.
func echoes(ws *websocket.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		return err
	}
	_, msg, err := ws.Read(ctx)
	if err == nil && string(msg) != "ping" {
		err = fmt.Errorf("echoed %q", msg)
	}
	return err
}

// expectClosedWithin checks that the server closed ws within d.
func expectClosedWithin(t *testing.T, ws *websocket.Conn, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	_, _, err := ws.Read(ctx)
	if err == nil {
		t.Fatal("WebSocket still open: read a message")
	}
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		t.Fatalf("WebSocket still open %s later", d)
	}
	t.Logf("WebSocket closed %s after the disconnect's answer: %v", time.Since(start).Round(time.Millisecond), err)
}

func (e *testEnv) userCount(id, user string) (int, bool) {
	for _, u := range e.p.Users(id) {
		if u.User == user {
			return u.Connections, true
		}
	}
	return 0, false
}

// Two users with WebSockets join once each; a close and reopen within the
// debounce is no leave; a close is one leave, after the debounce.
func TestProxyUsersJoinLeave(t *testing.T) {
	t.Parallel()
	const debounce = 300 * time.Millisecond
	e := newEnv(t, Config{LeaveDebounce: debounce}, false)
	e.route("b1", newBackend(t, "b1"), false)
	f := watchUsers(e.p)

	alice := e.openWS("b1", cookieHeader(e.token("b1", "alice", time.Hour)))
	f.wait(t, 1)
	bob := e.openWS("b1", cookieHeader(e.token("b1", "bob", time.Hour)))
	joins := f.wait(t, 2)
	wantChanges(t, joins, change{"b1", "alice", true, 1}, change{"b1", "bob", true, 2})
	users := e.p.Users("b1")
	if len(users) != 2 || users[0].User != "alice" || users[1].User != "bob" ||
		users[0].Connections != 1 || users[1].Connections != 1 || !users[0].Since.Equal(joins[0].Time) {
		t.Fatalf("Users = %+v, want alice then bob, one connection each, since their joins", users)
	}

	// A reload: alice's socket closes, and a new one opens within the
	// debounce, once the proxy has seen the close.
	alice.CloseNow()
	waitFor(t, "alice's connection to close", func() bool { n, ok := e.userCount("b1", "alice"); return ok && n == 0 })
	alice = e.openWS("b1", cookieHeader(e.token("b1", "alice", time.Hour)))
	if n, _ := e.userCount("b1", "alice"); n != 1 {
		t.Fatalf("alice has %d connections after her reload, want 1", n)
	}
	// Bob leaves: his leave comes after alice's would have.
	closed := time.Now()
	bob.Close(websocket.StatusNormalClosure, "")
	got := f.wait(t, 3)
	wantChanges(t, got, change{"b1", "alice", true, 1}, change{"b1", "bob", true, 2}, change{"b1", "bob", false, 1})
	if d := got[2].Time.Sub(closed); d < debounce {
		t.Errorf("bob left %s after his socket closed, before the debounce (%s)", d, debounce)
	}
	if users := e.p.Users("b1"); len(users) != 1 || users[0].User != "alice" || !users[0].Since.Equal(joins[0].Time) {
		t.Errorf("Users = %+v, want alice since her first join", users)
	}
	alice.CloseNow()
	wantChanges(t, f.wait(t, 4)[3:], change{"b1", "alice", false, 0})
	if users := e.p.Users("b1"); len(users) != 0 {
		t.Errorf("Users = %+v, want none", users)
	}
}

// A kept-alive HTTP connection counts for its user until PresenceTimeout
// passes without a request; it stays open, and its next request joins the
// user again. A public backend's users without a token are "".
func TestProxyUsersKeepAlive(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{LeaveDebounce: 50 * time.Millisecond, PresenceTimeout: 200 * time.Millisecond}, false)
	e.route("b1", newBackend(t, "b1"), true)
	f := watchUsers(e.p)
	rc := e.dial()
	req := "GET / HTTP/1.1\r\nHost: " + e.host("b1") + "\r\n\r\n"
	rc.expectOK(req, "b1")
	joined := f.wait(t, 1)[0]
	got := f.wait(t, 2)
	wantChanges(t, got, change{"b1", "", true, 1}, change{"b1", "", false, 0})
	if d := got[1].Time.Sub(joined.Time); d < 250*time.Millisecond {
		t.Errorf("left %s after joining, before PresenceTimeout and the debounce", d)
	}
	rc.expectOK(req, "b1") // the same connection
	carol := "GET / HTTP/1.1\r\nHost: " + e.host("b1") + "\r\nCookie: plane_token=" + e.token("b1", "carol", time.Hour) + "\r\n\r\n"
	rc.expectOK(carol, "b1")
	wantChanges(t, f.wait(t, 4)[2:], change{"b1", "", true, 1}, change{"b1", "carol", true, 2})
	// The connection moved to carol: the anonymous user leaves.
	wantChanges(t, f.wait(t, 5)[4:], change{"b1", "", false, 1})
	rc.c.Close()
	wantChanges(t, f.wait(t, 6)[5:], change{"b1", "carol", false, 0})
}

// A disconnect closes the user's WebSocket and kept-alive connection at
// once and refuses their old token in a cookie, the query or a bearer
// header; a token expiring after the cutoff works; the other user stays.
// A disconnect of everyone closes the rest.
func TestProxyDisconnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{LeaveDebounce: 50 * time.Millisecond}, false)
	b := newBackend(t, "b1")
	e.p.SetRoute(Route{BackendID: "b1", Address: b.addr(), Status: plane.StatusReady, AllowBearer: true})
	f := watchUsers(e.p)
	aliceTok, bobTok := e.token("b1", "alice", time.Hour), e.token("b1", "bob", time.Hour)
	alice := e.openWS("b1", cookieHeader(aliceTok))
	bob := e.openWS("b1", cookieHeader(bobTok))
	rc := e.dial()
	rc.expectOK("GET / HTTP/1.1\r\nHost: "+e.host("b1")+"\r\nCookie: plane_token="+aliceTok+"\r\n\r\n", "b1")
	f.wait(t, 2)
	waitFor(t, "alice's two connections", func() bool { n, _ := e.userCount("b1", "alice"); return n == 2 })

	cutoff := time.Now().Add(time.Hour + time.Minute)
	closed, ok := e.p.Disconnect("b1", "alice", false, cutoff)
	if !ok || closed != 2 {
		t.Fatalf("Disconnect = %d, %v; want alice's 2 connections closed", closed, ok)
	}
	expectClosedWithin(t, alice, 500*time.Millisecond)
	rc.expectClosed()
	if err := echoes(bob); err != nil {
		t.Fatalf("bob's WebSocket after alice's disconnect: %v", err)
	}
	c, _ := e.client()
	resp, body := e.get(c, e.url("b1", "/"), cookieHeader(aliceTok))
	checkPage(t, resp, body, 401, "no longer valid")
	resp, body = e.get(c, e.url("b1", "/?plane_token="+aliceTok), nil)
	checkPage(t, resp, body, 401, "no longer valid")
	resp, body = e.get(c, e.url("b1", "/"), http.Header{"Authorization": {"Bearer " + aliceTok}})
	checkPage(t, resp, body, 401, "no longer valid")
	if _, resp, err := websocket.Dial(context.Background(), "ws://"+e.host("b1")+"/ws", &websocket.DialOptions{HTTPClient: c, HTTPHeader: cookieHeader(aliceTok)}); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("a WebSocket with alice's old token: %v, %v; want 401", err, resp)
	}
	// A token issued after the disconnect expires after the cutoff.
	fresh := plane.SignConnectToken(e.priv, plane.ConnectToken{BackendID: "b1", User: "alice", ExpiresAt: cutoff.Add(time.Second)})
	if resp, body := e.get(c, e.url("b1", "/"), cookieHeader(fresh)); resp.StatusCode != 200 || body != "b1" {
		t.Fatalf("alice's fresh token: %d %q", resp.StatusCode, body)
	}
	again := e.openWS("b1", cookieHeader(fresh))

	closed, ok = e.p.Disconnect("b1", "", true, cutoff)
	if !ok || closed < 2 { // bob's socket, alice's new one (and her kept-alive client connection)
		t.Fatalf("Disconnect all = %d, %v; want every connection closed", closed, ok)
	}
	expectClosedWithin(t, bob, 500*time.Millisecond)
	expectClosedWithin(t, again, 500*time.Millisecond)
	resp, body = e.get(c, e.url("b1", "/"), cookieHeader(bobTok))
	checkPage(t, resp, body, 401, "no longer valid")
	fresh = plane.SignConnectToken(e.priv, plane.ConnectToken{BackendID: "b1", User: "bob", ExpiresAt: cutoff.Add(time.Second)})
	if resp, body := e.get(c, e.url("b1", "/"), cookieHeader(fresh)); resp.StatusCode != 200 {
		t.Fatalf("bob's fresh token: %d %q", resp.StatusCode, body)
	}
	// Alice, whose connections are all closed, leaves after the debounce
	// (bob came back on his fresh token).
	waitFor(t, "alice's leave", func() bool {
		all := f.all()
		for i := len(all) - 1; i >= 0; i-- {
			if all[i].User == "alice" {
				return !all[i].Joined
			}
		}
		return false
	})
	if n, ok := e.userCount("b1", "bob"); !ok || n != 1 {
		t.Errorf("bob has %d connections (%v), want the one of his fresh token", n, ok)
	}

	if _, ok := e.p.Disconnect("nobody", "alice", false, cutoff); ok {
		t.Error("Disconnect of a backend without a route reports ok")
	}
}

// On a public backend a refused token is no token: its user comes in as "".
func TestProxyDisconnectPublic(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, false)
	b := newBackend(t, "b1")
	e.route("b1", b, true)
	tok := e.token("b1", "alice", time.Hour)
	e.p.Disconnect("b1", "alice", false, time.Now().Add(2*time.Hour))
	c, _ := e.client()
	resp, body := e.get(c, e.url("b1", "/echo"), cookieHeader(tok))
	if got := decodeEcho(t, resp, body).Header.Get("X-Plane-User"); got != "" {
		t.Errorf("X-Plane-User = %q, want none for a refused token", got)
	}
	if users := e.p.Users("b1"); len(users) != 1 || users[0].User != "" {
		t.Errorf("Users = %+v, want the anonymous user", users)
	}
}

// A refusal goes once its cutoff has passed; past maxRefusals they become
// one that refuses everyone's tokens up to the latest cutoff; a connection
// is not bound with a refused token.
func TestProxyRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}, false)
	e.route("b1", newBackend(t, "b1"), false)
	rt := e.p.route("b1")
	exp := time.Now().Add(time.Hour)

	e.p.Disconnect("b1", "alice", false, time.Now().Add(300*time.Millisecond))
	if !rt.refuses("alice", time.Now().Add(10*time.Millisecond)) || rt.refuses("bob", time.Now()) || rt.refuses("alice", time.Time{}) {
		t.Fatal("refusal of alice's tokens before the cutoff: wrong answers")
	}
	waitFor(t, "the refusal to pass", func() bool { return rt.refused.Load() == nil })
	e.p.Disconnect("b1", "alice", false, time.Now().Add(-time.Second)) // passed already: nothing to keep
	if rt.refused.Load() != nil {
		t.Fatal("a refusal kept whose cutoff has passed")
	}

	for i := range maxRefusals + 1 {
		e.p.Disconnect("b1", fmt.Sprintf("user%d", i), false, exp.Add(time.Duration(i)*time.Second))
	}
	rs := *rt.refused.Load()
	if len(rs) != 1 || !rs[0].all || !rs[0].before.Equal(exp.Add(maxRefusals*time.Second)) {
		t.Fatalf("refusals past the bound = %+v, want one of everyone's up to the latest cutoff", rs)
	}
	if rt.join("zoe", exp, nil) {
		t.Error("a connection was bound with a refused token")
	}
	if !rt.join("zoe", time.Time{}, nil) {
		t.Error("a connection without a token was refused")
	}
	e.p.SetRoute(Route{BackendID: "b1", Status: plane.StatusTerminated})
	if rt.refused.Load() != nil {
		t.Error("a removed route kept its refusals")
	}
}

// A backend that terminates reports no more leaves, pending or not.
func TestProxyUsersRouteRemoved(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{LeaveDebounce: 100 * time.Millisecond}, false)
	b := newBackend(t, "b1")
	e.route("b1", b, false)
	e.route("b2", b, false)
	f := watchUsers(e.p)
	ws := e.openWS("b1", cookieHeader(e.token("b1", "alice", time.Hour)))
	kept := e.openWS("b1", cookieHeader(e.token("b1", "bob", time.Hour)))
	f.wait(t, 2)
	ws.CloseNow()
	waitFor(t, "alice's connection to close", func() bool { n, ok := e.userCount("b1", "alice"); return ok && n == 0 })
	e.p.SetRoute(Route{BackendID: "b1", Status: plane.StatusTerminated})
	kept.CloseNow()
	// A sentinel on b2: its leave comes after alice's would have.
	e.openWS("b2", cookieHeader(e.token("b2", "carol", time.Hour))).CloseNow()
	got := f.wait(t, 4)
	wantChanges(t, got, change{"b1", "alice", true, 1}, change{"b1", "bob", true, 2}, change{"b2", "carol", true, 1}, change{"b2", "carol", false, 0})
}

// A connection whose requests go to another backend moves there: it
// joins its user to the one and, after the debounce, leaves the other.
func TestProxyUsersConnectionMoves(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{LeaveDebounce: 20 * time.Millisecond}, false)
	b := newBackend(t, "b1")
	e.route("b1", b, true)
	e.route("b2", b, true)
	f := watchUsers(e.p)
	rc := e.dial()
	get := func(id string) { rc.expectOK("GET / HTTP/1.1\r\nHost: "+e.host(id)+"\r\n\r\n", "b1") }
	get("b1")
	wantChanges(t, f.wait(t, 1), change{"b1", "", true, 1})
	get("b2")
	wantChanges(t, f.wait(t, 3)[1:], change{"b2", "", true, 1}, change{"b1", "", false, 0})
	get("b1")
	wantChanges(t, f.wait(t, 5)[3:], change{"b1", "", true, 1}, change{"b2", "", false, 0})
	if users := e.p.Users("b1"); len(users) != 1 || users[0].Connections != 1 {
		t.Errorf("b1's users %+v, want the connection's", users)
	}
}
