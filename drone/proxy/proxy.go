// Package proxy is the drone's HTTP proxy: it routes
// <backend-id>.<domain> to the backend's container, checks connect tokens,
// passes WebSockets and streams through, counts each backend's open
// connections for the idle limit, and knows which user holds which of
// them (users.go), so that the drone reports joins and leaves and can
// disconnect a user (disconnect.go).
//
// It speaks HTTP/1.1 itself on both sides (see parse.go) and keeps
// keep-alive connections to backends; after an upgrade it pipes the two
// connections together and keeps no buffer while they are idle.
package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"plane"
)

// Config configures a Proxy.
type Config struct {
	// Domain: backends are reached at <id>.<Domain>.
	Domain string
	// Lookup tells the status of a backend that is not in the route table
	// (a terminated one gets 410, an unknown one 404).
	Lookup func(backendID string) (plane.BackendStatus, bool)
	// WaitReady bounds how long a request for a starting backend waits.
	WaitReady time.Duration
	// IdleTimeout closes client connections idle between requests.
	IdleTimeout time.Duration
	// ResponseTimeout bounds the wait for a response head from a backend
	// (generous by default: long polls wait for minutes).
	ResponseTimeout time.Duration
	// BodyTimeout bounds the silence between two reads of a request body
	// (nginx's client_body_timeout).
	BodyTimeout time.Duration
	// UpstreamIdleTimeout closes kept-alive backend connections unused for
	// this long (nginx's upstream keepalive_timeout).
	UpstreamIdleTimeout time.Duration
	// MaxConns caps open client connections; beyond it new ones get 503.
	// 0 sizes it from the process's file-descriptor limit; < 0: no cap.
	MaxConns int
	// Resume wakes a suspended backend (Route.Suspended) before a request
	// is forwarded to it, within WaitReady. Nil: suspended routes are
	// forwarded as they are.
	Resume func(ctx context.Context, backendID string) error
	// PresenceTimeout is how long a kept-alive client connection waiting
	// for its next request still counts its user as connected (users.go);
	// the connection itself stays open until IdleTimeout.
	PresenceTimeout time.Duration
	// LeaveDebounce is how long a user's last connection must stay closed
	// before they have left; plane.ConnectionLeaveDebounce by default.
	LeaveDebounce time.Duration
	Logger        *slog.Logger
}

const (
	DefaultWaitReady           = 30 * time.Second
	DefaultIdleTimeout         = 120 * time.Second
	DefaultResponseTimeout     = 5 * time.Minute
	DefaultBodyTimeout         = 60 * time.Second
	DefaultUpstreamIdleTimeout = 60 * time.Second
	bufSize                    = 4096
)

// Proxy routes requests to backends.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	suffix string // "." + domain, lowercase

	keys      atomic.Pointer[[]ed25519.PublicKey]
	cert      atomic.Pointer[tls.Certificate]
	httpsPort atomic.Int64
	tokens    tokenCache

	mu     sync.RWMutex
	routes map[string]*route

	lnMu  sync.Mutex
	lns   map[net.Listener]struct{}
	conns sync.WaitGroup

	open     atomic.Int64 // client connections open now
	maxConns int64
	accept   acceptState

	onUsers atomic.Pointer[func(UserChange)] // told of joins and leaves (users.go)

	// observe, when set (by tests), is told of every request forwarded:
	// what the proxy believed it sent.
	observe func(Forwarded)
}

