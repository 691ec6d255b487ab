package dispatch

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
)

// acmeState is the controller's side of certificate ordering: who holds the
// ordering lease, and the DNS-01 TXT values the DNS server publishes.
// It lives in memory: after a controller restart a drone simply asks again.
type acmeState struct {
	mu     sync.Mutex
	holder string
	until  time.Time
	values map[string]string // TXT value → drone that set it
}

func (d *Dispatcher) acmeHandlers(h map[string]nats.MsgHandler) {
	h[plane.SubjectACMELease] = d.handleACMELease
	h[plane.SubjectACMESetTXT] = d.handleACMETXT(true)
	h[plane.SubjectACMEClearTXT] = d.handleACMETXT(false)
}

func (d *Dispatcher) handleACMELease(m *nats.Msg) {
	req, err := plane.Decode[plane.ACMELeaseRequest](m.Data)
	if err != nil {
		d.respond(m, plane.ACMELease{Error: plane.ErrorMessageOf(err)})
		return
	}
	now := d.Now()
	a := &d.acme
	a.mu.Lock()
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
	a.mu.Unlock()
	if lease.Granted {
		d.Logger.Info("acme lease granted", "drone", req.DroneID)
	}
	d.respond(m, lease)
}

func (d *Dispatcher) handleACMETXT(set bool) nats.MsgHandler {
	return func(m *nats.Msg) {
		c, err := plane.Decode[plane.ACMEChallenge](m.Data)
		if err == nil {
			err = d.setChallenge(c, set)
		}
		d.respond(m, plane.ReplyOf(err))
	}
}

func (d *Dispatcher) setChallenge(c plane.ACMEChallenge, set bool) error {
	a := &d.acme
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.values == nil {
		a.values = map[string]string{}
	}
	if !set {
		delete(a.values, c.Value)
		return nil
	}
	if a.holder != c.DroneID || !d.Now().Before(a.until) {
		return plane.Errorf(plane.EFORBIDDEN, "drone %s does not hold the ACME lease", c.DroneID)
	}
	if len(a.values) >= plane.MaxChallengeValues {
		return plane.Errorf(plane.EUNAVAILABLE, "too many ACME challenges at once")
	}
	a.values[c.Value] = c.DroneID
	return nil
}

// Challenges returns the current _acme-challenge TXT values, for the DNS server.
func (d *Dispatcher) Challenges(context.Context) ([]string, error) {
	a := &d.acme
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.values))
	for v := range a.values {
		out = append(out, v)
	}
	slices.Sort(out)
	return out, nil
}

// respond answers a request with v as JSON, when it has a reply subject.
func (d *Dispatcher) respond(m *nats.Msg, v any) {
	if m.Reply == "" {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		d.Logger.Error("encode reply", "subject", m.Subject, "err", err)
		return
	}
	if err := m.Respond(data); err != nil {
		d.Logger.Warn("reply", "subject", m.Subject, "err", err)
	}
}
