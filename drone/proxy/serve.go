package proxy

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"plane"
)

// serve answers the request in cn.h. keep says whether the client
// connection can take another request; tunnel, when set, takes over the
// connection after an upgrade.
func (cn *conn) serve() (keep bool, tunnel func()) {
	h, p := cn.h, cn.p
	// A request we answer without reading its body leaves the connection
	// unusable for the next one.
	clean := !h.chunked && h.contentLength <= 0 && !h.connClose
	if h.host.end == 0 {
		cn.page(400, "", "", "the request has no Host header", true)
		return false, nil
	}
	if cn.redirectToHTTPS() {
		return clean, nil
	}
	id, ok := p.backendID(h.bytes(h.host))
	if !ok {
		cn.page(404, "", "", "no backend is served at "+h.str(h.host), !clean)
		return clean, nil
	}
	rt := p.route(id)
	if rt == nil {
		switch status, found := p.lookup(id); {
		case found && status == plane.StatusTerminated:
			cn.page(410, id, string(status), "this backend has terminated", !clean)
		case found:
			// Known to the drone but not routed yet: the drone is starting
			// and adopting its backends.
			cn.page(503, id, string(status), "the drone is starting; try again in a moment", !clean)
		default:
			cn.page(404, id, "", "there is no backend "+id+" on this drone", !clean)
		}
		return clean, nil
	}
	r := rt.snapshot()
	if r.Status != plane.StatusReady {
		// A request that comes before the backend is ready waits for it.
		t := time.NewTimer(p.cfg.WaitReady)
		select {
		case <-rt.ready:
			t.Stop()
		case <-t.C:
			cn.page(503, id, string(rt.snapshot().Status), "the backend is not ready yet; try again in a moment", !clean)
			return clean, nil
		}
		if r = rt.snapshot(); r.Status != plane.StatusReady {
			cn.page(410, id, string(r.Status), "this backend has terminated", !clean)
			return clean, nil
		}
	}
	a, done := cn.authorize(id, r)
	if done {
		return clean, nil
	}
	rt.begin()
	keep, tunnel = cn.forward(rt, r, a)
	if tunnel == nil {
		rt.end()
	}
	return keep, tunnel
}

func (p *Proxy) lookup(id string) (plane.BackendStatus, bool) {
	if p.cfg.Lookup == nil {
		return "", false
	}
	return p.cfg.Lookup(id)
}

