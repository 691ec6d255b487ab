package proxy

import (
	"cmp"
	"net"
	"slices"
	"time"

	"plane"
)

// Who is connected to a backend (plane's connection.go).
//
// What counts is a client connection: from the first request on it that the
// proxy forwards to a backend (authorized, so the user is known: the connect
// token's, "" without one) until it closes. An upgraded connection (a
// WebSocket) counts until it closes; a kept-alive one between requests counts
// for at most PresenceTimeout, since a browser keeps a closed tab's
// connections in its pool for minutes. A request in flight counts however
// long it takes. Counting connections rather than requests keeps the
// bookkeeping off the hot path (one map update when a connection is bound
// and one when it ends, none per request), and keeps a user who clicks
// through an app without a socket from joining and leaving at every click.
//
// A user joins when their first connection is bound, and leaves once their
// last one has stayed closed for LeaveDebounce: a page reload is no leave.
// The proxy reports both to the drone through OnUsers.

// DefaultPresenceTimeout is Config.PresenceTimeout's default.
const DefaultPresenceTimeout = 30 * time.Second

// UserChange is a user who joined a backend (their first connection) or
// left it (their last one closed, LeaveDebounce ago).
type UserChange struct {
	BackendID string
	User      string
	Joined    bool
	Users     int       // distinct users after the change, those about to leave among them
	Time      time.Time // of the join, or of the leave's end of debounce
}

// OnUsers sets the function told of every join and leave, in the order
// they happen on each backend. It is called with the backend's bookkeeping
// locked: it must return at once and not call the proxy.
func (p *Proxy) OnUsers(fn func(UserChange)) { p.onUsers.Store(&fn) }

// userConns is one user's connections to a backend.
type userConns struct {
	conns map[net.Conn]struct{}
	since time.Time // when they joined
	// leaving counts the times their connections fell to none: a leave's
	// timer that finds it changed was overtaken by a reconnection.
	leaving uint64
}

// seat binds a client connection to a user of a backend.
type seat struct {
	rt   *route
	user string
	c    net.Conn
}

// sit binds the connection to a's user of rt unless it is already: once
// per connection as a rule, so the check costs a comparison per request. It
// reports false when a disconnect refused a's token meanwhile (after
// authorize), which the caller answers like an invalid token.
func (cn *conn) sit(rt *route, a *access) bool {
	if s := cn.seat; s != nil && s.rt == rt && s.user == a.user {
		return true
	}
	if !rt.join(a.user, a.exp, cn.c) {
		return false
	}
	cn.unseat() // the connection moved to another backend or user
	cn.seat = &seat{rt: rt, user: a.user, c: cn.c}
	return true
}

// unseat ends the connection's binding, if any.
func (cn *conn) unseat() {
	if cn.seat != nil {
		cn.seat.leave()
		cn.seat = nil
	}
}

// join adds c to user's connections, unless a refusal covers their token
// (checked under the lock a disconnect takes, so that no connection bound
// with a refused token escapes the disconnect's closing).
func (rt *route) join(user string, exp time.Time, c net.Conn) bool {
	rt.umu.Lock()
	defer rt.umu.Unlock()
	if rt.refuses(user, exp) {
		return false
	}
	uc := rt.users[user]
	if uc == nil {
		uc = &userConns{conns: map[net.Conn]struct{}{}, since: time.Now()}
		rt.users[user] = uc
		if !rt.gone {
			rt.report(UserChange{BackendID: rt.id, User: user, Joined: true, Users: len(rt.users), Time: uc.since})
		}
	} else if len(uc.conns) == 0 {
		uc.leaving++ // back within the debounce: the pending leave is off
	}
	uc.conns[c] = struct{}{}
	return true
}

// leave removes the seat's connection; the user's last one starts the
// leave's debounce.
func (s *seat) leave() {
	rt := s.rt
	rt.umu.Lock()
	defer rt.umu.Unlock()
	uc := rt.users[s.user]
	if uc == nil {
		return
	}
	delete(uc.conns, s.c)
	if len(uc.conns) > 0 {
		return
	}
	if rt.gone {
		delete(rt.users, s.user) // nobody is told: the backend has terminated
		return
	}
	uc.leaving++
	n, user := uc.leaving, s.user
	time.AfterFunc(rt.p.cfg.LeaveDebounce, func() { rt.left(user, uc, n) })
}

// left ends a leave's debounce: the user left unless they came back.
func (rt *route) left(user string, uc *userConns, n uint64) {
	rt.umu.Lock()
	defer rt.umu.Unlock()
	if rt.gone || rt.users[user] != uc || len(uc.conns) > 0 || uc.leaving != n {
		return
	}
	delete(rt.users, user)
	rt.report(UserChange{BackendID: rt.id, User: user, Users: len(rt.users), Time: time.Now()})
}

// report tells the drone of a change; rt.umu is held.
func (rt *route) report(c UserChange) {
	if fn := rt.p.onUsers.Load(); fn != nil {
		(*fn)(c)
	}
}

// retire stops the route's reports once it left the table: the backend
// terminated, and the controller forgets its users itself. Its
// connections still open leave quietly as they close.
func (rt *route) retire() {
	rt.umu.Lock()
	defer rt.umu.Unlock()
	rt.gone = true
	for user, uc := range rt.users {
		if len(uc.conns) == 0 {
			delete(rt.users, user)
		}
	}
	if rt.refuseTill != nil {
		rt.refuseTill.Stop()
		rt.refuseTill = nil
	}
	rt.refused.Store(nil)
}

// Users returns who is connected to a backend now, longest connected
// first, at most plane.MaxStatsUsers of them. A user whose leave is in its
// debounce is still there, with no connections.
func (p *Proxy) Users(backendID string) []plane.UserConnections {
	rt := p.route(backendID)
	if rt == nil {
		return nil
	}
	rt.umu.Lock()
	out := make([]plane.UserConnections, 0, len(rt.users))
	for user, uc := range rt.users {
		out = append(out, plane.UserConnections{User: user, Connections: len(uc.conns), Since: uc.since})
	}
	rt.umu.Unlock()
	slices.SortFunc(out, func(x, y plane.UserConnections) int {
		return cmp.Or(x.Since.Compare(y.Since), cmp.Compare(x.User, y.User))
	})
	return out[:min(len(out), plane.MaxStatsUsers)]
}
