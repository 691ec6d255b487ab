package cert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"plane"
)

// request sends req to the controller on subject and returns the raw answer.
func (m *Manager) request(ctx context.Context, subject string, req any) ([]byte, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	msg, err := m.cfg.NATS.RequestWithContext(ctx, subject, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", subject, err)
	}
	return msg.Data, nil
}

// call sends req on subject and turns the plane.Reply into an error.
func (m *Manager) call(ctx context.Context, subject string, req any) error {
	data, err := m.request(ctx, subject, req)
	if err != nil {
		return err
	}
	var reply plane.Reply
	if err := json.Unmarshal(data, &reply); err != nil {
		return fmt.Errorf("%s: malformed reply: %w", subject, err)
	}
	return reply.Err()
}

// lease asks for the ordering lease, or gives it back.
func (m *Manager) lease(ctx context.Context, release bool) (plane.ACMELease, error) {
	data, err := m.request(ctx, plane.SubjectACMELease, plane.ACMELeaseRequest{DroneID: m.cfg.DroneID, Release: release})
	if err != nil {
		return plane.ACMELease{}, err
	}
	l, err := plane.Decode[plane.ACMELease](data)
	if err != nil {
		return l, fmt.Errorf("%s: %w", plane.SubjectACMELease, err)
	}
	if l.Error != "" {
		return l, errors.New(l.Error)
	}
	return l, nil
}

func (m *Manager) requestLease(ctx context.Context) (plane.ACMELease, error) {
	return m.lease(ctx, false)
}

// releaseLease gives the lease back, even when ctx is done (the drone is
// stopping): the next drone need not wait for it to expire.
func (m *Manager) releaseLease(ctx context.Context) {
	if _, err := m.lease(context.WithoutCancel(ctx), true); err != nil {
		m.log.Warn("could not release the ordering lease; it will expire", "err", err)
	}
}

// keepLease renews the lease halfway through its life while an order runs
// (an order may outlast plane.ACMELeaseTTL when the CA is slow), until the
// returned stop is called.
func (m *Manager) keepLease(ctx context.Context, l plane.ACMELease) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			wait := plane.ACMELeaseTTL / 2
			if left := time.Until(l.ExpiresAt); !l.ExpiresAt.IsZero() && left/2 < wait {
				wait = max(left/2, time.Second)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			renewed, err := m.lease(ctx, false)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				m.log.Warn("could not renew the ordering lease", "err", err)
			case !renewed.Granted:
				m.log.Warn("lost the ordering lease while ordering", "holder", renewed.Holder)
				return
			default:
				l = renewed
			}
		}
	}()
	return func() { cancel(); <-done }
}
