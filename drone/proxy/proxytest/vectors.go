package proxytest

import "strings"

// Vector is raw client bytes and what the proxy must make of them.
//
// In Send, {host} is the backend's Host value (name and port), {name} the
// name alone, {token} a connect token for the backend.
type Vector struct {
	Name string
	// Finding is the number of the security review's finding that the
	// vector reproduces, or "" for a vector that shows what still works.
	Finding string
	Send    string
	// Statuses are the answers the client reads, in order.
	Statuses []int
	// Forwarded are the requests the backend reads, as Request.String
	// writes them. With Partial, the backend may also have read the head of
	// one more request whose body never came whole: the proxy flushes a
	// head before the body's first bytes arrive, and aborts the exchange
	// when the body turns out malformed, which the backend sees as a
	// truncated message, never as a request.
	Forwarded []string
	Partial   bool
	// Closed: the proxy closes the connection after its answers.
	Closed bool
	// Location, when set, is the Location of the first answer.
	Location string
	// Header: headers every forwarded request carries (canonical names); an
	// empty value means the header must be absent.
	Header map[string]string
	// Nginx says, where nginx (the reference proxy) forwards what the
	// proxy refuses or refuses what it forwards, why the proxy's way is
	// safe. The audit fails on a difference that has no such note.
	Nginx string
}