// New returns a proxy with an empty route table.
func New(cfg Config) *Proxy {
	if cfg.WaitReady <= 0 {
		cfg.WaitReady = DefaultWaitReady
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.ResponseTimeout <= 0 {
		cfg.ResponseTimeout = DefaultResponseTimeout
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.UpstreamIdleTimeout <= 0 {
		cfg.UpstreamIdleTimeout = DefaultUpstreamIdleTimeout
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns()
	}
	if cfg.PresenceTimeout <= 0 {
		cfg.PresenceTimeout = DefaultPresenceTimeout
	}
	if cfg.LeaveDebounce <= 0 {
		cfg.LeaveDebounce = plane.ConnectionLeaveDebounce
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Proxy{
		cfg:      cfg,
		maxConns: int64(cfg.MaxConns),
		log:      cfg.Logger.With("component", "proxy"),
		suffix:   "." + strings.ToLower(strings.TrimSuffix(cfg.Domain, ".")),
		routes:   map[string]*route{},
		lns:      map[net.Listener]struct{}{},
		tokens:   tokenCache{m: map[string]plane.ConnectToken{}},
	}
}

// SetKeys sets the keys that verify connect tokens: the controllers'
// signing key and, during a rotation, the others they still accept.
func (p *Proxy) SetKeys(keys ...ed25519.PublicKey) {
	keys = slices.Clone(keys)
	p.keys.Store(&keys)
	p.tokens.clear()
}

// Serve accepts connections on ln until it is closed. secure marks a TLS
// listener (X-Forwarded-Proto https, Secure cookies).
//
// A failing accept (out of file descriptors, most often) never stops it:
// it backs off from 5 ms to 1 s, as net/http does, and Health reports it
// until an accept succeeds again.
func (p *Proxy) Serve(ln net.Listener, secure bool) error {
	p.lnMu.Lock()
	p.lns[ln] = struct{}{}
	p.lnMu.Unlock()
	defer func() {
		p.lnMu.Lock()
		delete(p.lns, ln)
		p.lnMu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if p.accept.failed(err) {
				p.log.Error("accept failed; retrying", "err", err, "retry_in", backoff)
			}
			time.Sleep(backoff)
			continue
		}
		if backoff != 0 {
			backoff = 0
			if p.accept.recovered() {
				p.log.Info("accepting again")
			}
		}
		p.conns.Add(1)
		if n := p.open.Add(1); p.maxConns > 0 && n > p.maxConns {
			go p.refuse(c)
			continue
		}
		go func() {
			tunnel := p.serveConn(c, secure)
			if tunnel == nil {
				p.open.Add(-1)
				p.conns.Done()
				return
			}
			// A held WebSocket runs on goroutines of its own, with small
			// stacks: the stack this one grew serving HTTP goes with it.
			go func() {
				defer p.conns.Done()
				defer p.open.Add(-1)
				tunnel()
			}()
		}()
	}
}

// Close stops accepting. Open connections, WebSockets among them, are left
// to end by themselves.
func (p *Proxy) Close() error {
	p.lnMu.Lock()
	defer p.lnMu.Unlock()
	for ln := range p.lns {
		ln.Close()
	}
	return nil
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}
	headPool   = sync.Pool{New: func() any { return &head{buf: make([]byte, 0, 1024), headers: make([]header, 0, 32)} }}
)

// conn is one client connection.
type conn struct {
	p      *Proxy
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	h      *head
	resp   *head
	ip     string
	secure bool
	unread bool   // answered without reading the request body
	out    []byte // scratch for the rewritten request head
	seat   *seat  // the backend and user the connection counts for (users.go)

	// inBody: a request body is being read, so each read moves the read
	// deadline (BodyTimeout); stopRead makes reads fail at once, to end a
	// body's copy or a watch that another goroutine runs.
	inBody      bool
	stopRead    atomic.Bool
	tee         *bytes.Buffer // the request body as read, when observe is set
	sent, whole bool          // for observe: a request went out, with all its body
}

// clientReader is what a client connection's bufio.Reader reads from.
type clientReader struct{ cn *conn }

func (r clientReader) Read(b []byte) (int, error) {
	cn := r.cn
	if cn.stopRead.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	if cn.inBody {
		_ = cn.c.SetReadDeadline(time.Now().Add(cn.p.cfg.BodyTimeout))
	}
	return cn.c.Read(b)
}

// interruptRead makes the client connection's current and next reads fail
// until resumeRead.
func (cn *conn) interruptRead() {
	cn.stopRead.Store(true)
	_ = cn.c.SetReadDeadline(time.Now())
}

func (cn *conn) resumeRead() {
	cn.stopRead.Store(false)
	_ = cn.c.SetReadDeadline(time.Time{})
}

// serveConn serves the connection's requests; after an upgrade it returns
// the function that joins it to the backend (the connection's buffers
// already released), for the caller to run.
func (p *Proxy) serveConn(nc net.Conn, secure bool) (tunnel func()) {
	cn := &conn{p: p, c: nc, secure: secure}
	cn.br = readerPool.Get().(*bufio.Reader)
	cn.br.Reset(clientReader{cn})
	cn.bw = writerPool.Get().(*bufio.Writer)
	cn.bw.Reset(nc)
	cn.h = headPool.Get().(*head)
	cn.resp = headPool.Get().(*head)
	if host, _, err := net.SplitHostPort(nc.RemoteAddr().String()); err == nil {
		cn.ip = host // also behind tls.Conn, which hides the *net.TCPAddr
	}
	upgraded := false
	defer func() {
		cn.release()
		switch {
		case upgraded: // the tunnel has the connection, and its seat
		case cn.unread:
			lingerClose(nc, 2*time.Second)
		default:
			nc.Close()
		}
		cn.unseat()
	}()
	for {
		if err := cn.readRequest(); err != nil {
			if err != io.EOF && !isTimeout(err) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrUnexpectedEOF) {
				status := 400
				if err == errHeadTooLarge {
					status = 431
				}
				cn.page(status, "", "", "the request could not be read: "+err.Error(), true)
			}
			return nil
		}
		// The read deadline stays: nothing reads the client while the
		// request is served but what sets its own (a body's reads, the
		// watch for a client that leaves, the tunnel), and the next
		// readRequest sets it anew. A deadline less is a timer change less.
		keep, tunnel := cn.serve()
		if tunnel != nil {
			upgraded = true
			return tunnel
		}
		if !keep {
			return nil
		}
	}
}

