package proxy

import (
	"sync"
	"sync/atomic"
	"time"

	"plane"
)

// Route is what the proxy knows of a backend, as the drone tells it.
type Route struct {
	BackendID   string
	Key         string // the backend's key, sent to it as X-Plane-Key
	Address     string // host:port of the container; empty until it has one
	Status      plane.BackendStatus
	Public      bool // no connect token needed
	AllowBearer bool // the token may come as "Authorization: Bearer"
	// Suspended: the container is paused; a request wakes it through
	// Config.Resume before it is forwarded.
	Suspended bool
}

// route is a live backend in the table: its settings, the upstream
// connections kept open to it, its connection counts, and who holds its
// client connections (users.go).
type route struct {
	id string
	p  *Proxy

	mu    sync.Mutex
	r     Route
	ready chan struct{} // closed once ready or terminated

	pool pool

	active atomic.Int64 // in-flight requests and open upgraded connections
	last   atomic.Int64 // unix nanoseconds of the last activity

	// umu guards the users and the refusals (users.go); a route's umu is
	// never held with another's.
	umu   sync.Mutex
	users map[string]*userConns // by user, while joined
	gone  bool                  // out of the table: nothing more is reported
	// refused are the disconnects' refusals of tokens (nil: none, which
	// is all a request looks at); written under umu, copied on write.
	refused    atomic.Pointer[[]tokenRefusal]
	refuseTill *time.Timer // drops the refusals that have passed
}

func (rt *route) snapshot() Route {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.r
}

// SetRoute adds or updates a backend's route. Requests for a backend that is
// not ready yet wait for it; a terminated one is dropped.
func (p *Proxy) SetRoute(r Route) {
	if r.Status == plane.StatusTerminated {
		p.removeRoute(r.BackendID)
		return
	}
	p.mu.Lock()
	rt, ok := p.routes[r.BackendID]
	if !ok {
		rt = &route{id: r.BackendID, p: p, ready: make(chan struct{}), users: map[string]*userConns{}}
		rt.pool.timeout = p.cfg.UpstreamIdleTimeout
		rt.last.Store(time.Now().UnixNano())
		p.routes[r.BackendID] = rt
	}
	p.mu.Unlock()

	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.r.Address != r.Address {
		rt.pool.closeIdle(false)
	}
	rt.r = r
	if r.Status == plane.StatusReady {
		closeOnce(rt.ready)
	}
}

func (p *Proxy) removeRoute(id string) {
	p.mu.Lock()
	rt, ok := p.routes[id]
	delete(p.routes, id)
	p.mu.Unlock()
	if !ok {
		return
	}
	rt.mu.Lock()
	rt.r.Status = plane.StatusTerminated
	closeOnce(rt.ready)
	rt.mu.Unlock()
	rt.pool.closeIdle(true)
	rt.retire()
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

func (p *Proxy) route(id string) *route {
	p.mu.RLock()
	rt := p.routes[id]
	p.mu.RUnlock()
	return rt
}

// Activity reports a backend's open connections (in-flight requests and
// upgraded connections) and the time of its last activity; the drone's idle
// limit reads it.
func (p *Proxy) Activity(backendID string) (conns int, last time.Time) {
	rt := p.route(backendID)
	if rt == nil {
		return 0, time.Time{}
	}
	return int(rt.active.Load()), time.Unix(0, rt.last.Load())
}

// begin and end bracket a request or an upgraded connection.
func (rt *route) begin() { rt.active.Add(1) }

func (rt *route) end() {
	rt.touch()
	rt.active.Add(-1)
}

// touch records activity now.
func (rt *route) touch() { rt.last.Store(time.Now().UnixNano()) }

// putUpstream keeps a connection for the next request, unless the backend
// moved or went away meanwhile.
func (rt *route) putUpstream(u *upstream) {
	rt.mu.Lock()
	ok := rt.r.Address == u.addr && rt.r.Status != plane.StatusTerminated
	rt.mu.Unlock()
	if !ok {
		u.conn.Close()
		return
	}
	rt.pool.put(u)
}
