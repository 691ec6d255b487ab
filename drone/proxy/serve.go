package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
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
	a, done := cn.authorize(rt, r)
	if done {
		return clean, nil
	}
	if r.Suspended && p.cfg.Resume != nil {
		// Woken only for a request it may serve: after authorization.
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.WaitReady)
		err := p.cfg.Resume(ctx, id)
		cancel()
		if err != nil {
			p.cfg.Logger.Warn("resume a suspended backend", "backend", id, "err", err)
			cn.page(503, id, string(r.Status), "the backend is suspended and could not be woken; try again in a moment", !clean)
			return clean, nil
		}
	}
	// After the resume: a user joins a backend that is awake.
	if !cn.sit(rt, &a) {
		// A disconnect refused the token since authorize checked it.
		if !r.Public {
			cn.deny(id, r, errRefused)
			return clean, nil
		}
		// A public backend takes the request as one without a token, as
		// authorize does a refused token.
		a = access{cookieToken: a.cookieToken, stripBearer: a.stripBearer}
		cn.sit(rt, &a) // without a token: never refused
	}
	rt.begin()
	if p.observe != nil {
		cn.tee, cn.sent = new(bytes.Buffer), false
	}
	keep, tunnel = cn.forward(rt, r, a)
	if tunnel == nil {
		rt.end()
	}
	if p.observe != nil && cn.sent {
		p.observe(Forwarded{Method: h.str(h.method), Target: h.str(h.target), Body: cn.tee.Bytes(), Whole: cn.whole})
	}
	return keep, tunnel
}

// Forwarded is a request as the proxy believed it sent it to a backend:
// its differential tests compare it with what the backend read.
type Forwarded struct {
	Method, Target string
	Body           []byte
	Whole          bool // the whole body was sent
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
	// Only a request that can be sent twice with the effect of once is
	// retried; one with a body cannot be, its body is gone.
	retryable := !hasBody && idempotent(h.bytes(h.method))
	var u *upstream
	var ex exchange
	for attempt := 0; ; attempt++ {
		var reused bool
		var err error
		u, reused, err = rt.pool.get(r.Address)
		if err != nil {
			cn.p.log.Warn("dial backend", "backend", r.BackendID, "err", err)
			cn.page(502, r.BackendID, string(r.Status), "the backend refused the connection", hasBody)
			return !hasBody && !h.connClose, nil
		}
		cn.out = cn.appendRequestHead(cn.out[:0], r, a)
		ex = exchange{}
		err = cn.send(u, &ex, hasBody)
		cn.sent = cn.sent || err == nil
		if err == nil {
			err = cn.awaitResponse(u, &ex)
		}
		if err == nil {
			err = u.readFinalResponse(cn)
			_ = u.conn.SetReadDeadline(time.Time{})
		}
		if err == nil {
			break
		}
		u.conn.Close()
		bodyErr := cn.finishBody(&ex)
		cn.whole = !hasBody || ex.sent.Load()
		var nr noResponse
		switch {
		case errors.Is(bodyErr, errBadChunk):
			cn.page(400, r.BackendID, string(r.Status), "the request body could not be read: "+bodyErr.Error(), true)
			return false, nil
		case bodyErr == errClient || err == errClient:
			return false, nil // nobody is left to answer
		case errors.As(err, &nr) && reused && retryable && attempt == 0:
			// A kept-alive connection the backend closed meanwhile.
			continue
		case err == errBackendTimeout:
			cn.page(504, r.BackendID, string(r.Status), "the backend did not answer within "+cn.p.cfg.ResponseTimeout.String(), true)
			return false, nil
		}
		cn.p.log.Debug("backend exchange failed", "backend", r.BackendID, "err", err)
		cn.page(502, r.BackendID, string(r.Status), "the backend closed the connection without answering", true)
		return false, nil
	}

	keep, tunnel = cn.relay(rt, r, u, &ex)
	cn.whole = !hasBody || ex.sent.Load()
	return keep, tunnel
}

