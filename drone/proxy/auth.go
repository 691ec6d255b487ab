package proxy

import (
	"bytes"
	"net/url"
	"strconv"
	"sync"
	"time"

	"plane"
)

// tokenParam is the query parameter a browser brings its connect token in;
// tokenCookie the cookie the proxy trades it for.
const (
	tokenParam  = "plane_token"
	tokenCookie = "plane_token"
)

// access is the outcome of authorization for one request.
type access struct {
	user        string
	exp         time.Time // the token's expiry; zero without one
	cookieToken bool      // the Cookie header holds our token: strip it
	stripBearer bool      // Authorization held our token: strip it
}

// authorize checks the request's connect token against the backend. When
// it answers the request itself (redirect, 401, 403) done is true.
func (cn *conn) authorize(rt *route, r Route) (a access, done bool) {
	h, id := cn.h, rt.id
	if tok, rest, ok := queryToken(h.bytes(h.target)); ok {
		// A browser arriving with ?plane_token=…: trade it for a cookie and
		// send it back to the same URL without the token.
		ct, err := cn.p.check(rt, tok)
		if err != nil {
			cn.deny(id, r, err)
			return a, true
		}
		cn.redirect(sameOriginPath(rest), tok, ct.ExpiresAt)
		return a, true
	}
	tok, inCookie := cookieToken(h)
	if inCookie {
		a.cookieToken = true
	} else if r.AllowBearer {
		if t, ok := bearerToken(h); ok {
			tok, a.stripBearer = t, true
		}
	}
	if tok == "" {
		if r.Public {
			return a, false
		}
		cn.deny(id, r, plane.Errorf(plane.EUNAUTHORIZED, "this backend needs a connect token: open the link the app gave you"))
		return a, true
	}
	ct, err := cn.p.check(rt, tok)
	if err != nil {
		if r.Public { // a stale cookie does not lock anyone out of a public backend
			return a, false
		}
		cn.deny(id, r, err)
		return a, true
	}
	a.user, a.exp = ct.User, ct.ExpiresAt
	return a, false
}

// check verifies a token for backend rt: signed, unexpired, for it, and
// not refused by a disconnect.
func (p *Proxy) check(rt *route, tok string) (plane.ConnectToken, error) {
	ct, err := p.verify(tok)
	switch {
	case err != nil:
	case ct.BackendID != rt.id:
		err = plane.Errorf(plane.EFORBIDDEN, "this connect token is for another backend")
	case rt.refuses(ct.User, ct.ExpiresAt):
		err = errRefused
	}
	return ct, err
}

func (cn *conn) deny(id string, r Route, err error) {
	status := 401
	switch plane.ErrorCodeOf(err) {
	case plane.EFORBIDDEN:
		status = 403
	case plane.EUNAVAILABLE:
		status = 503
	}
	cn.page(status, id, string(r.Status), plane.ErrorMessageOf(err), !cn.cleanRequest())
}

// cleanRequest reports whether the request had no body, so that answering
// it without reading further leaves the connection usable.
func (cn *conn) cleanRequest() bool {
	return !cn.h.chunked && cn.h.contentLength <= 0 && !cn.h.connClose
}