// Vectors is the corpus: the findings of the security review, each as a
// request, and the cases around them that must keep working.
var Vectors = []Vector{
	{Name: "plain GET", Send: "GET /a HTTP/1.1\r\nHost: {host}\r\n\r\n",
		Statuses: []int{200}, Forwarded: []string{"GET /a"}},
	{Name: "pipelined POST and GET", Send: "POST /a HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: {host}\r\n\r\n",
		Statuses: []int{200, 200}, Forwarded: []string{`POST /a body="hello"`, "GET /b"}},
	{Name: "chunked POST", Send: "POST /a HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		Statuses: []int{200}, Forwarded: []string{`POST /a body="hello"`}},
	{Name: "chunked POST, CHUNKED with spaces", Send: "POST /a HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding:  CHUNKED \t\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		Statuses: []int{200}, Forwarded: []string{`POST /a body="hello"`},
		Nginx: "nginx 1.22 trims spaces but not tabs around a value and answers 501 to an unknown coding; RFC 9110 §5.6.3 makes SP and HTAB " +
			"optional whitespace, and the proxy forwards its own Transfer-Encoding and chunk lines, never the client's, so no backend can read the framing another way"},
	{Name: "HTTP/1.0 keep-alive with Content-Length", Send: "POST /a HTTP/1.0\r\nHost: {host}\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
		Statuses: []int{200}, Forwarded: []string{`POST /a body="hi"`}},
	{Name: "Firefox-style upgrade (Connection: keep-alive, Upgrade)",
		Send:     "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		Statuses: []int{200}, Forwarded: []string{"GET /ws"},
		Header: map[string]string{"Connection": "Upgrade", "Upgrade": "websocket"}},

	// Finding 1: Connection naming Content-Length made the proxy drop the
	// framing and stream the body, a request of its own to the backend.
	{Name: "Connection names Content-Length", Finding: "1",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nConnection: Content-Length\r\nContent-Length: 47\r\n\r\nGET /smuggled HTTP/1.1\r\nX-Plane-User: admin\r\n\r\n",
		Statuses: []int{400}, Closed: true,
		Nginx: "nginx forwards it with its own Content-Length (it ignores what Connection names); refusing is stricter and as safe"},
	{Name: "Connection names content-length among others", Finding: "1",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive, content-length\r\nContent-Length: 47\r\n\r\nGET /smuggled HTTP/1.1\r\nX-Plane-User: admin\r\n\r\n",
		Statuses: []int{400}, Closed: true,
		Nginx: "as above: nginx ignores Connection's list, the proxy refuses"},

	// Finding 2: the same through Transfer-Encoding, and TE on HTTP/1.0.
	{Name: "Connection names Transfer-Encoding", Finding: "2",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n2f\r\nGET /smuggled HTTP/1.1\r\nX-Plane-User: admin\r\n\r\n\r\n0\r\n\r\n",
		Statuses: []int{400}, Closed: true,
		Nginx: "nginx de-chunks and forwards with its own framing; refusing is stricter"},
	{Name: "HTTP/1.0 with Transfer-Encoding: chunked", Finding: "2",
		Send:     "POST /a HTTP/1.0\r\nHost: {host}\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2f\r\nGET /smuggled HTTP/1.1\r\nX-Plane-User: admin\r\n\r\n\r\n0\r\n\r\n",
		Statuses: []int{400}, Closed: true},
	{Name: "Connection names TE", Finding: "2",
		Send:     "GET /a HTTP/1.1\r\nHost: {host}\r\nConnection: TE\r\nTE: trailers\r\n\r\n",
		Statuses: []int{400}, Closed: true,
		Nginx: "nginx forwards it and drops TE itself; the proxy refuses a client that asks it to drop a framing header"},

	// Finding 3: loose framing.
	{Name: "Transfer-Encoding: gzip, chunked", Finding: "3",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		Statuses: []int{400}, Closed: true},
	{Name: "Transfer-Encoding: , chunked", Finding: "3",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: , chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		Statuses: []int{400}, Closed: true},
	{Name: "Transfer-Encoding: chunked and a vertical tab", Finding: "3",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\v\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		Statuses: []int{400}, Closed: true},
	{Name: "two Transfer-Encoding headers", Finding: "3",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		Statuses: []int{400}, Closed: true,
		Nginx: "nginx before 1.21.1 accepted a repeated chunked; the proxy, like nginx since, accepts exactly one"},
	{Name: "Transfer-Encoding: identity", Finding: "3",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello",
		Statuses: []int{400}, Closed: true},
	{Name: "Transfer-Encoding and Content-Length", Finding: "3",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		Statuses: []int{400}, Closed: true,
		Nginx: "nginx before 1.21.1 let Transfer-Encoding win (RFC 9112 §6.3 allows it); the proxy, like nginx since, refuses: no room to guess"},
	{Name: "Content-Length with a sign", Finding: "3",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nContent-Length: +5\r\n\r\nhello",
		Statuses: []int{400}, Closed: true},
	{Name: "differing Content-Lengths", Finding: "3",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		Statuses: []int{400}, Closed: true},
	{Name: "trailer carrying X-Plane-User", Finding: "3",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nTrailer: X-Plane-User\r\n\r\n5\r\nhello\r\n0\r\nX-Plane-User: admin\r\n\r\n",
		Statuses: []int{200}, Forwarded: []string{`POST /a body="hello"`},
		Header: map[string]string{"Trailer": ""}},
	{Name: "header name with underscores", Finding: "3",
		Send:     "GET /a HTTP/1.1\r\nHost: {host}\r\nX_Plane_User: admin\r\nX_Forwarded_For: 10.0.0.1\r\n\r\n",
		Statuses: []int{200}, Forwarded: []string{"GET /a"}},
	{Name: "Connection names Host", Finding: "3",
		Send:     "GET /a HTTP/1.1\r\nHost: {host}\r\nConnection: Host\r\n\r\n",
		Statuses: []int{400}, Closed: true,
		Nginx: "nginx ignores Connection's list and forwards Host; the proxy refuses"},
	{Name: "Host port with userinfo", Finding: "3",
		Send:     "GET /a HTTP/1.1\r\nHost: {name}:80@evil.example\r\n\r\n",
		Statuses: []int{400}, Closed: true},
	{Name: "chunk size not hex", Finding: "3",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
		Statuses: []int{400}, Closed: true, Partial: true},
	{Name: "chunk size with a sign", Finding: "3",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
		Statuses: []int{400}, Closed: true, Partial: true},
	{Name: "chunk line with a bare LF", Finding: "3",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
		Statuses: []int{400}, Closed: true, Partial: true},
	{Name: "chunk data longer than its size", Finding: "3",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
		Statuses: []int{400}, Closed: true, Partial: true},
	{Name: "last chunk without its final CRLF", Finding: "3",
		Send:     "POST /a HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
		Statuses: []int{200}, Forwarded: []string{`POST /a body="hello"`}, Closed: true,
		Nginx: "nginx waits for the trailer section until client_body_timeout; the proxy passes the complete body on, answers, and closes the connection it cannot reuse"},

	// Finding 7: the token redirect must stay on this origin.
	{Name: "token redirect to //evil.example", Finding: "7",
		Send:     "GET //evil.example/p?plane_token={token} HTTP/1.1\r\nHost: {host}\r\n\r\n",
		Statuses: []int{302}, Location: "/evil.example/p"},
	{Name: "token redirect to /\\evil.example", Finding: "7",
		Send:     "GET /\\evil.example/p?x=1&plane_token={token} HTTP/1.1\r\nHost: {host}\r\n\r\n",
		Statuses: []int{302}, Location: "/evil.example/p?x=1"},

	// Found by a later audit: headers an app may take for a proxy's word,
	// and an upgrade to HTTP/2 (h2c) that would carry requests past this
	// policy. Both requests go on as ordinary ones, without those headers.
	{Name: "client's own Forwarded, X-Real-IP, True-Client-IP, X-Original-URL",
		Send: "GET /a HTTP/1.1\r\nHost: {host}\r\nForwarded: for=1.2.3.4;proto=https\r\nX-Real-IP: 1.2.3.4\r\n" +
			"True-Client-IP: 1.2.3.4\r\nX-Client-IP: 1.2.3.4\r\nX-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\n\r\n",
		Statuses: []int{200}, Forwarded: []string{"GET /a"},
		Header: map[string]string{"Forwarded": "", "X-Real-Ip": "", "True-Client-Ip": "", "X-Client-Ip": "", "X-Original-Url": "", "X-Rewrite-Url": ""}},
	{Name: "upgrade to h2c",
		Send:     "GET /a HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
		Statuses: []int{200}, Forwarded: []string{"GET /a"},
		Header: map[string]string{"Upgrade": "", "Connection": "", "Http2-Settings": ""}},

	// More that must be refused.
	{Name: "obsolete line folding", Send: "GET /a HTTP/1.1\r\nHost: {host}\r\nX-A: one\r\n two\r\n\r\n",
		Statuses: []int{400}, Closed: true},
	{Name: "absolute-form target", Send: "GET http://evil.example/ HTTP/1.1\r\nHost: {host}\r\n\r\n",
		Statuses: []int{400}, Closed: true,
		Nginx: "nginx takes the host from the absolute URL; the proxy only serves origin-form targets"},
	{Name: "space before colon", Send: "GET /a HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding : chunked\r\n\r\n",
		Statuses: []int{400}, Closed: true},
}

// Expand fills a vector's placeholders.
func Expand(s, host, token string) string {
	name := host
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		name = host[:i]
	}
	return strings.NewReplacer("{host}", host, "{name}", name, "{token}", token).Replace(s)
}