// relay passes the backend's response in cn.resp, whose head is read, on
// to the client with its body, and settles both connections.
func (cn *conn) relay(rt *route, r Route, u *upstream, ex *exchange) (keep bool, tunnel func()) {
	h, resp := cn.h, cn.resp
	if resp.status == 101 {
		cn.finishBody(ex)
		if !h.upgrade {
			u.conn.Close()
			cn.page(502, r.BackendID, string(r.Status), "the backend switched protocols unasked", true)
			return false, nil
		}
		cn.writeResponseHead(false, false)
		if cn.bw.Flush() != nil {
			u.conn.Close()
			return false, nil
		}
		return false, cn.tunnel(u, rt)
	}

	bodiless := h.isMethod("HEAD") || resp.status == 204 || resp.status == 304 || resp.status < 200
	// An HTTP/1.0 client cannot read chunks: it gets the data, and the
	// end of the connection ends it.
	dechunk := !bodiless && resp.chunked && h.minor == 0
	untilEOF := !bodiless && !resp.chunked && resp.contentLength < 0
	keep = !h.connClose && !untilEOF && !dechunk
	cn.writeResponseHead(!keep, dechunk)
	var err error
	switch {
	case bodiless:
	case resp.chunked:
		err = copyChunked(cn.bw, u.br, dechunk, nil)
	case resp.contentLength >= 0:
		err = copyN(cn.bw, u.br, resp.contentLength, nil)
	default:
		err = copyUntilEOF(cn.bw, u.br)
	}
	if ex.body != nil {
		if !ex.consumed.Load() {
			// The backend answered before the request body ended: neither
			// connection can carry another request, unless the body's last
			// bytes were being read just now.
			if berr := cn.finishBody(ex); berr != nil || !ex.consumed.Load() {
				u.conn.Close()
				cn.bw.Flush()
				return false, nil
			}
		}
		// The body was read in full (the backend answered after it got it,
		// as a rule); its last bytes may still be on their way out.
		_ = u.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if berr := cn.finishBody(ex); berr != nil && err == nil {
			err = berr
		}
		_ = u.conn.SetWriteDeadline(time.Time{})
	}
	if err != nil || untilEOF || resp.connClose {
		u.conn.Close()
		cn.bw.Flush()
		return false, nil
	}
	// The backend's connection is free before the client has the last
	// bytes, so that the client's next request, on this connection or
	// another, finds it in the pool.
	rt.putUpstream(u)
	if cn.bw.Flush() != nil {
		return false, nil
	}
	return keep, nil
}

// Errors of an exchange with a backend.
var (
	// errClient marks a failure on the client's side of an exchange.
	errClient = errors.New("client connection failed")
	// errBackendTimeout: no response head within ResponseTimeout.
	errBackendTimeout = errors.New("backend response timed out")
)

// noResponse is a failure before any byte of a response arrived: the only
// kind after which a request may be sent again.
type noResponse struct{ err error }

func (e noResponse) Error() string { return "no response: " + e.err.Error() }
func (e noResponse) Unwrap() error { return e.err }

// exchange is one request's trip to a backend: the request body's copy,
// when it runs beside the response, and what became of it.
type exchange struct {
	body     chan error  // the body's copy; nil for a request without one
	consumed atomic.Bool // the whole body was read from the client
	sent     atomic.Bool // the whole body reached the backend
	over     bool        // body has delivered its result, err
	err      error
}

// send writes the request head in cn.out to the backend and starts the
// body's copy: it streams while the response is read, because a backend
// may answer before the body ends, or echo it as it comes.
func (cn *conn) send(u *upstream, ex *exchange, hasBody bool) error {
	if _, err := u.bw.Write(cn.out); err != nil {
		return noResponse{err}
	}
	if !hasBody {
		if err := u.bw.Flush(); err != nil {
			return noResponse{err}
		}
		return nil
	}
	ex.body = make(chan error, 1)
	cn.inBody = true
	go func() { ex.body <- cn.sendBody(u, ex) }()
	return nil
}

// bodyDone reports whether the request body's copy is over, without
// waiting for it.
func (ex *exchange) bodyDone() bool {
	if ex.body == nil || ex.over {
		return true
	}
	select {
	case ex.err = <-ex.body:
		ex.over = true
		return true
	default:
		return false
	}
}