// readRequest reads the next request head into cn.h, for at most
// IdleTimeout. A connection that counts for a user stops counting after
// PresenceTimeout without a request: the deadline that ends the wait for
// one is set once either way, so a request costs nothing more.
func (cn *conn) readRequest() error {
	p, nc := cn.p, cn.c
	idle := time.Now()
	present := cn.seat != nil && p.cfg.PresenceTimeout < p.cfg.IdleTimeout
	if present {
		_ = nc.SetReadDeadline(idle.Add(p.cfg.PresenceTimeout))
	} else {
		_ = nc.SetReadDeadline(idle.Add(p.cfg.IdleTimeout))
	}
	err := cn.h.readRequest(cn.br)
	if err != nil && present && len(cn.h.buf) == 0 && isTimeout(err) {
		// Nothing of a request came: the user is no longer counted on
		// this connection, which waits on for the rest of IdleTimeout. (A
		// head that started and stalled at the deadline ends the
		// connection, as at IdleTimeout.)
		cn.unseat()
		_ = nc.SetReadDeadline(idle.Add(p.cfg.IdleTimeout))
		err = cn.h.readRequest(cn.br)
	}
	return err
}

// release returns the connection's buffers to their pools.
func (cn *conn) release() {
	if cn.br == nil {
		return
	}
	cn.br.Reset(nil)
	readerPool.Put(cn.br)
	cn.bw.Reset(nil)
	writerPool.Put(cn.bw)
	headPool.Put(cn.h)
	headPool.Put(cn.resp)
	cn.br, cn.bw, cn.h, cn.resp = nil, nil, nil, nil
}

// lingerClose closes a connection whose client may still be sending a body
// we did not read: closing at once would make the kernel answer with a
// reset that can destroy the response before the client reads it.
func lingerClose(c net.Conn, d time.Duration) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 16<<20))
	c.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// backendID extracts the backend ID from a Host header value:
// "<id>.<domain>[:port]", case-insensitively.
func (p *Proxy) backendID(host []byte) (string, bool) {
	h := host
	if i := lastColon(h); i >= 0 {
		h = h[:i]
	}
	if len(h) <= len(p.suffix) {
		return "", false
	}
	label, dom := h[:len(h)-len(p.suffix)], h[len(h)-len(p.suffix):]
	if !equalFold(dom, p.suffix) {
		return "", false
	}
	id := make([]byte, len(label))
	for i, c := range label {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return "", false // also rejects nested labels: a.b.<domain>
		}
		id[i] = c
	}
	return string(id), true
}

// lastColon finds a port separator, ignoring IPv6 brackets.
func lastColon(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		switch b[i] {
		case ':':
			return i
		case ']':
			return -1
		}
	}
	return -1
}
