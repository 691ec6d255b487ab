package proxy

import "bytes"

// The proxy's framing policy, in one place.
//
// A message's framing (where its body ends) must be read alike by the
// client, the proxy and the backend; where two of them disagree, a body
// becomes a request (request smuggling) and one user reads another's
// responses. The proxy is hand-written, so it is stricter than the servers
// behind it and never passes framing on: it reads the framing headers,
// decides, and writes its own.
//
//  1. Hop-by-hop headers (hopByHop, and whatever Connection names) describe
//     one connection: they are never forwarded, in either direction.
//     Content-Length and Transfer-Encoding are written by the proxy from
//     what it parsed, never copied.
//  2. Connection may not name Host, Content-Length, Transfer-Encoding or TE:
//     a client that asks the proxy to drop its framing is refused (400).
//  3. A request's Transfer-Encoding is exactly "chunked" (any case, spaces
//     or tabs around it) on HTTP/1.1. Anything else, several of them, or any
//     Transfer-Encoding on HTTP/1.0 is refused: 400 (nginx answers 501 or
//     400). Content-Length is 1*DIGIT, repeated only with the same value,
//     never beside Transfer-Encoding.
//  4. Chunk sizes are hex digits only; chunk extensions and trailers are
//     dropped: the proxy writes each size line and the last chunk itself.
//  5. Header names holding '_' are dropped: CGI-style servers read
//     X_Plane_User as X-Plane-User (nginx drops them too). Client
//     X-Plane-* and X-Forwarded-* are dropped; the proxy writes its own.
//     So are the other headers an app may take for a proxy's word about
//     the client or the path (spoofable): Forwarded, X-Real-IP, ….
//  6. Host is host[:port]: a name, an IPv4 or a bracketed IPv6 address, and
//     digits after the colon.
//  7. Every malformed request gets 400 and its connection is closed.
//  8. Only a WebSocket upgrade is tunnelled (tunnelable). Any other
//     Upgrade (h2c: HTTP/2 behind the proxy's back, past this policy) is
//     dropped as the hop-by-hop header it is, and the request is an
//     ordinary one; a backend that switches protocols anyway gets 502.
//  9. A backend connection goes back to the pool only with nothing read
//     past its response, and is checked before its next request: bytes a
//     backend sent beyond its framing are never another request's answer
//     (pool.go).
//
// Only idempotent requests are retried on a fresh backend connection, and
// only when the reused one failed before any byte of a response came (see
// retryable in serve.go).

// hopByHop are the headers of RFC 9110 §7.6.1 and RFC 9112 that belong to
// one connection (Proxy-Connection and Keep-Alive are their old spellings).
var hopByHop = [...]string{
	"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
	"proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
}

func isHopByHop(name []byte) bool {
	for _, h := range hopByHop {
		if equalFold(name, h) {
			return true
		}
	}
	return false
}

// spoofable are request headers that frameworks read as a trusted proxy's
// word on the client's address, scheme or path (Forwarded of RFC 7239,
// nginx's X-Real-IP, CDNs' True-Client-IP, IIS's X-Original-URL and
// X-Rewrite-URL). The proxy writes X-Forwarded-For and -Proto itself.
var spoofable = [...]string{
	"forwarded", "x-real-ip", "true-client-ip", "x-client-ip", "x-original-url", "x-rewrite-url",
}

// dropHeader says whether a header is never forwarded as received: a
// hop-by-hop header, a framing header the proxy writes itself, and, on
// requests, names the backend could confuse with the proxy's own.
func dropHeader(name []byte, request bool) bool {
	if isHopByHop(name) || equalFold(name, "content-length") {
		return true
	}
	if !request {
		return false
	}
	if hasPrefixFold(name, "x-plane-") || hasPrefixFold(name, "x-forwarded-") || bytes.IndexByte(name, '_') >= 0 {
		return true
	}
	for _, s := range spoofable {
		if equalFold(name, s) {
			return true
		}
	}
	return false
}

// tunnelable says whether a request's Upgrade is one the proxy tunnels:
// WebSocket only (RFC 6455 §4.1: the value is "websocket", any case).
func tunnelable(protocol []byte) bool { return equalFold(protocol, "websocket") }

// framingOption says whether Connection may not name this header: naming
// it would drop the framing the backend needs (or the Host it routes by).
func framingOption(tok []byte) bool {
	return equalFold(tok, "host") || equalFold(tok, "content-length") ||
		equalFold(tok, "transfer-encoding") || equalFold(tok, "te")
}

// checkFraming applies the policy to a parsed head once all its headers
// are read.
func (h *head) checkFraming(request bool) error {
	if h.te.end > 0 {
		te := h.bytes(h.te)
		switch {
		case request && (h.minor == 0 || !equalFold(te, "chunked")):
			return errMalformed
		case !request && !validCodings(te):
			return errMalformed
		}
		h.chunked = true
	}
	if h.chunked && h.contentLength >= 0 {
		return errMalformed // RFC 9112 §6.3: reject rather than guess
	}
	if request && h.host.end > 0 && !validHost(h.bytes(h.host)) {
		return errMalformed
	}
	if h.connNamed {
		for i := range h.headers {
			if !h.headers[i].drop && h.connectionNames(h.name(i)) {
				h.headers[i].drop = true
			}
		}
	}
	return nil
}

// validCodings checks a response's Transfer-Encoding: a list of tokens
// ending in chunked, which appears once (RFC 9112 §6.1). Other codings stay
// for the client to undo; the proxy only reads the chunks.
func validCodings(v []byte) bool {
	ok, last, chunked := true, false, 0
	forEachToken(v, func(tok []byte) {
		last = equalFold(tok, "chunked")
		if last {
			chunked++
		}
		ok = ok && validToken(tok)
	})
	return ok && last && chunked == 1
}

// validHost checks a Host value: host[:port] (RFC 9110 §7.2), where host is
// a registered name or IPv4 address of letters, digits, '-', '.' and '_',
// or an IPv6 address in brackets, and port is up to five digits.
func validHost(b []byte) bool {
	if i := lastColon(b); i >= 0 {
		port := b[i+1:]
		if len(port) == 0 || len(port) > 5 || !allDigits(port) {
			return false
		}
		b = b[:i]
	}
	if len(b) == 0 {
		return false
	}
	if b[0] == '[' {
		if len(b) < 3 || b[len(b)-1] != ']' {
			return false
		}
		for _, c := range b[1 : len(b)-1] {
			if !isHex(c) && c != ':' && c != '.' {
				return false
			}
		}
		return true
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// idempotent reports whether a request may be sent twice with the effect
// of once (RFC 9110 §9.2.2): only these are retried.
func idempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}