// redirect answers 302 to target, setting the token cookie for this host.
func (cn *conn) redirect(target []byte, tok string, expires time.Time) {
	bw := cn.bw
	closeConn := !cn.cleanRequest()
	cn.noteUnread(closeConn)
	bw.WriteString("HTTP/1.1 302 Found\r\nLocation: ")
	bw.Write(target)
	bw.WriteString("\r\nSet-Cookie: " + tokenCookie + "=")
	bw.WriteString(tok)
	bw.WriteString("; Path=/; Max-Age=")
	bw.WriteString(strconv.Itoa(max(int(time.Until(expires).Seconds()), 1)))
	bw.WriteString("; HttpOnly; SameSite=Lax")
	if cn.secure {
		bw.WriteString("; Secure")
	}
	bw.WriteString("\r\nCache-Control: no-store\r\nContent-Length: 0\r\n")
	if closeConn {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	_ = bw.Flush()
}

// sameOriginPath makes a redirect target a path of this origin: a target
// starting "//" or "/\" is a URL of another host to a browser (which also
// reads '\' as '/'), so the leading run of slashes and backslashes becomes
// one slash. The parser let no control byte or space into the target.
func sameOriginPath(target []byte) []byte {
	i := 0
	for i < len(target) && (target[i] == '/' || target[i] == '\\') {
		i++
	}
	if i == 1 && target[0] == '/' {
		return target
	}
	return append([]byte{'/'}, target[i:]...)
}

// queryToken finds plane_token in the target's query; rest is the target
// without it.
func queryToken(target []byte) (tok string, rest []byte, ok bool) {
	q := bytes.IndexByte(target, '?')
	if q < 0 || !bytes.Contains(target[q:], []byte(tokenParam+"=")) {
		return "", nil, false
	}
	rest = append([]byte(nil), target[:q]...)
	sep := byte('?')
	for _, kv := range bytes.Split(target[q+1:], []byte{'&'}) {
		if k, v, _ := bytes.Cut(kv, []byte{'='}); string(k) == tokenParam {
			if !ok { // the first one counts; every one is dropped
				t, err := url.QueryUnescape(string(v))
				if err != nil {
					return "", nil, false
				}
				tok, ok = t, true
			}
			continue
		}
		if len(kv) == 0 {
			continue
		}
		rest = append(rest, sep)
		rest = append(rest, kv...)
		sep = '&'
	}
	return tok, rest, ok
}

// cookieToken finds the plane_token cookie.
func cookieToken(h *head) (string, bool) {
	for i := range h.headers {
		if !equalFold(h.name(i), "cookie") {
			continue
		}
		v := h.value(i)
		for len(v) > 0 {
			var pair []byte
			pair, v, _ = bytes.Cut(v, []byte{';'})
			name, val, _ := bytes.Cut(bytes.TrimSpace(pair), []byte{'='})
			if string(name) == tokenCookie {
				return string(val), true
			}
		}
	}
	return "", false
}

// stripTokenCookie returns a Cookie header value without plane_token, so
// the app never sees the token.
func stripTokenCookie(v []byte) []byte {
	out := make([]byte, 0, len(v))
	for len(v) > 0 {
		var pair []byte
		pair, v, _ = bytes.Cut(v, []byte{';'})
		pair = bytes.TrimSpace(pair)
		if name, _, _ := bytes.Cut(pair, []byte{'='}); string(name) == tokenCookie || len(pair) == 0 {
			continue
		}
		if len(out) > 0 {
			out = append(out, "; "...)
		}
		out = append(out, pair...)
	}
	return out
}

// bearerToken finds a connect token sent as "Authorization: Bearer pc1.…";
// other bearer tokens belong to the app and are left alone.
func bearerToken(h *head) (string, bool) {
	i := h.headerIndex("authorization")
	if i < 0 {
		return "", false
	}
	v := h.value(i)
	if len(v) < 7 || !equalFold(v[:7], "bearer ") {
		return "", false
	}
	tok := bytes.TrimSpace(v[7:])
	if !bytes.HasPrefix(tok, []byte("pc1.")) {
		return "", false
	}
	return string(tok), true
}

// maxCachedTokens bounds the verified-token cache; it is emptied when full.
const maxCachedTokens = 10000

// tokenCache remembers verified tokens: an Ed25519 verification costs tens
// of microseconds, a map lookup nothing.
type tokenCache struct {
	mu sync.RWMutex
	m  map[string]plane.ConnectToken
}

func (c *tokenCache) get(tok string) (plane.ConnectToken, bool) {
	c.mu.RLock()
	ct, ok := c.m[tok]
	c.mu.RUnlock()
	return ct, ok
}

func (c *tokenCache) put(tok string, ct plane.ConnectToken) {
	c.mu.Lock()
	if len(c.m) >= maxCachedTokens {
		clear(c.m)
	}
	c.m[tok] = ct
	c.mu.Unlock()
}

func (c *tokenCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// verify checks a connect token, from the cache when it can.
func (p *Proxy) verify(tok string) (plane.ConnectToken, error) {
	now := time.Now()
	if ct, ok := p.tokens.get(tok); ok {
		if !now.Before(ct.ExpiresAt) {
			return ct, plane.Errorf(plane.EUNAUTHORIZED, "connect token has expired: ask the app for a fresh link")
		}
		return ct, nil
	}
	keys := p.keys.Load()
	if keys == nil {
		return plane.ConnectToken{}, plane.Errorf(plane.EUNAVAILABLE, "this drone cannot check connect tokens yet: it has not heard from the controller")
	}
	ct, err := plane.VerifyConnectToken(tok, now, *keys...)
	if err != nil {
		return ct, err
	}
	p.tokens.put(tok, ct)
	return ct, nil
}
