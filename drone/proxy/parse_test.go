package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

// readReq parses s as one request head.
func readReq(s string) (*head, error) {
	h := &head{}
	return h, h.readRequest(bufio.NewReader(strings.NewReader(s)))
}

func readResp(s string) (*head, error) {
	h := &head{}
	return h, h.readResponse(bufio.NewReader(strings.NewReader(s)))
}

// want is what a request or response head should parse to; zero fields of
// a case are defaults (no Content-Length, keep-alive, no upgrade...).
type want struct {
	method, target, host string
	minor                int
	contentLength        int64 // 0 here means -1 (none) unless hasCL
	hasCL                bool
	chunked              bool
	connClose            bool
	upgrade              bool
	expectCont           bool
	headers              []string // "name=value", in order; nil: not checked
}

func checkHead(t *testing.T, h *head, w want, request bool) {
	t.Helper()
	if request {
		if got := h.str(h.method); got != w.method {
			t.Errorf("method = %q, want %q", got, w.method)
		}
		if got := h.str(h.target); got != w.target {
			t.Errorf("target = %q, want %q", got, w.target)
		}
		if got := h.str(h.host); got != w.host {
			t.Errorf("host = %q, want %q", got, w.host)
		}
	}
	if h.minor != w.minor {
		t.Errorf("minor = %d, want %d", h.minor, w.minor)
	}
	wantCL := int64(-1)
	if w.hasCL {
		wantCL = w.contentLength
	}
	if h.contentLength != wantCL {
		t.Errorf("contentLength = %d, want %d", h.contentLength, wantCL)
	}
	if h.chunked != w.chunked {
		t.Errorf("chunked = %v, want %v", h.chunked, w.chunked)
	}
	if h.connClose != w.connClose {
		t.Errorf("connClose = %v, want %v", h.connClose, w.connClose)
	}
	if h.upgrade != w.upgrade {
		t.Errorf("upgrade = %v, want %v", h.upgrade, w.upgrade)
	}
	if h.expectCont != w.expectCont {
		t.Errorf("expectCont = %v, want %v", h.expectCont, w.expectCont)
	}
	if w.headers != nil {
		var got []string
		for i := range h.headers {
			got = append(got, string(h.name(i))+"="+string(h.value(i)))
		}
		if strings.Join(got, "|") != strings.Join(w.headers, "|") {
			t.Errorf("headers = %q, want %q", got, w.headers)
		}
	}
}

func manyHeaders(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-H%d: v\r\n", i)
	}
	return b.String()
}