// finishBody ends the request body's copy, interrupting a read from the
// client if it still waits for one, and returns its error.
func (cn *conn) finishBody(ex *exchange) error {
	if ex.body == nil || ex.over {
		return ex.err
	}
	if !ex.consumed.Load() {
		cn.interruptRead()
		ex.err = <-ex.body
		cn.resumeRead()
	} else {
		ex.err = <-ex.body
	}
	ex.over = true
	return ex.err
}

// watchAfter is how long a response may take before the proxy starts to
// watch the client for a disconnect: most answers come sooner, and then
// watching would cost a goroutine per request for nothing.
const watchAfter = 500 * time.Millisecond

// awaitResponse waits for the first byte of the backend's response, for at
// most ResponseTimeout. A client that leaves meanwhile ends the wait at
// once (errClient), so that a hung backend does not count it as connected
// forever. It leaves the backend connection's read deadline at the end of
// ResponseTimeout, for the rest of the head.
func (cn *conn) awaitResponse(u *upstream, ex *exchange) error {
	deadline := time.Now().Add(cn.p.cfg.ResponseTimeout)
	var w *watcher
	defer func() {
		if w != nil {
			cn.stopWatching(w)
		}
	}()
	for {
		next := time.Now().Add(watchAfter)
		if w != nil || next.After(deadline) {
			next = deadline
		}
		_ = u.conn.SetReadDeadline(next)
		// A client that left before this deadline was set woke nobody:
		// the watcher says so first, then wakes the wait (watchClient).
		if w != nil && w.gone() {
			return errClient
		}
		_, err := u.br.Peek(1)
		if err == nil {
			if !finalHeadBuffered(u.br) { // the rest of the head may take time
				_ = u.conn.SetReadDeadline(deadline)
			}
			return nil
		}
		if !isTimeout(err) {
			return noResponse{err}
		}
		if w != nil && w.gone() {
			return errClient
		}
		if !time.Now().Before(deadline) {
			return errBackendTimeout
		}
		if w == nil && ex.bodyDone() {
			w = cn.watchClient(u)
		}
	}
}

// finalHeadBuffered reports whether br holds a whole response head that is
// not an interim (1xx) one, so that reading it needs no further wait: the
// common case, where awaitResponse spares itself a deadline change.
func finalHeadBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	const statusDigit = len("HTTP/1.1 ")
	return len(b) > statusDigit && b[statusDigit] != '1' && bytes.Contains(b, []byte("\r\n\r\n"))
}

// watcher waits for the client's next byte while the proxy waits for a
// backend: an end of stream there means the client left.
type watcher struct {
	done chan error
	err  error
	over bool
}

func (cn *conn) watchClient(u *upstream) *watcher {
	w := &watcher{done: make(chan error, 1)}
	_ = cn.c.SetReadDeadline(time.Time{})
	go func() {
		_, err := cn.br.Peek(1)
		w.done <- err
		if err != nil && !cn.stopRead.Load() {
			// Wake the wait for the response. After the send: a wait that
			// sets its deadline after this one checks done first.
			_ = u.conn.SetReadDeadline(time.Now())
		}
	}()
	return w
}

// gone reports whether the watched client has left. One that sent bytes
// meanwhile (a pipelined request) is still there.
func (w *watcher) gone() bool {
	if !w.over {
		select {
		case w.err = <-w.done:
			w.over = true
		default:
			return false
		}
	}
	return w.err != nil && !isTimeout(w.err)
}

func (cn *conn) stopWatching(w *watcher) {
	if !w.over {
		cn.interruptRead()
		w.err = <-w.done
		w.over = true
		cn.resumeRead()
	}
	_ = cn.c.SetReadDeadline(time.Time{})
}

