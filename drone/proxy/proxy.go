// Package proxy is the drone's HTTP proxy: it routes
// <backend-id>.<domain> to the backend's container, checks connect tokens,
// passes WebSockets and streams through, and counts each backend's open
// connections for the idle limit.
//
// It speaks HTTP/1.1 itself on both sides (see parse.go) and keeps
// keep-alive connections to backends; after an upgrade it pipes the two
// connections together and keeps no buffer while they are idle.
package proxy

import (
	"bufio"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
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
	Logger      *slog.Logger
}

const (
	DefaultWaitReady   = 30 * time.Second
	DefaultIdleTimeout = 120 * time.Second
	bufSize            = 4096
)

// Proxy routes requests to backends.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	suffix string // "." + domain, lowercase

	key       atomic.Pointer[ed25519.PublicKey]
	cert      atomic.Pointer[tls.Certificate]
	httpsPort atomic.Int64
	tokens    tokenCache

	mu     sync.RWMutex
	routes map[string]*route

	lnMu  sync.Mutex
	lns   map[net.Listener]struct{}
	conns sync.WaitGroup
}

// New returns a proxy with an empty route table.
func New(cfg Config) *Proxy {
	if cfg.WaitReady <= 0 {
		cfg.WaitReady = DefaultWaitReady
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Proxy{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "proxy"),
		suffix: "." + strings.ToLower(strings.TrimSuffix(cfg.Domain, ".")),
		routes: map[string]*route{},
		lns:    map[net.Listener]struct{}{},
		tokens: tokenCache{m: map[string]plane.ConnectToken{}},
	}
}

// SetKey sets the controller's connect-token verification key.
func (p *Proxy) SetKey(k ed25519.PublicKey) {
	p.key.Store(&k)
	p.tokens.clear()
}

// Serve accepts connections on ln until it is closed. secure marks a TLS
// listener (X-Forwarded-Proto https, Secure cookies).
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
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				p.log.Warn("accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		backoff = 0
		p.conns.Add(1)
		go func() {
			defer p.conns.Done()
			p.serveConn(c, secure)
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
}

func (p *Proxy) serveConn(nc net.Conn, secure bool) {
	cn := &conn{p: p, c: nc, secure: secure}
	cn.br = readerPool.Get().(*bufio.Reader)
	cn.br.Reset(nc)
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
		case upgraded:
		case cn.unread:
			lingerClose(nc)
		default:
			nc.Close()
		}
	}()
	for {
		_ = nc.SetReadDeadline(time.Now().Add(p.cfg.IdleTimeout))
		if err := cn.h.readRequest(cn.br); err != nil {
			if err != io.EOF && !isTimeout(err) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrUnexpectedEOF) {
				status := 400
				if err == errHeadTooLarge {
					status = 431
				}
				cn.page(status, "", "", "the request could not be read: "+err.Error(), true)
			}
			return
		}
		_ = nc.SetReadDeadline(time.Time{})
		keep, tunnel := cn.serve()
		if tunnel != nil {
			upgraded = true
			cn.release()
			tunnel()
			return
		}
		if !keep {
			return
		}
	}
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
func lingerClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
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