func TestReadRequest(t *testing.T) {
	t.Parallel()
	get := func(rest string) string { return "GET / HTTP/1.1\r\nHost: a\r\n" + rest + "\r\n" }
	base := want{method: "GET", target: "/", host: "a", minor: 1}
	with := func(f func(*want)) want { w := base; f(&w); return w }
	tests := []struct {
		name    string
		in      string
		want    want
		wantErr error
	}{
		{name: "simple", in: get(""), want: with(func(w *want) { w.headers = []string{"Host=a"} })},
		{name: "POST with body", in: "POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
			want: want{method: "POST", target: "/submit", host: "a", minor: 1, hasCL: true, contentLength: 5}},
		{name: "PUT", in: "PUT /x HTTP/1.1\r\nHost: a\r\n\r\n", want: want{method: "PUT", target: "/x", host: "a", minor: 1}},
		{name: "DELETE", in: "DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n", want: want{method: "DELETE", target: "/x", host: "a", minor: 1}},
		{name: "PATCH", in: "PATCH /x HTTP/1.1\r\nHost: a\r\n\r\n", want: want{method: "PATCH", target: "/x", host: "a", minor: 1}},
		{name: "HEAD", in: "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", want: want{method: "HEAD", target: "/x", host: "a", minor: 1}},
		{name: "OPTIONS star", in: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", want: want{method: "OPTIONS", target: "*", host: "a", minor: 1}},
		{name: "extension method", in: "M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n", want: want{method: "M-SEARCH", target: "/x", host: "a", minor: 1}},
		{name: "query and escapes", in: "GET /a/b%20c?d=e&f=%2F#g HTTP/1.1\r\nHost: a\r\n\r\n",
			want: want{method: "GET", target: "/a/b%20c?d=e&f=%2F#g", host: "a", minor: 1}},
		{name: "method not a token", in: "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "absolute-form target", in: "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "authority-form target", in: "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "empty target", in: "GET  HTTP/1.1\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "space in target", in: "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "control byte in target", in: "GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "bad percent escape in target", in: "GET /%0X HTTP/1.1\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "percent at end of target", in: "GET /a% HTTP/1.1\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "bad percent escape in query", in: "GET /a?b=%zz HTTP/1.1\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "DEL in target", in: "GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "no proto", in: "GET /\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "HTTP/2.0", in: "GET / HTTP/2.0\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "HTTP/0.9 style", in: "GET /\r\n\r\n", wantErr: errMalformed},
		{name: "lowercase proto", in: "GET / http/1.1\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "trailing space after proto", in: "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "leading space", in: " GET / HTTP/1.1\r\nHost: a\r\n\r\n", wantErr: errMalformed},

		// Header syntax.
		{name: "folded header", in: get("X-A: one\r\n two\r\n"), wantErr: errMalformed},
		{name: "folded header with tab", in: get("X-A: one\r\n\ttwo\r\n"), wantErr: errMalformed},
		{name: "space before colon", in: get("X-A : v\r\n"), wantErr: errMalformed},
		{name: "no colon", in: get("X-A v\r\n"), wantErr: errMalformed},
		{name: "empty name", in: get(": v\r\n"), wantErr: errMalformed},
		{name: "value trimmed", in: get("X-A: \t v w \t \r\n"), want: with(func(w *want) { w.headers = []string{"Host=a", "X-A=v w"} })},
		{name: "empty value", in: get("X-A:\r\n"), want: with(func(w *want) { w.headers = []string{"Host=a", "X-A="} })},
		{name: "no space after colon", in: get("X-A:v\r\n"), want: with(func(w *want) { w.headers = []string{"Host=a", "X-A=v"} })},
		{name: "NUL in value", in: get("X-A: a\x00b\r\n"), wantErr: errMalformed},
		{name: "CR in value", in: get("X-A: a\rb\r\n"), wantErr: errMalformed},
		{name: "DEL in value", in: get("X-A: a\x7fb\r\n"), wantErr: errMalformed},
		{name: "vertical tab in value", in: get("X-A: a\vb\r\n"), wantErr: errMalformed},
		{name: "tab in value kept", in: get("X-A: a\tb\r\n"), want: with(func(w *want) { w.headers = []string{"Host=a", "X-A=a\tb"} })},
		{name: "CR at end of value", in: get("X-A: ab\r\r\n"), wantErr: errMalformed},
		{name: "obs-text in value kept", in: get("X-A: caf\xc3\xa9\r\n"), want: with(func(w *want) { w.headers = []string{"Host=a", "X-A=caf\xc3\xa9"} })},

		// Case-insensitive names.
		{name: "lowercase host", in: "GET / HTTP/1.1\r\nhost: a\r\n\r\n", want: base},
		{name: "uppercase HOST", in: "GET / HTTP/1.1\r\nHOST: a\r\n\r\n", want: base},
		{name: "mixed-case content-length", in: get("content-LENGTH: 7\r\n"), want: with(func(w *want) { w.hasCL, w.contentLength = true, 7 })},
		{name: "uppercase chunked", in: get("TRANSFER-ENCODING: CHUNKED\r\n"), want: with(func(w *want) { w.chunked = true })},

		// Content-Length.
		{name: "content-length 0", in: get("Content-Length: 0\r\n"), want: with(func(w *want) { w.hasCL = true })},
		{name: "content-length leading zeros", in: get("Content-Length: 007\r\n"), want: with(func(w *want) { w.hasCL, w.contentLength = true, 7 })},
		{name: "content-length large", in: get("Content-Length: 9223372036854775807\r\n"), want: with(func(w *want) { w.hasCL, w.contentLength = true, 1<<63-1 })},
		{name: "duplicate equal content-length", in: get("Content-Length: 5\r\nContent-Length: 5\r\n"), want: with(func(w *want) { w.hasCL, w.contentLength = true, 5 })},
		{name: "differing content-length", in: get("Content-Length: 5\r\nContent-Length: 6\r\n"), wantErr: errMalformed},
		{name: "content-length list", in: get("Content-Length: 5, 6\r\n"), wantErr: errMalformed},
		{name: "negative content-length", in: get("Content-Length: -1\r\n"), wantErr: errMalformed},
		{name: "content-length overflow", in: get("Content-Length: 99999999999999999999\r\n"), wantErr: errMalformed},
		{name: "content-length not a number", in: get("Content-Length: five\r\n"), wantErr: errMalformed},
		{name: "content-length hex", in: get("Content-Length: 0x10\r\n"), wantErr: errMalformed},
		{name: "empty content-length", in: get("Content-Length:\r\n"), wantErr: errMalformed},
		// RFC 9110 §8.6: Content-Length = 1*DIGIT. A sign is not a digit, and
		// a backend that parses "+5" otherwise than the proxy (or rejects it
		// after the proxy already framed the body) opens request smuggling.
		{name: "content-length with plus sign", in: get("Content-Length: +5\r\n"), wantErr: errMalformed},
		{name: "content-length minus zero", in: get("Content-Length: -0\r\n"), wantErr: errMalformed},

		// Transfer-Encoding.
		{name: "chunked", in: get("Transfer-Encoding: chunked\r\n"), want: with(func(w *want) { w.chunked = true })},
		{name: "chunked last of several codings", in: get("Transfer-Encoding: gzip, chunked\r\n"), wantErr: errMalformed},
		{name: "chunked then content-length", in: get("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), wantErr: errMalformed},
		{name: "content-length then chunked", in: get("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), wantErr: errMalformed},
		{name: "gzip only", in: get("Transfer-Encoding: gzip\r\n"), wantErr: errMalformed},
		{name: "identity", in: get("Transfer-Encoding: identity\r\n"), wantErr: errMalformed},
		{name: "chunked not last", in: get("Transfer-Encoding: chunked, gzip\r\n"), wantErr: errMalformed},
		{name: "two transfer-encoding headers", in: get("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), wantErr: errMalformed},
		{name: "empty transfer-encoding", in: get("Transfer-Encoding:\r\n"), wantErr: errMalformed},
		{name: "chunked with junk", in: get("Transfer-Encoding: xchunked\r\n"), wantErr: errMalformed},

		// Connection.
		{name: "connection close", in: get("Connection: close\r\n"), want: with(func(w *want) { w.connClose = true })},
		{name: "connection CLOSE", in: get("Connection: CLOSE\r\n"), want: with(func(w *want) { w.connClose = true })},
		{name: "connection keep-alive", in: get("Connection: keep-alive\r\n"), want: base},
		{name: "connection list with close", in: get("Connection: keep-alive , close\r\n"), want: with(func(w *want) { w.connClose = true })},
		{name: "upgrade", in: get("Connection: Upgrade\r\nUpgrade: websocket\r\n"), want: with(func(w *want) { w.upgrade = true })},
		{name: "upgrade in list", in: get("Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"), want: with(func(w *want) { w.upgrade = true })},
		{name: "upgrade header first", in: get("Upgrade: websocket\r\nConnection: upgrade\r\n"), want: with(func(w *want) { w.upgrade = true })},
		{name: "connection upgrade without Upgrade", in: get("Connection: Upgrade\r\n"), want: base},
		{name: "Upgrade without connection upgrade", in: get("Upgrade: websocket\r\n"), want: base},
		{name: "empty Upgrade", in: get("Connection: Upgrade\r\nUpgrade:\r\n"), want: base},
		{name: "HTTP/1.0 closes by default", in: "GET / HTTP/1.0\r\n\r\n", want: want{method: "GET", target: "/", connClose: true}},
		{name: "HTTP/1.0 keep-alive", in: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", want: want{method: "GET", target: "/"}},
		{name: "HTTP/1.0 keep-alive and close", in: "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", want: want{method: "GET", target: "/", connClose: true}},
		{name: "HTTP/1.0 with host", in: "GET / HTTP/1.0\r\nHost: a\r\n\r\n", want: want{method: "GET", target: "/", host: "a", connClose: true}},

		// Expect.
		{name: "expect 100-continue", in: get("Expect: 100-continue\r\n"), want: with(func(w *want) { w.expectCont = true })},
		{name: "expect 100-Continue", in: get("Expect: 100-Continue\r\n"), want: with(func(w *want) { w.expectCont = true })},
		{name: "other expectation", in: get("Expect: something\r\n"), want: base},

		// Host.
		{name: "two hosts", in: get("Host: b\r\n"), wantErr: errMalformed},
		{name: "two hosts, first empty", in: "GET / HTTP/1.1\r\nHost:\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "two equal hosts", in: get("Host: a\r\n"), wantErr: errMalformed},
		{name: "no host", in: "GET / HTTP/1.1\r\n\r\n", want: want{method: "GET", target: "/", minor: 1}},
		{name: "host with port", in: "GET / HTTP/1.1\r\nHost: a.b:8080\r\n\r\n", want: want{method: "GET", target: "/", host: "a.b:8080", minor: 1}},

		// Limits.
		{name: "head too large", in: get("X-Big: " + strings.Repeat("x", maxHeadBytes) + "\r\n"), wantErr: errHeadTooLarge},
		{name: "request line too large", in: "GET /" + strings.Repeat("x", maxHeadBytes) + " HTTP/1.1\r\n\r\n", wantErr: errHeadTooLarge},
		{name: "many small headers too large", in: get(strings.Repeat("X-A: "+strings.Repeat("y", 1000)+"\r\n", 66)), wantErr: errHeadTooLarge},
		{name: "max headers", in: "GET / HTTP/1.1\r\n" + manyHeaders(maxHeaders) + "\r\n", want: want{method: "GET", target: "/", minor: 1}},
		{name: "too many headers", in: "GET / HTTP/1.1\r\n" + manyHeaders(maxHeaders+1) + "\r\n", wantErr: errHeadTooLarge},
		{name: "head just under limit", in: "GET / HTTP/1.1\r\nX: " + strings.Repeat("z", maxHeadBytes-16-5-2) + "\r\n\r\n",
			want: want{method: "GET", target: "/", minor: 1}},

		// Line endings.
		{name: "bare LF", in: "GET / HTTP/1.1\nHost: a\nContent-Length: 3\n\n", want: with(func(w *want) { w.hasCL, w.contentLength = true, 3 })},
		{name: "mixed line endings", in: "GET / HTTP/1.1\r\nHost: a\n\r\n", want: base},
		{name: "leading empty line", in: "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", want: base},
		{name: "leading bare LF", in: "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", want: base},
		{name: "two leading empty lines", in: "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", wantErr: errMalformed},
		{name: "CR inside request line", in: "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", wantErr: errMalformed},

		// Ends of input.
		{name: "empty input", in: "", wantErr: io.EOF},
		{name: "only an empty line", in: "\r\n", wantErr: io.EOF},
		{name: "truncated request line", in: "GET / HT", wantErr: io.EOF},
		{name: "truncated headers", in: "GET / HTTP/1.1\r\nHost: a\r\n", wantErr: errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := readReq(tt.in)
			if tt.wantErr != nil || err != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			checkHead(t, h, tt.want, true)
		})
	}
}

func TestReadResponse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		in         string
		status     int
		statusText string
		want       want
		wantErr    error
	}{
		{name: "200", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", status: 200, statusText: "200 OK",
			want: want{minor: 1, hasCL: true, contentLength: 2}},
		{name: "no reason phrase", in: "HTTP/1.1 204\r\n\r\n", status: 204, statusText: "204", want: want{minor: 1}},
		{name: "empty reason phrase", in: "HTTP/1.1 404 \r\n\r\n", status: 404, statusText: "404 ", want: want{minor: 1}},
		{name: "long reason phrase", in: "HTTP/1.1 500 Internal Server Error\r\n\r\n", status: 500, statusText: "500 Internal Server Error", want: want{minor: 1}},
		{name: "HTTP/1.0 closes", in: "HTTP/1.0 200 OK\r\n\r\n", status: 200, statusText: "200 OK", want: want{connClose: true}},
		{name: "HTTP/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", status: 200,
			statusText: "200 OK", want: want{hasCL: true}},
		{name: "close", in: "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", status: 200, statusText: "200 OK", want: want{minor: 1, connClose: true}},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", status: 200, statusText: "200 OK", want: want{minor: 1, chunked: true}},
		{name: "chunked and content-length", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", wantErr: errMalformed},
		{name: "101", in: "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", status: 101,
			statusText: "101 Switching Protocols", want: want{minor: 1, upgrade: true}},
		{name: "100", in: "HTTP/1.1 100 Continue\r\n\r\n", status: 100, statusText: "100 Continue", want: want{minor: 1}},
		{name: "999", in: "HTTP/1.1 999 X\r\n\r\n", status: 999, statusText: "999 X", want: want{minor: 1}},
		{name: "two hosts are fine in a response", in: "HTTP/1.1 200 OK\r\nHost: a\r\nHost: b\r\n\r\n", status: 200, statusText: "200 OK",
			want: want{minor: 1, headers: []string{"Host=a", "Host=b"}}},
		{name: "bare LF", in: "HTTP/1.1 200 OK\nContent-Length: 1\n\n", status: 200, statusText: "200 OK", want: want{minor: 1, hasCL: true, contentLength: 1}},
		{name: "code below 100", in: "HTTP/1.1 099 X\r\n\r\n", wantErr: errMalformed},
		{name: "signed code", in: "HTTP/1.1 +99 X\r\n\r\n", wantErr: errMalformed},
		{name: "four-digit code", in: "HTTP/1.1 2000 OK\r\n\r\n", wantErr: errMalformed},
		{name: "short code", in: "HTTP/1.1 20 OK\r\n\r\n", wantErr: errMalformed},
		{name: "letters in code", in: "HTTP/1.1 20x OK\r\n\r\n", wantErr: errMalformed},
		{name: "HTTP/2", in: "HTTP/2 200 OK\r\n\r\n", wantErr: errMalformed},
		{name: "no space after version", in: "HTTP/1.1_200 OK\r\n\r\n", wantErr: errMalformed},
		{name: "garbage", in: "hello world, this is not HTTP\r\n\r\n", wantErr: errMalformed},
		{name: "folded header", in: "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", wantErr: errMalformed},
		{name: "NUL in value", in: "HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n", wantErr: errMalformed},
		{name: "differing content-length", in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", wantErr: errMalformed},
		{name: "too large", in: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxHeadBytes) + "\r\n\r\n", wantErr: errHeadTooLarge},
		{name: "too many headers", in: "HTTP/1.1 200 OK\r\n" + manyHeaders(maxHeaders+1) + "\r\n", wantErr: errHeadTooLarge},
		{name: "empty", in: "", wantErr: io.EOF},
		{name: "truncated", in: "HTTP/1.1 200 OK\r\nX: 1\r\n", wantErr: errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := readResp(tt.in)
			if tt.wantErr != nil || err != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if h.status != tt.status {
				t.Errorf("status = %d, want %d", h.status, tt.status)
			}
			if got := string(h.statusText()); got != tt.statusText {
				t.Errorf("statusText = %q, want %q", got, tt.statusText)
			}
			checkHead(t, h, tt.want, false)
		})
	}
}

// TestReadRequestPipelined reads several requests, bodies between them,
// from one reader, reusing one head as the proxy does.
func TestReadRequestPipelined(t *testing.T) {
	t.Parallel()
	in := "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
		"\r\n" + // a stray CRLF after a body is tolerated
		"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"GET /4 HTTP/1.1\nHost: a\n\n" +
		"GET /5 HTTP/1.0\r\n\r\n"
	br := bufio.NewReaderSize(strings.NewReader(in), 16) // small: lines span buffer refills
	h := &head{}
	var bodies []string
	for i := 1; ; i++ {
		err := h.readRequest(br)
		if err == io.EOF {
			if i != 6 {
				t.Fatalf("EOF after %d requests, want 5", i-1)
			}
			break
		}
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if i == 5 && (!h.connClose || h.minor != 0) {
			t.Errorf("request 5: connClose %v minor %d, want HTTP/1.0 closing", h.connClose, h.minor)
		}
		if got, want := h.str(h.target), "/"+strconv.Itoa(i); got != want {
			t.Fatalf("request %d: target %q, want %q", i, got, want)
		}
		var body bytes.Buffer
		bw := bufio.NewWriter(&body)
		switch {
		case h.chunked:
			err = copyChunked(bw, br, false, nil)
		case h.contentLength > 0:
			err = copyN(bw, br, h.contentLength, nil)
		}
		if err != nil {
			t.Fatalf("request %d body: %v", i, err)
		}
		bw.Flush()
		bodies = append(bodies, body.String())
	}
	want := []string{"", "hello", "3\r\nabc\r\n0\r\n\r\n", "", ""}
	if strings.Join(bodies, "|") != strings.Join(want, "|") {
		t.Fatalf("bodies = %q, want %q", bodies, want)
	}
}

// TestReadRequestReusesHead checks that a head reused for a second request
// keeps nothing of the first one.
func TestReadRequestReusesHead(t *testing.T) {
	t.Parallel()
	br := bufio.NewReader(strings.NewReader(
		"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close, Upgrade\r\nUpgrade: x\r\nExpect: 100-continue\r\n\r\n" +
			"GET /b HTTP/1.1\r\nHost: b\r\n\r\n"))
	h := &head{}
	if err := h.readRequest(br); err != nil {
		t.Fatal(err)
	}
	if err := h.readRequest(br); err != nil {
		t.Fatal(err)
	}
	checkHead(t, h, want{method: "GET", target: "/b", host: "b", minor: 1, headers: []string{"Host=b"}}, true)
}

// TestHeaderIndex: names are matched case-insensitively against the
// lowercase name the proxy asks for.
func TestHeaderIndex(t *testing.T) {
	t.Parallel()
	h, err := readReq("GET / HTTP/1.1\r\nHost: a\r\nX-Two: 1\r\nx-two: 2\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		want int
	}{{"host", 0}, {"x-two", 1}, {"x-tw", -1}, {"missing", -1}} {
		if got := h.headerIndex(tt.name); got != tt.want {
			t.Errorf("headerIndex(%q) = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestBackendID(t *testing.T) {
	t.Parallel()
	p := New(Config{Domain: "Plane.Localhost."})
	tests := []struct {
		host string
		id   string
		ok   bool
	}{
		{"abc.plane.localhost", "abc", true},
		{"ABC.PLANE.LOCALHOST", "abc", true},
		{"abc.plane.localhost:9090", "abc", true},
		{"a1b2.Plane.Localhost:1", "a1b2", true},
		{"plane.localhost", "", false},
		{".plane.localhost", "", false},
		{"a.b.plane.localhost", "", false},
		{"a-b.plane.localhost", "", false},
		{"a_b.plane.localhost", "", false},
		{"abc.other.localhost", "", false},
		{"abcplane.localhost", "", false},
		{"abc.plane.localhost.evil", "", false},
		{"[::1]:80", "", false},
		{"", "", false},
		{":80", "", false},
	}
	for _, tt := range tests {
		id, ok := p.backendID([]byte(tt.host))
		if id != tt.id || ok != tt.ok {
			t.Errorf("backendID(%q) = %q, %v; want %q, %v", tt.host, id, ok, tt.id, tt.ok)
		}
	}
}

// checkSpans fails unless every span of h lies within h.buf.
func checkSpans(t *testing.T, h *head) {
	t.Helper()
	check := func(what string, s span) {
		if s.start < 0 || s.start > s.end || s.end > len(h.buf) {
			t.Fatalf("%s span %v outside buf of %d bytes", what, s, len(h.buf))
		}
	}
	check("method", h.method)
	check("target", h.target)
	check("proto", h.proto)
	check("statusLine", h.statusLine)
	check("host", h.host)
	for i, hd := range h.headers {
		check(fmt.Sprintf("header %d name", i), hd.name)
		check(fmt.Sprintf("header %d value", i), hd.value)
	}
}

// renderHead writes h back as a head in canonical form.
func renderHead(h *head, request bool) []byte {
	var b []byte
	if request {
		b = fmt.Appendf(b, "%s %s %s\r\n", h.bytes(h.method), h.bytes(h.target), h.bytes(h.proto))
	} else {
		b = fmt.Appendf(b, "HTTP/1.%d %s\r\n", h.minor, h.statusText())
	}
	for i := range h.headers {
		b = fmt.Appendf(b, "%s: %s\r\n", h.name(i), h.value(i))
	}
	return append(b, "\r\n"...)
}

// sameHead compares what the proxy uses of two heads.
func sameHead(a, b *head) error {
	fields := func(h *head) string {
		s := fmt.Sprintf("method=%q target=%q proto=%q status=%d text=%q minor=%d cl=%d chunked=%v close=%v upgrade=%v expect=%v host=%q",
			h.bytes(h.method), h.bytes(h.target), h.bytes(h.proto), h.status, h.statusText(), h.minor,
			h.contentLength, h.chunked, h.connClose, h.upgrade, h.expectCont, h.bytes(h.host))
		for i := range h.headers {
			s += fmt.Sprintf(" %q=%q", h.name(i), h.value(i))
		}
		return s
	}
	if fa, fb := fields(a), fields(b); fa != fb {
		return fmt.Errorf("\n first: %s\nsecond: %s", fa, fb)
	}
	return nil
}

func fuzzHead(t *testing.T, data []byte, bufSize int, request bool) {
	read := func(h *head, br *bufio.Reader) error {
		if request {
			return h.readRequest(br)
		}
		return h.readResponse(br)
	}
	br := bufio.NewReaderSize(bytes.NewReader(data), 16+bufSize%8192)
	h := &head{}
	err := read(h, br)
	if err != nil {
		return
	}
	checkSpans(t, h)
	if len(h.buf) > maxHeadBytes {
		t.Fatalf("accepted a head of %d bytes", len(h.buf))
	}
	if len(h.headers) > maxHeaders {
		t.Fatalf("accepted %d headers", len(h.headers))
	}
	// The proxy writes these fields into the heads it sends; none may hold
	// a line break.
	for i := range h.headers {
		if bytes.ContainsAny(h.name(i), "\r\n:") || bytes.ContainsAny(h.value(i), "\r\n\x00") {
			t.Fatalf("header %q: %q holds a forbidden byte", h.name(i), h.value(i))
		}
	}
	if request && bytes.ContainsAny(h.bytes(h.target), " \r\n") {
		t.Fatalf("target %q holds a forbidden byte", h.bytes(h.target))
	}
	again := renderHead(h, request)
	if len(again) > maxHeadBytes {
		return // canonical form adds ": " and CR to each line
	}
	h2 := &head{}
	if err := read(h2, bufio.NewReader(bytes.NewReader(again))); err != nil {
		t.Fatalf("re-rendered head %q does not parse: %v", again, err)
	}
	if err := sameHead(h, h2); err != nil {
		t.Fatalf("re-rendered head %q parses otherwise: %v", again, err)
	}
}

func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a.plane.localhost\r\n\r\n",
		"POST /x?y=z HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nExpect: 100-continue\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nCookie: a=b; plane_token=x\r\n\r\n",
		"\nGET / HTTP/1.0\nConnection: keep-alive\n\n",
		"OPTIONS * HTTP/1.1\r\nhost:a\r\nX:\t v \t\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
	} {
		f.Add([]byte(s), 4096)
	}
	f.Fuzz(func(t *testing.T, data []byte, bufSize int) {
		fuzzHead(t, data, max(bufSize, -bufSize, 0), true)
	})
}

func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"HTTP/1.0 204\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 200 \nTransfer-Encoding: chunked\n\n0\r\n\r\n",
	} {
		f.Add([]byte(s), 4096)
	}
	f.Fuzz(func(t *testing.T, data []byte, bufSize int) {
		fuzzHead(t, data, max(bufSize, -bufSize, 0), false)
	})
}
