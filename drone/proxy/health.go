package proxy

import (
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// A proxy that cannot accept connections (out of file descriptors, most
// often) keeps trying, and says so: Health is what the drone reports in its
// heartbeats, so that the controller places no backend on a drone whose
// proxy cannot reach it.

// unhealthyAfter is how long accepts must fail before the proxy calls
// itself unhealthy: one failure in a burst is not an outage.
const unhealthyAfter = time.Second

// acceptState records accept failures.
type acceptState struct {
	mu    sync.Mutex
	since time.Time // first failure of the current run; zero when accepting
	err   error     // the last failure
}

// failed records a failure and reports whether it starts a run, to be
// logged once rather than every few milliseconds.
func (a *acceptState) failed(err error) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.err = err
	if a.since.IsZero() {
		a.since = time.Now()
		return true
	}
	return false
}

// recovered ends a run of failures and reports whether there was one.
func (a *acceptState) recovered() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	was := !a.since.IsZero()
	a.since, a.err = time.Time{}, nil
	return was
}

// Health returns "" while the proxy accepts connections, or why it cannot.
func (p *Proxy) Health() string {
	p.accept.mu.Lock()
	since, err := p.accept.since, p.accept.err
	p.accept.mu.Unlock()
	if since.IsZero() || time.Since(since) < unhealthyAfter {
		return ""
	}
	return fmt.Sprintf("proxy cannot accept connections since %s: %v", since.UTC().Format(time.RFC3339), err)
}

// MaxConns is the cap on open client connections; 0 or less: none.
func (p *Proxy) MaxConns() int { return int(p.maxConns) }

// OpenConns is the number of client connections open now.
func (p *Proxy) OpenConns() int { return int(p.open.Load()) }

// DefaultMaxConns sizes the connection cap from the file-descriptor limit:
// each client connection may hold a backend connection too, and the drone
// needs some for itself (NATS, Docker, sqlite, logs).
func DefaultMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 || rl.Cur > 1<<30 {
		return 1 << 20
	}
	return max(int(rl.Cur)-reservedFDs, 2*minConns) / 2
}

const (
	reservedFDs = 128
	minConns    = 16
)

// refusal is the whole answer to a connection over the cap.
var refusal = func() []byte {
	const msg = "this drone has too many open connections; try again\n"
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Cache-Control: no-store\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
}()

// refuse answers a connection over the cap with 503 and closes it, without
// reading its request: the cap is there to keep descriptors and memory for
// the connections already served.
func (p *Proxy) refuse(c net.Conn) {
	defer p.conns.Done()
	defer p.open.Add(-1)
	_ = c.SetDeadline(time.Now().Add(time.Second))
	_, _ = c.Write(refusal)
	lingerClose(c, 100*time.Millisecond)
}
