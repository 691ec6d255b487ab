package proxy

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// maxIdlePerBackend bounds the keep-alive connections kept to one backend.
const maxIdlePerBackend = 256

// upstream is a connection to a backend with its buffers.
type upstream struct {
	addr string // the backend address it was dialled to
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
}

// pool keeps idle keep-alive connections to one backend, like nginx's
// upstream keepalive: most requests then cost no connect.
type pool struct {
	mu   sync.Mutex
	idle []*upstream
}

var dialer = net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}

// get returns an idle connection (reused == true) or dials a new one.
func (p *pool) get(addr string) (u *upstream, reused bool, err error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		u = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return u, true, nil
	}
	p.mu.Unlock()
	c, err := dialer.Dial("tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &upstream{addr: addr, conn: c, br: bufio.NewReaderSize(c, bufSize), bw: bufio.NewWriterSize(c, bufSize)}, false, nil
}

// put returns a connection whose last response was read in full.
func (p *pool) put(u *upstream) {
	p.mu.Lock()
	if len(p.idle) < maxIdlePerBackend {
		p.idle = append(p.idle, u)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	u.conn.Close()
}

func (p *pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, u := range idle {
		u.conn.Close()
	}
}
