package proxy

import (
	"net"
	"time"

	"plane"
)

// A disconnect (plane.DisconnectRequest) closes a user's connections to a
// backend at once and refuses, from then on, their connect tokens that
// expire before a cutoff: the tokens issued before it. A refusal is kept
// until its cutoff, when every token it covers has expired anyway.

// maxRefusals bounds a backend's refusals. Past it they become one that
// covers every user up to the latest cutoff: refusing too many tokens
// (their users ask the app for fresh links) is better than forgetting one.
const maxRefusals = 1024

// tokenRefusal refuses the tokens of user (of everyone when all) that expire
// before the cutoff.
type tokenRefusal struct {
	user   string
	all    bool
	before time.Time
}

// errRefused is the answer to a refused token: the status of an invalid
// one, so that a disconnected client learns nothing more than that.
var errRefused = plane.Errorf(plane.EUNAUTHORIZED, "this connect token is no longer valid: ask the app for a fresh link")

// refuses reports whether a disconnect refused the token of user expiring
// at exp (zero: a request without a token, which no refusal covers). One
// atomic load when the backend has no refusal, as almost all have not.
func (rt *route) refuses(user string, exp time.Time) bool {
	rs := rt.refused.Load()
	if rs == nil || exp.IsZero() {
		return false
	}
	for _, r := range *rs {
		if (r.all || r.user == user) && exp.Before(r.before) {
			return true
		}
	}
	return false
}

// Disconnect closes the connections of user (of every user when all) to
// a backend, WebSockets and requests in flight among them, and refuses
// from now on their tokens that expire before tokensExpiringBefore. It
// returns how many connections it closed, and false when the proxy has no
// route to the backend. The users leave as their connections' ends are
// noticed, after the debounce, as any leave.
func (p *Proxy) Disconnect(backendID, user string, all bool, tokensExpiringBefore time.Time) (closed int, ok bool) {
	rt := p.route(backendID)
	if rt == nil {
		return 0, false
	}
	var victims []net.Conn
	rt.umu.Lock()
	if !rt.gone && time.Now().Before(tokensExpiringBefore) {
		rt.refuseLocked(tokenRefusal{user: user, all: all, before: tokensExpiringBefore})
	}
	for u, uc := range rt.users {
		if all || u == user {
			for c := range uc.conns {
				victims = append(victims, c)
			}
		}
	}
	rt.umu.Unlock()
	// Closed outside the lock: the connections' goroutines take it to
	// leave. A blocked read or write fails at once, and a tunnel closes
	// its backend side when its client side fails.
	for _, c := range victims {
		c.Close()
	}
	return len(victims), true
}

// refuseLocked adds r to the route's refusals, dropping those that have
// passed; rt.umu is held.
func (rt *route) refuseLocked(r tokenRefusal) {
	var rs []tokenRefusal
	if old := rt.refused.Load(); old != nil {
		rs = make([]tokenRefusal, 0, len(*old)+1)
		rs = append(rs, *old...)
	}
	rs = append(rs, r)
	rt.storeRefusalsLocked(rs, time.Now())
}

// storeRefusalsLocked keeps the refusals of rs still in force at now, and
// schedules their next pruning; rt.umu is held.
func (rt *route) storeRefusalsLocked(rs []tokenRefusal, now time.Time) {
	live := rs[:0]
	var next, last time.Time
	for _, r := range rs {
		if !now.Before(r.before) {
			continue
		}
		live = append(live, r)
		if next.IsZero() || r.before.Before(next) {
			next = r.before
		}
		if r.before.After(last) {
			last = r.before
		}
	}
	if len(live) > maxRefusals {
		live, next = []tokenRefusal{{all: true, before: last}}, last
	}
	if rt.refuseTill != nil {
		rt.refuseTill.Stop()
		rt.refuseTill = nil
	}
	if len(live) == 0 {
		rt.refused.Store(nil)
		return
	}
	rt.refused.Store(&live)
	rt.refuseTill = time.AfterFunc(time.Until(next), rt.pruneRefusals)
}

// pruneRefusals drops the refusals that have passed.
func (rt *route) pruneRefusals() {
	rt.umu.Lock()
	defer rt.umu.Unlock()
	if rt.gone {
		return
	}
	if old := rt.refused.Load(); old != nil {
		rt.storeRefusalsLocked(append([]tokenRefusal(nil), *old...), time.Now())
	}
}
