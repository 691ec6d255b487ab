package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/drone/proxy/proxytest"
)

// These tests try the proxy as an attacker would: raw bytes from the
// client, and a backend (proxytest.Recorder) that records exactly what it
// reads, with net/http's parser, independent of the proxy's.

// recorderEnv is a proxy in front of a recorder, for backend b1.
type recorderEnv struct {
	*testEnv
	rec *proxytest.Recorder
	tg  proxytest.Target
}

func newRecorderEnv(t *testing.T, cfg Config) *recorderEnv {
	t.Helper()
	e := newEnv(t, cfg, false)
	rec := proxytest.NewRecorder()
	ln := listenLoopback(t)
	go rec.Serve(ln)
	t.Cleanup(func() { ln.Close(); rec.Close() })
	e.p.SetRoute(Route{BackendID: "b1", Address: ln.Addr().String(), Status: plane.StatusReady, Public: true})
	re := &recorderEnv{testEnv: e, rec: rec}
	re.tg = proxytest.Target{
		Addr: e.addr, Host: e.host("b1"), BackendID: "b1", User: "",
		Token: e.token("b1", "alice", time.Hour),
		Recorded: func() ([]proxytest.Request, error) {
			reqs := rec.Requests()
			rec.Clear()
			return reqs, nil
		},
	}
	return re
}

// TestProxyVectors runs the corpus of the security review's findings and
// the cases around them (proxytest.Vectors) against the proxy.
func TestProxyVectors(t *testing.T) {
	t.Parallel() // it waits more than it works
	for _, v := range proxytest.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel() // each on a proxy and recorder of its own, so they wait at once
			e := newRecorderEnv(t, Config{})
			o, err := proxytest.Send(e.tg, v)
			if err != nil {
				t.Fatal(err)
			}
			for _, problem := range v.Check(e.tg, o) {
				t.Error(problem)
			}
		})
	}
}

// TestProxyNoReplayOfPOST: finding 5. A kept-alive backend connection that
// fails after the backend read a POST must not make the proxy send the POST
// again: a payment would be charged twice. A GET is retried.
func TestProxyNoReplayOfPOST(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method string
		want   []string // what the backend reads
		status int
	}{
		{"POST", []string{"GET /first", "POST " + proxytest.PathDrop}, 502},
		{"PATCH", []string{"GET /first", "PATCH " + proxytest.PathDrop}, 502},
		{"GET", []string{"GET /first", "GET " + proxytest.PathDrop, "GET " + proxytest.PathDrop}, 502},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			e := newRecorderEnv(t, Config{})
			rc := e.dial()
			rc.expectOK("GET /first HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n", "answer to GET /first")
			// The same upstream connection, kept alive, carries the next one.
			resp, _ := rc.roundTrip(tt.method + " " + proxytest.PathDrop + " HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n")
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			var got []string
			for _, r := range e.rec.Requests() {
				got = append(got, r.String())
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("backend read %q, want %q", got, tt.want)
			}
		})
	}
}

// TestProxyHungBackendClientLeaves: finding 6. A request waiting on a
// backend that never answers ends when its client leaves, so the backend's
// connection count drops and the idle limit can stop it.
func TestProxyHungBackendClientLeaves(t *testing.T) {
	t.Parallel() // it waits more than it works
	for _, req := range []string{
		"GET " + proxytest.PathHang + " HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n",
		"POST " + proxytest.PathHang + " HTTP/1.1\r\nHost: b1.plane.localhost\r\nContent-Length: 5\r\n\r\nhello",
		"POST " + proxytest.PathHang + " HTTP/1.1\r\nHost: b1.plane.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	} {
		method, _, _ := strings.Cut(req, " ")
		t.Run(method, func(t *testing.T) {
			e := newRecorderEnv(t, Config{})
			rc := e.dial()
			rc.send(req)
			waitFor(t, "the request to reach the backend", func() bool { n, _ := e.p.Activity("b1"); return n == 1 && e.rec.OpenConns() == 1 })
			rc.expectSilence(watchAfter + 100*time.Millisecond) // the proxy watches the client by now
			rc.c.Close()
			e.waitIdle("b1", "the client left")
			waitFor(t, "the proxy to close its backend connection", func() bool { return e.rec.OpenConns() == 0 })
		})
	}
}