// sendBody streams the request body after the head already in u.bw and
// sets consumed once it has read all of it. A failure on the client's side
// (errClient, or errBadChunk for a malformed body) closes the backend
// connection, so that a reader waiting for the response wakes up and the
// backend never takes the part it got for a whole request; a failure
// towards the backend is left for the response's reader to find.
func (cn *conn) sendBody(u *upstream, ex *exchange) error {
	defer func() { cn.inBody = false }()
	h := cn.h
	var err error
	if h.chunked {
		err = copyChunked(u.bw, cn.br, false, cn.tee)
	} else {
		err = copyN(u.bw, cn.br, h.contentLength, cn.tee)
	}
	if err == nil {
		ex.consumed.Store(true)
		err = u.bw.Flush()
		ex.sent.Store(err == nil)
		return err
	}
	var re readError
	var al afterLastChunk
	switch {
	case errors.As(err, &al):
		// The backend has the whole body; the client's stream is unusable.
		ex.sent.Store(true)
		return errClient
	case errors.Is(err, errBadChunk):
		u.conn.Close()
		return err
	case errors.As(err, &re):
		u.conn.Close()
		return errClient
	}
	return err
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
		cn.writeResponseHead(false, false)
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
	_ = client.SetReadDeadline(time.Time{}) // readRequest's: a WebSocket may idle
	u.br, u.bw = nil, nil
	s := cn.seat // the tunnel holds the connection, and counts for its user, until it ends
	cn.seat = nil
	return func() {
		defer rt.end()
		if s != nil {
			defer s.leave()
		}
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

// appendRequestHead renders the request head for the backend (see
// framing.go): the headers the policy drops are left out, the token the
// proxy consumed too, and the proxy writes Plane's headers, the connection
// headers and the framing itself.
func (cn *conn) appendRequestHead(b []byte, r Route, a access) []byte {
	h := cn.h
	b = append(b, h.bytes(h.method)...)
	b = append(b, ' ')
	b = append(b, h.bytes(h.target)...)
	// HTTP/1.1 whatever the client spoke, as nginx's proxy_http_version
	// 1.1: the backend connection stays alive, and what an HTTP/1.0 client
	// cannot read (chunks) the proxy undoes for it.
	b = append(b, " HTTP/1.1\r\n"...)
	for i := range h.headers {
		if h.headers[i].drop {
			continue
		}
		name := h.name(i)
		switch {
		case a.stripBearer && equalFold(name, "authorization"):
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
	b = append(b, r.BackendID...)
	b = append(b, "\r\nX-Plane-Key: "...)
	b = append(b, r.Key...)
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
		b = append(b, "\r\nConnection: Upgrade\r\nUpgrade: "...)
		b = append(b, h.bytes(h.upgradeTo)...)
	}
	switch {
	case h.chunked:
		b = append(b, "\r\nTransfer-Encoding: chunked"...)
	case h.contentLength >= 0:
		b = append(b, "\r\nContent-Length: "...)
		b = strconv.AppendInt(b, h.contentLength, 10)
	}
	return append(b, "\r\n\r\n"...)
}

// writeResponseHead writes cn.resp's head to the client without the
// headers the policy drops, with its framing and connection headers
// written by the proxy: closeConn says whether the connection ends after
// it, dechunk that the body goes to the client without its chunks.
func (cn *conn) writeResponseHead(closeConn, dechunk bool) {
	r, bw := cn.resp, cn.bw
	if r.minor == 1 {
		bw.WriteString("HTTP/1.1 ")
	} else {
		bw.WriteString("HTTP/1.0 ")
	}
	bw.Write(r.statusText())
	bw.WriteString("\r\n")
	for i := range r.headers {
		if r.headers[i].drop {
			continue
		}
		bw.Write(r.name(i))
		bw.WriteString(": ")
		bw.Write(r.value(i))
		bw.WriteString("\r\n")
	}
	switch {
	case r.chunked && !dechunk:
		bw.WriteString("Transfer-Encoding: ")
		bw.Write(r.bytes(r.te))
		bw.WriteString("\r\n")
	case r.contentLength >= 0:
		bw.WriteString("Content-Length: ")
		cn.out = strconv.AppendInt(cn.out[:0], r.contentLength, 10)
		bw.Write(cn.out)
		bw.WriteString("\r\n")
	}
	switch {
	case r.status == 101:
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.Write(r.bytes(r.upgradeTo))
		bw.WriteString("\r\n")
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
