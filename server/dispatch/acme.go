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

// acmeState holds the rules of the ordering lease and the TXT values; the
// state itself is in the store (plane.ACMEStateService), so that every
// controller of a cluster applies them to the same state, one change at a
// time.
type acmeState plane.ACMEState

// lease grants, renews or releases the ordering lease at now. It is free
// when nobody holds it, when it has expired, or for its holder.
func (a *acmeState) lease(req plane.ACMELeaseRequest, now time.Time) plane.ACMELease {
	free := a.Holder == "" || !now.Before(a.Until) || a.Holder == req.DroneID
	var lease plane.ACMELease
	switch {
	case req.Release:
		if a.Holder == req.DroneID {
			a.Holder, a.Until = "", time.Time{}
		}
	case free:
		a.Holder, a.Until = req.DroneID, now.Add(plane.ACMELeaseTTL)
		lease.Granted = true
	}
	if a.Holder != "" {
		lease.Holder, lease.ExpiresAt = a.Holder, a.Until
	}
	return lease
}

// setTXT publishes a TXT value for the drone that holds the lease at now,
// and drops the values of earlier holders.
func (a *acmeState) setTXT(c plane.ACMEChallenge, now time.Time) error {
	if a.Holder != c.DroneID || !now.Before(a.Until) {
		return plane.Errorf(plane.EFORBIDDEN, "drone %s does not hold the ACME lease", c.DroneID)
	}
	if a.Values == nil {
		a.Values = map[string]string{}
	}
	// Values of earlier holders belong to orders that are over: a drone
	// that died mid-order never clears them, and they would fill the bound.
	maps.DeleteFunc(a.Values, func(_, drone string) bool { return drone != c.DroneID })
	if len(a.Values) >= plane.MaxChallengeValues {
		return plane.Errorf(plane.EUNAVAILABLE, "too many ACME challenges at once")
	}
	a.Values[c.Value] = c.DroneID
	return nil
}

// clearTXT withdraws a TXT value.
func (a *acmeState) clearTXT(c plane.ACMEChallenge) {
	delete(a.Values, c.Value)
}

// txt returns the published TXT values, sorted.
func (a *acmeState) txt() []string {
	out := make([]string, 0, len(a.Values))
	for v := range a.Values {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// memoryACME keeps the ACME state in memory, for a dispatcher without a
// store of it (one controller).
type memoryACME struct {
	mu sync.Mutex
	st plane.ACMEState
}

func (m *memoryACME) UpdateACMEState(_ context.Context, fn func(*plane.ACMEState) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := m.st
	next.Values = maps.Clone(m.st.Values)
	if err := fn(&next); err != nil {
		return err
	}
	m.st = next
	return nil
}

func (m *memoryACME) FindACMEState(context.Context) (*plane.ACMEState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	st.Values = maps.Clone(m.st.Values)
	return &st, nil
}

// acmeStore is where the ACME state is.
func (d *Dispatcher) acmeStore() plane.ACMEStateService {
	if d.ACME != nil {
		return d.ACME
	}
	return &d.acmeMem
}

// acmeContext bounds a handler's store calls.
func acmeContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

func (d *Dispatcher) handleACMELease(m *nats.Msg) {
	req, err := plane.Decode[plane.ACMELeaseRequest](m.Data)
	if err != nil {
		d.respond(m, plane.ACMELease{Error: plane.ErrorMessageOf(err)})
		return
	}
	ctx, cancel := acmeContext()
	defer cancel()
	var lease plane.ACMELease
	if err := d.acmeStore().UpdateACMEState(ctx, func(st *plane.ACMEState) error {
		lease = (*acmeState)(st).lease(req, d.Now())
		return nil
	}); err != nil {
		d.Logger.Error("acme lease", "drone", req.DroneID, "err", err)
		d.respond(m, plane.ACMELease{Error: "the controller could not read its store: try again"})
		return
	}
	if lease.Granted {
		d.Logger.Info("acme lease granted", "drone", req.DroneID)
	}
	d.respond(m, lease)
}

func (d *Dispatcher) handleACMETXT(set bool) nats.MsgHandler {
	return func(m *nats.Msg) {
		c, err := plane.Decode[plane.ACMEChallenge](m.Data)
		if err == nil {
			ctx, cancel := acmeContext()
			defer cancel()
			err = d.acmeStore().UpdateACMEState(ctx, func(st *plane.ACMEState) error {
				if set {
					return (*acmeState)(st).setTXT(c, d.Now())
				}
				(*acmeState)(st).clearTXT(c)
				return nil
			})
		}
		d.respond(m, plane.ReplyOf(err))
	}
}

// Challenges returns the current _acme-challenge TXT values, for the DNS
// server: those of the store, whichever controller a drone asked.
func (d *Dispatcher) Challenges(ctx context.Context) ([]string, error) {
	st, err := d.acmeStore().FindACMEState(ctx)
	if err != nil {
		return nil, err
	}
	return (*acmeState)(st).txt(), nil
}