// TestProxyResponseTimeout: a backend that does not answer within
// ResponseTimeout gets the client a 504, and its connection is dropped.
func TestProxyResponseTimeout(t *testing.T) {
	t.Parallel()
	e := newRecorderEnv(t, Config{ResponseTimeout: 200 * time.Millisecond})
	rc := e.dial()
	resp, body := rc.roundTrip("GET " + proxytest.PathHang + " HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n")
	checkPage(t, resp, body, 504, "did not answer")
	rc.expectClosed()
	e.waitIdle("b1", "the timeout")
}

// TestProxyUpstreamIdleExpiry: finding 10. After a burst through many
// client connections, the kept-alive backend connections close once idle
// for UpstreamIdleTimeout; a terminated backend's close at once.
func TestProxyUpstreamIdleExpiry(t *testing.T) {
	t.Parallel() // it waits more than it works
	e := newRecorderEnv(t, Config{UpstreamIdleTimeout: 300 * time.Millisecond})
	const clients = 20
	var conns []*rawConn
	for range clients {
		conns = append(conns, e.dial())
	}
	// All at once, so that each needs its own backend connection.
	var wg sync.WaitGroup
	for _, rc := range conns {
		wg.Go(func() { rc.send("GET " + proxytest.PathHang + " HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n") })
	}
	wg.Wait()
	waitFor(t, "every request to reach the backend", func() bool { return e.rec.OpenConns() == clients })
	for _, rc := range conns {
		rc.c.Close()
	}
	waitFor(t, "the hung exchanges to end", func() bool { n, _ := e.p.Activity("b1"); return n == 0 })

	// Now a burst that completes: the pool keeps its connections...
	burst := make([]*rawConn, clients)
	for i := range burst {
		burst[i] = e.dial()
		burst[i].send("GET /burst HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n")
	}
	for _, rc := range burst {
		if resp, _ := rc.response("GET"); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	rt := e.p.route("b1")
	if n := rt.pool.len(); n == 0 {
		t.Fatal("no backend connection kept alive after the burst")
	}
	// ...and closes them once idle for the timeout.
	waitFor(t, "idle backend connections to close", func() bool { return rt.pool.len() == 0 && e.rec.OpenConns() == 0 })

	// A terminated backend's connections close at once.
	for _, rc := range burst {
		rc.expectOK("GET /again HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n", "answer to GET /again")
	}
	e.p.SetRoute(Route{BackendID: "b1", Status: plane.StatusTerminated})
	if n := rt.pool.len(); n != 0 {
		t.Fatalf("%d connections kept for a terminated backend", n)
	}
	waitFor(t, "the terminated backend's connections to close", func() bool { return e.rec.OpenConns() == 0 })
}

// TestProxyFirefoxUpgrade: Firefox asks for a WebSocket with "Connection:
// keep-alive, Upgrade" (a bug of the Rust Plane, its issue #690).
func TestProxyFirefoxUpgrade(t *testing.T) {
	t.Parallel()
	e, _ := newEnvWithB1(t, true)
	rc := e.dial()
	rc.send("GET /ws HTTP/1.1\r\nHost: b1.plane.localhost\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("status %d, Upgrade %q, Accept %q", resp.StatusCode, resp.Header.Get("Upgrade"), resp.Header.Get("Sec-WebSocket-Accept"))
	}
	// The backend's greeting, then an echo of a masked text frame.
	if got, err := proxytest.ReadText(rc.br); got != "||" {
		t.Fatalf("greeting %q, %v", got, err)
	}
	if err := proxytest.WriteText(rc.c, "from firefox"); err != nil {
		t.Fatal(err)
	}
	if got, err := proxytest.ReadText(rc.br); got != "from firefox" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

// TestProxyMaxConns: past MaxConns, a new connection gets 503 at once; the
// ones served go on, and once they close new ones are served again.
func TestProxyMaxConns(t *testing.T) {
	t.Parallel()
	e := newRecorderEnv(t, Config{MaxConns: 3})
	var held []*rawConn
	for range 3 {
		rc := e.dial()
		rc.expectOK("GET /a HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n", "answer to GET /a")
		held = append(held, rc)
	}
	over := e.dial()
	resp, body := over.response("GET")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "too many open connections") {
		t.Fatalf("over the cap: status %d, body %q", resp.StatusCode, body)
	}
	over.expectClosed()
	held[0].expectOK("GET /b HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n", "answer to GET /b")
	held[0].c.Close()
	waitFor(t, "a slot to free", func() bool { return e.p.OpenConns() < 3 })
	e.dial().expectOK("GET /c HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n", "answer to GET /c")
}

// FuzzProxyForward is the differential test of the proxy's framing: for
// any client bytes, the requests a backend reads with a strict independent
// parser (net/http's) are exactly those the proxy believed it forwarded,
// in count, methods, targets and bodies, and none carries a client-chosen
// X-Plane-* header.
func FuzzProxyForward(f *testing.F) {
	for _, v := range proxytest.Vectors {
		f.Add([]byte(proxytest.Expand(v.Send, "b1.plane.localhost", "x")))
	}
	f.Add([]byte("GET / HTTP/1.1\r\nHost: b1.plane.localhost\r\nX-Plane-User: admin\r\nx-plane-user: a\r\nX-PLANE-BACKEND: b2\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: b1.plane.localhost\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabcGET /2 HTTP/1.0\r\nHost: b1.plane.localhost\r\n\r\n"))
	// Several chunks, with sizes of more than one hex digit (upper and
	// lower case): a proxy that wrote its sizes in decimal would pass the
	// seeds above.
	big := strings.Repeat("z", 0x1f)
	f.Add([]byte("POST /c HTTP/1.1\r\nHost: b1.plane.localhost\r\nTransfer-Encoding: chunked\r\n\r\n1f\r\n" + big +
		"\r\n1A;ext=1\r\n" + big[:0x1a] + "\r\n3\r\nabc\r\n0\r\n\r\nGET /d HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n"))
	f.Add([]byte("POST /c HTTP/1.1\r\nHost: b1.plane.localhost\r\nTransfer-Encoding: chunked\r\n\r\n100\r\n" + strings.Repeat("y", 0x100) + "\r\n0\r\n\r\n"))

	var mu sync.Mutex
	var observed []Forwarded
	env := newFuzzEnv(f, func(fw Forwarded) {
		mu.Lock()
		observed = append(observed, fw)
		mu.Unlock()
	})
	var last []byte // the input before, for failures that concern it
	f.Fuzz(func(t *testing.T, data []byte) {
		defer func() { last = append(last[:0], data...) }()
		// A backend of its own for each input, so that nothing the last
		// one left in flight is taken for this one's.
		rec := env.newBackend(t)
		mu.Lock()
		observed = nil
		mu.Unlock()
		c, err := net.Dial("tcp", env.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
			t.Fatalf("reading the answers: %v", err)
		}
		mu.Lock()
		believed := observed
		mu.Unlock()
		var whole []string
		for _, fw := range believed {
			if fw.Whole {
				whole = append(whole, fmt.Sprintf("%s %s body=%q", fw.Method, fw.Target, fw.Body))
			}
		}
		var read []string
		var recs []proxytest.Request
		waitFor(t, "the backend to read what the proxy forwarded", func() bool {
			recs = rec.Requests()
			read = read[:0]
			for _, r := range recs {
				if strings.HasPrefix(r.Err, "head:") {
					return true // a failure, reported below
				}
				if r.Err == "" {
					read = append(read, fmt.Sprintf("%s %s body=%q", r.Method, r.Target, r.Body))
				}
			}
			return len(read) >= len(whole)
		})
		if strings.Join(read, "\n") != strings.Join(whole, "\n") {
			t.Fatalf("client sent %q\nproxy believed it forwarded:\n  %s\nbackend read:\n  %s", data, strings.Join(whole, "\n  "), strings.Join(read, "\n  "))
		}
		partial := len(believed) - len(whole)
		for _, r := range recs {
			if r.Err != "" && (partial == 0 || !strings.HasPrefix(r.Err, "body:")) {
				t.Fatalf("client sent %q (after %q)\nbackend read a request it could not parse: %+v (proxy believed %d partial; all: %+v)", data, last, r, partial, recs)
			}
		}
		tg := proxytest.Target{BackendID: "b1"}
		for _, r := range recs {
			if r.Err == "" {
				if problems := tg.CheckRequest(r); len(problems) > 0 {
					t.Fatalf("client sent %q\n%s", data, strings.Join(problems, "\n"))
				}
			}
		}
	})
}

type fuzzEnv struct {
	p    *Proxy
	addr string
}

// newBackend routes b1 to a new recorder, closed at the end of the test.
func (e *fuzzEnv) newBackend(t *testing.T) *proxytest.Recorder {
	rec := proxytest.NewRecorder()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go rec.Serve(ln)
	t.Cleanup(func() { ln.Close(); rec.Close() })
	e.p.SetRoute(Route{BackendID: "b1", Address: ln.Addr().String(), Status: plane.StatusReady, Public: true})
	return rec
}

// newFuzzEnv starts a proxy with short timeouts, so that no input stalls
// the fuzzer, for the life of the fuzz process.
func newFuzzEnv(f *testing.F, observe func(Forwarded)) *fuzzEnv {
	p := New(Config{Domain: testDomain, WaitReady: time.Second, IdleTimeout: 2 * time.Second,
		BodyTimeout: time.Second, ResponseTimeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	p.observe = observe
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go p.Serve(pln, false)
	f.Cleanup(func() { p.Close() })
	return &fuzzEnv{p: p, addr: pln.Addr().String()}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset by peer") || strings.Contains(err.Error(), "broken pipe"))
}

// TestProxyBodyTimeout: a client that stalls in the middle of a request
// body is dropped after BodyTimeout of silence, and the backend, which got
// a truncated body, is not kept busy by it.
func TestProxyBodyTimeout(t *testing.T) {
	t.Parallel()
	e := newRecorderEnv(t, Config{BodyTimeout: 200 * time.Millisecond})
	rc := e.dial()
	rc.send("POST /upload HTTP/1.1\r\nHost: b1.plane.localhost\r\nContent-Length: 10\r\n\r\nab")
	waitFor(t, "the body to stall", func() bool { n, _ := e.p.Activity("b1"); return n == 1 })
	e.waitIdle("b1", "the body timed out")
	rc.expectClosed()
	waitFor(t, "the backend to see the truncated body", func() bool {
		reqs := e.rec.Requests()
		return len(reqs) == 1 && strings.HasPrefix(reqs[0].Err, "body:")
	})
}

// TestProxyClientGoneBeforeWatch: clients that leave before the proxy
// starts watching them (their requests still wait on a hung backend) end
// their exchanges all the same. The watcher finds each end at once, racing
// the wait that it must wake: a wake that came before the wait set its
// deadline was lost (with -race, this test failed every time).
func TestProxyClientGoneBeforeWatch(t *testing.T) {
	t.Parallel() // it waits more than it works
	e := newRecorderEnv(t, Config{})
	const clients = 100
	var conns []*rawConn
	for range clients {
		rc := e.dial()
		rc.send("GET " + proxytest.PathHang + " HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n")
		conns = append(conns, rc)
	}
	waitFor(t, "the requests to reach the backend", func() bool { return e.rec.OpenConns() == clients })
	for _, rc := range conns {
		rc.c.Close()
	}
	e.waitIdle("b1", "the clients left")
	waitFor(t, "the proxy to close its backend connections", func() bool { return e.rec.OpenConns() == 0 })
}