// forward sends the request to the backend and its response to the client.
func (cn *conn) forward(rt *route, r Route, a access) (keep bool, tunnel func()) {
	h := cn.h
	if h.expectCont && h.minor == 1 { // never 1xx to an HTTP/1.0 client (RFC 9110 §15.2)
		// Answer the expectation here, so the body can stream at once.
		if _, err := cn.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n"); err != nil || cn.bw.Flush() != nil {
			return false, nil
		}
	}
	hasBody := h.chunked || h.contentLength > 0
	var u *upstream
	var body chan error      // the request body's copy, when it runs beside the response
	var consumed atomic.Bool // the whole body was read from the client
	for attempt := 0; ; attempt++ {
		var reused bool
		var err error
		u, reused, err = rt.pool.get(r.Address)
		if err != nil {
			cn.p.log.Warn("dial backend", "backend", r.BackendID, "err", err)
			cn.page(502, r.BackendID, string(r.Status), "the backend refused the connection", hasBody)
			return !hasBody && !h.connClose, nil
		}
		cn.out = cn.appendRequestHead(cn.out[:0], r.BackendID, a)
		if hasBody {
			// The body streams while the response is read: a backend may
			// answer before the body ends, or echo it as it comes.
			_, err = u.bw.Write(cn.out)
			body = make(chan error, 1)
			consumed.Store(false)
			go func(u *upstream) { body <- cn.sendBody(u, &consumed) }(u)
		} else {
			if _, err = u.bw.Write(cn.out); err == nil {
				err = u.bw.Flush()
			}
		}
		if err == nil {
			err = u.readFinalResponse(cn)
		}
		if err == nil {
			break
		}
		u.conn.Close()
		if body != nil {
			_ = cn.c.SetReadDeadline(time.Now()) // unblock the body's copy
			<-body
		}
		// A kept-alive connection the backend closed meanwhile: retry once
		// on a new one, when nothing of the request body was consumed.
		if reused && !hasBody && attempt == 0 {
			continue
		}
		if err == errClient {
			return false, nil
		}
		cn.p.log.Debug("backend exchange failed", "backend", r.BackendID, "err", err)
		cn.page(502, r.BackendID, string(r.Status), "the backend closed the connection without answering", true)
		return false, nil
	}

	resp := cn.resp
	if resp.status == 101 {
		if body != nil {
			<-body
		}
		if !h.upgrade {
			u.conn.Close()
			cn.page(502, r.BackendID, string(r.Status), "the backend switched protocols unasked", true)
			return false, nil
		}
		cn.writeResponseHead(false)
		if cn.bw.Flush() != nil {
			u.conn.Close()
			return false, nil
		}
		return false, cn.tunnel(u, rt)
	}

	bodiless := h.isMethod("HEAD") || resp.status == 204 || resp.status == 304 || resp.status < 200
	untilEOF := !bodiless && !resp.chunked && resp.contentLength < 0
	keep = !h.connClose && !untilEOF
	cn.writeResponseHead(!keep)
	var err error
	switch {
	case bodiless:
	case resp.chunked:
		err = copyChunked(cn.bw, u.br)
	case resp.contentLength >= 0:
		err = copyN(cn.bw, u.br, resp.contentLength)
	default:
		err = copyUntilEOF(cn.bw, u.br)
	}
	if ferr := cn.bw.Flush(); err == nil {
		err = ferr
	}
	if body != nil {
		if !consumed.Load() {
			// The backend answered before the request body ended: neither
			// connection can carry another request.
			u.conn.Close()
			_ = cn.c.SetReadDeadline(time.Now())
			<-body
			return false, nil
		}
		// The body was read in full (the backend answered after it got it,
		// as a rule); its last bytes may still be on their way out.
		_ = u.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if berr := <-body; berr != nil {
			err = berr
		}
		_ = u.conn.SetWriteDeadline(time.Time{})
	}
	if err != nil || untilEOF || resp.connClose {
		u.conn.Close()
		return false, nil
	}
	rt.putUpstream(u)
	return keep, nil
}

// errClient marks a failure on the client's side of an exchange.
var errClient = &clientError{}

type clientError struct{}

func (*clientError) Error() string { return "client connection failed" }

// sendBody streams the request body after the head already in u.bw and
// sets consumed once it has read all of it. On failure it closes the
// backend connection, so that a reader waiting for the response wakes up.
func (cn *conn) sendBody(u *upstream, consumed *atomic.Bool) error {
	h := cn.h
	var err error
	if h.chunked {
		err = copyChunked(u.bw, cn.br)
	} else {
		err = copyN(u.bw, cn.br, h.contentLength)
	}
	if err == nil {
		consumed.Store(true)
		err = u.bw.Flush()
	}
	if err != nil {
		u.conn.Close()
		return errClient
	}
	return nil
}

// readFinalResponse reads the backend's response head into cn.resp,
// passing interim 1xx responses (other than 100, answered already, and 101)
// on to the client.
func (u *upstream) readFinalResponse(cn *conn) error {
	for {
		if err := cn.resp.readResponse(u.br); err != nil {
			return err
		}
		s := cn.resp.status
		if s >= 200 || s == 101 {
			return nil
		}
		if s == 100 {
			continue
		}
		cn.writeResponseHead(false)
		if err := cn.bw.Flush(); err != nil {
			return errClient
		}
	}
}

