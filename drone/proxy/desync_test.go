package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"plane"
)

// A backend that sends more than its response's framing says (a buggy app:
// a body after a HEAD, a Content-Length too small, a second response
// nobody asked for) leaves bytes on its connection. The next request on
// that connection, another user's maybe, would read them as its answer:
// the connection is never reused (nginx: "upstream sent more data than
// specified"; Go's Transport: "unsolicited response").
func TestExtraResponseBytesNotReused(t *testing.T) {
	const secret = "HTTP/1.1 200 OK\r\nContent-Length: 23\r\nSet-Cookie: sess=alice\r\n\r\nalice's private profile"
	tests := []struct {
		name   string
		method string
		// answer is what the backend writes for the first request, and
		// later what it writes a moment after (once the proxy has the
		// response and may have pooled the connection).
		answer, later string
	}{
		{"too short a Content-Length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" + secret, ""},
		{"a response sent later, unasked", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", secret},
		{"a body after a HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nHI", ""},
		{"a body after a 204", "GET", "HTTP/1.1 204 No Content\r\n\r\nHI", ""},
		{"a body after a 304", "GET", "HTTP/1.1 304 Not Modified\r\n\r\n" + secret, ""},
		{"a POST's too short a Content-Length", "POST", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" + secret, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Config{}, false)
			laterSent := make(chan struct{})
			ln := listenLoopback(t)
			t.Cleanup(func() { ln.Close() })
			go serveScripted(ln, func(c net.Conn, req *http.Request) {
				if req.URL.Path != "/first" {
					body := "answer to " + req.URL.Path
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
					return
				}
				io.WriteString(c, tt.answer)
				if tt.later != "" {
					go func() {
						// After the proxy has read the response: the client has it.
						<-laterSent
						io.WriteString(c, tt.later)
						laterSent <- struct{}{}
					}()
				}
			})
			e.p.SetRoute(Route{BackendID: "b1", Address: ln.Addr().String(), Status: plane.StatusReady, Public: true})

			first := e.dial()
			req := tt.method + " /first HTTP/1.1\r\nHost: b1.plane.localhost\r\n"
			if tt.method == "POST" {
				req += "Content-Length: 2\r\n\r\nab"
			} else {
				req += "\r\n"
			}
			first.send(req)
			first.response(tt.method)
			if tt.later != "" {
				laterSent <- struct{}{}
				<-laterSent
			}
			// Another user, on a connection of their own.
			for i := range 3 {
				resp, body := e.dial().roundTrip(fmt.Sprintf("GET /next%d HTTP/1.1\r\nHost: b1.plane.localhost\r\n\r\n", i))
				if want := fmt.Sprintf("answer to /next%d", i); resp.StatusCode != 200 || body != want || resp.Header.Get("Set-Cookie") != "" {
					t.Fatalf("request %d: status %d, Set-Cookie %q, body %q; want 200 %q", i, resp.StatusCode, resp.Header.Get("Set-Cookie"), body, want)
				}
			}
		})
	}
}

// serveScripted accepts connections on ln and answers each request with
// answer.
func serveScripted(ln net.Listener, answer func(c net.Conn, req *http.Request)) {
	serveEach(ln, func(c net.Conn, br *bufio.Reader) bool {
		req, err := http.ReadRequest(br)
		if err != nil {
			return false
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return false
		}
		answer(c, req)
		return !strings.EqualFold(req.Header.Get("Connection"), "close")
	})
}

// serveEach accepts connections on ln and calls one on each, with a
// reader of it, until one reports the connection over (then closed).
func serveEach(ln net.Listener, one func(c net.Conn, br *bufio.Reader) (more bool)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			for one(c, br) {
			}
		}()
	}
}

func TestFinalHeadBuffered(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", true},
		{"HTTP/1.1 204 No Content\r\n\r\n", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", false}, // the head goes on
		{"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false},
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", false}, // an interim answer first
		{"HTTP/1.1 2", false},
		{"", false},
	} {
		br := bufio.NewReaderSize(strings.NewReader(tc.in), 4096)
		br.Peek(len(tc.in)) // fill
		if got := finalHeadBuffered(br); got != tc.want {
			t.Errorf("finalHeadBuffered(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// A WebSocket may stay quiet for longer than the idle timeout of a
// connection waiting for its next request: the tunnel drops that deadline.
func TestWebSocketOutlivesIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 200 * time.Millisecond
	e := newEnv(t, Config{IdleTimeout: idle, PresenceTimeout: idle}, false)
	e.route("b1", newBackend(t, "b1"), true)
	c, _ := e.client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+e.host("b1")+"/ws", &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if _, _, err := ws.Read(ctx); err != nil { // the backend's hello
		t.Fatal(err)
	}
	time.Sleep(3 * idle) // what is tested is a wait longer than the timeout
	if err := ws.Write(ctx, websocket.MessageText, []byte("still here")); err != nil {
		t.Fatalf("write after %s idle: %v", 3*idle, err)
	}
	if _, got, err := ws.Read(ctx); err != nil || string(got) != "still here" {
		t.Fatalf("echo after %s idle: %q, %v", 3*idle, got, err)
	}
}
