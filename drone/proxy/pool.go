package proxy

import (
	"bufio"
	"net"
	"sync"
	"syscall"
	"time"
)

// maxIdlePerBackend bounds the keep-alive connections kept to one backend.
// Below it the pool follows demand: a connection unused for the idle
// timeout is closed, so after a burst the pool shrinks back to what recent
// traffic needs (nginx's upstream keepalive_timeout, 60 s by default).
const maxIdlePerBackend = 256

// upstream is a connection to a backend with its buffers.
type upstream struct {
	addr  string // the backend address it was dialled to
	conn  net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	since time.Time // idle since, while in the pool

	// For alive, made once per connection: its descriptor, and the peek
	// it runs there with what the peek found.
	raw    syscall.RawConn
	peekFn func(fd uintptr) bool
	idle   bool
}

func newUpstream(addr string, c net.Conn) *upstream {
	u := &upstream{addr: addr, conn: c, br: bufio.NewReaderSize(c, bufSize), bw: bufio.NewWriterSize(c, bufSize)}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			u.raw = raw
			u.peekFn = u.peek
		}
	}
	return u
}

// pool keeps idle keep-alive connections to one backend, like nginx's
// upstream keepalive: most requests then cost no connect. idle is in the
// order the connections were put back, so the oldest come first; get takes
// the newest.
type pool struct {
	mu      sync.Mutex
	idle    []*upstream
	timeout time.Duration
	sweep   *time.Timer // runs while idle is not empty
	closed  bool
}

var dialer = net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}

// get returns an idle connection (reused == true) or dials a new one. An
// idle connection is first checked (one non-blocking read, about a
// microsecond): one the backend closed meanwhile would fail a request that
// cannot be retried, and bytes the backend sent after its response's end
// would be read as the next request's answer — another user's, maybe.
func (p *pool) get(addr string) (u *upstream, reused bool, err error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		u = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if u.alive() {
			return u, true, nil
		}
		u.conn.Close()
	}
	c, err := dialer.Dial("tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return newUpstream(addr, c), false, nil
}

// put returns a connection whose last response was read in full. One with
// bytes beyond that response already read (a backend that sent more than
// its framing said) is closed instead.
func (p *pool) put(u *upstream) {
	u.since = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdlePerBackend || u.br.Buffered() > 0 {
		p.mu.Unlock()
		u.conn.Close()
		return
	}
	p.idle = append(p.idle, u)
	if p.sweep == nil {
		p.sweep = time.AfterFunc(p.timeout, p.expire)
	}
	p.mu.Unlock()
}

// expire closes the connections idle for the timeout and schedules itself
// again for the oldest one left.
func (p *pool) expire() {
	cutoff := time.Now().Add(-p.timeout)
	p.mu.Lock()
	i := 0
	for i < len(p.idle) && !p.idle[i].since.After(cutoff) {
		i++
	}
	old := make([]*upstream, i)
	copy(old, p.idle[:i])
	n := copy(p.idle, p.idle[i:])
	clear(p.idle[n:])
	p.idle = p.idle[:n]
	if n > 0 {
		p.sweep.Reset(time.Until(p.idle[0].since.Add(p.timeout)))
	} else {
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, u := range old {
		u.conn.Close()
	}
}

// closeIdle closes every idle connection; with final, the pool keeps none
// from now on (its backend is gone).
func (p *pool) closeIdle(final bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
	p.closed = p.closed || final
	p.mu.Unlock()
	for _, u := range idle {
		u.conn.Close()
	}
}

// len is the number of idle connections.
func (p *pool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// alive reports whether an idle connection is still open: a non-blocking
// peek finds nothing to read (EAGAIN). An end of stream, an error or bytes
// the backend sent unasked all make it unusable.
func (u *upstream) alive() bool {
	if u.raw == nil {
		return true
	}
	u.idle = false
	err := u.raw.Read(u.peekFn)
	return err == nil && u.idle
}

// peek is alive's look at the descriptor; it never waits.
func (u *upstream) peek(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	u.idle = err == syscall.EAGAIN
	return true
}