// tunnel returns the function that joins client and backend after a 101:
// bytes already buffered go first, then both directions are piped. The
// connection's buffers go back to their pools first, so a held WebSocket
// costs little more than its two goroutines.
func (cn *conn) tunnel(u *upstream, rt *route) func() {
	fromClient := buffered(cn.br)
	fromBackend := buffered(u.br)
	client, backend := cn.c, u.conn
	u.br, u.bw = nil, nil
	return func() {
		defer rt.end()
		var once sync.Once
		closeBoth := func() {
			once.Do(func() {
				client.Close()
				backend.Close()
			})
		}
		defer closeBoth()
		if len(fromBackend) > 0 {
			if _, err := client.Write(fromBackend); err != nil {
				return
			}
		}
		if len(fromClient) > 0 {
			if _, err := backend.Write(fromClient); err != nil {
				return
			}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			pipe(backend, client, rt.touch)
			closeBoth()
		}()
		pipe(client, backend, rt.touch)
		closeBoth()
		<-done
	}
}

func buffered(br *bufio.Reader) []byte {
	n := br.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := br.Peek(n)
	return append([]byte(nil), b...)
}

// appendRequestHead renders the request head for the backend: client-sent
// X-Plane-* and X-Forwarded-* headers are dropped, hop-by-hop headers too,
// and Plane's own are set.
func (cn *conn) appendRequestHead(b []byte, backendID string, a access) []byte {
	h := cn.h
	b = append(b, h.bytes(h.method)...)
	b = append(b, ' ')
	b = append(b, h.bytes(h.target)...)
	b = append(b, ' ')
	b = append(b, h.bytes(h.proto)...)
	b = append(b, "\r\n"...)
	for i := range h.headers {
		name := h.name(i)
		switch {
		case hasPrefixFold(name, "x-plane-"), hasPrefixFold(name, "x-forwarded-"),
			equalFold(name, "connection"), equalFold(name, "keep-alive"), equalFold(name, "proxy-connection"),
			h.expectCont && equalFold(name, "expect"),
			a.stripBearer && equalFold(name, "authorization"),
			h.connNamed && h.connectionNames(name):
			continue
		case a.cookieToken && equalFold(name, "cookie"):
			if v := stripTokenCookie(h.value(i)); len(v) > 0 {
				b = append(b, "Cookie: "...)
				b = append(b, v...)
				b = append(b, "\r\n"...)
			}
			continue
		}
		b = append(b, name...)
		b = append(b, ": "...)
		b = append(b, h.value(i)...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Plane-Backend: "...)
	b = append(b, backendID...)
	b = append(b, "\r\nX-Plane-User: "...)
	b = append(b, a.user...)
	b = append(b, "\r\nX-Forwarded-For: "...)
	b = append(b, cn.ip...)
	if cn.secure {
		b = append(b, "\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: "...)
	} else {
		b = append(b, "\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: "...)
	}
	b = append(b, h.bytes(h.host)...)
	if h.upgrade {
		b = append(b, "\r\nConnection: Upgrade"...)
	} else if h.minor == 0 {
		b = append(b, "\r\nConnection: keep-alive"...)
	}
	return append(b, "\r\n\r\n"...)
}

// writeResponseHead writes cn.resp's head to the client without its
// hop-by-hop headers, saying whether the connection stays open.
func (cn *conn) writeResponseHead(closeConn bool) {
	r, bw := cn.resp, cn.bw
	if r.minor == 1 {
		bw.WriteString("HTTP/1.1 ")
	} else {
		bw.WriteString("HTTP/1.0 ")
	}
	bw.Write(r.statusText())
	bw.WriteString("\r\n")
	for i := range r.headers {
		name := r.name(i)
		if equalFold(name, "connection") || equalFold(name, "keep-alive") || equalFold(name, "proxy-connection") {
			continue
		}
		bw.Write(name)
		bw.WriteString(": ")
		bw.Write(r.value(i))
		bw.WriteString("\r\n")
	}
	switch {
	case r.status == 101:
		bw.WriteString("Connection: Upgrade\r\n")
	case closeConn:
		bw.WriteString("Connection: close\r\n")
	case cn.h.minor == 0:
		bw.WriteString("Connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && equalFold(b[:len(prefix)], prefix)
}

var _ net.Conn = (*net.TCPConn)(nil)
