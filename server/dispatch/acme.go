package dispatch

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
)

// acmeState is the controller's side of certificate ordering: who holds the
// ordering lease, and the DNS-01 TXT values the DNS server publishes.
// It lives in memory: after a controller restart a drone simply asks again.
// The zero value is ready to use, and safe for concurrent use.
type acmeState struct {
	mu     sync.Mutex
	holder string
	until  time.Time
	values map[string]string // TXT value → drone that set it
}

// lease grants, renews or releases the ordering lease at now. It is free
// when nobody holds it, when it has expired, or for its holder.
func (a *acmeState) lease(req plane.ACMELeaseRequest, now time.Time) plane.ACMELease {
	a.mu.Lock()
	defer a.mu.Unlock()
	free := a.holder == "" || !now.Before(a.until) || a.holder == req.DroneID
	var lease plane.ACMELease
	switch {
	case req.Release:
		if a.holder == req.DroneID {
			a.holder, a.until = "", time.Time{}
		}
	case free:
		a.holder, a.until = req.DroneID, now.Add(plane.ACMELeaseTTL)
		lease.Granted = true
	}
	if a.holder != "" {
		lease.Holder, lease.ExpiresAt = a.holder, a.until
	}
	return lease
}

// setTXT publishes a TXT value for the drone that holds the lease at now,
// and drops the values of earlier holders.
func (a *acmeState) setTXT(c plane.ACMEChallenge, now time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.holder != c.DroneID || !now.Before(a.until) {
		return plane.Errorf(plane.EFORBIDDEN, "drone %s does not hold the ACME lease", c.DroneID)
	}
	if a.values == nil {
		a.values = map[string]string{}
	}
	// Values of earlier holders belong to orders that are over: a drone
	// that died mid-order never clears them, and they would fill the bound.
	maps.DeleteFunc(a.values, func(_, drone string) bool { return drone != c.DroneID })
	if len(a.values) >= plane.MaxChallengeValues {
		return plane.Errorf(plane.EUNAVAILABLE, "too many ACME challenges at once")
	}
	a.values[c.Value] = c.DroneID
	return nil
}

// clearTXT withdraws a TXT value.
func (a *acmeState) clearTXT(c plane.ACMEChallenge) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.values, c.Value)
}

// txt returns the published TXT values, sorted.
func (a *acmeState) txt() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.values))
	for v := range a.values {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

func (d *Dispatcher) handleACMELease(m *nats.Msg) {
	req, err := plane.Decode[plane.ACMELeaseRequest](m.Data)
	if err != nil {
		d.respond(m, plane.ACMELease{Error: plane.ErrorMessageOf(err)})
		return
	}
	lease := d.acme.lease(req, d.Now())
	if lease.Granted {
		d.Logger.Info("acme lease granted", "drone", req.DroneID)
	}
	d.respond(m, lease)
}

func (d *Dispatcher) handleACMETXT(set bool) nats.MsgHandler {
	return func(m *nats.Msg) {
		c, err := plane.Decode[plane.ACMEChallenge](m.Data)
		switch {
		case err != nil:
		case set:
			err = d.acme.setTXT(c, d.Now())
		default:
			d.acme.clearTXT(c)
		}
		d.respond(m, plane.ReplyOf(err))
	}
}

// Challenges returns the current _acme-challenge TXT values, for the DNS server.
func (d *Dispatcher) Challenges(context.Context) ([]string, error) {
	return d.acme.txt(), nil
}
