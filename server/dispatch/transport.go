package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
)

// This file is the request/reply side of NATS: the controller's requests to
// drones, and its answers to theirs.

// request sends a request to a drone and decodes its reply. A drone that
// does not answer in time, or at all, is plane.EUNAVAILABLE; a drone's
// error keeps its code.
//
// A request or its reply is lost when the NATS node this controller or the
// drone is connected to dies: the client moves to another node, but what
// was in flight is gone. So the request is sent again every ResendAfter
// until RequestTimeout, on one reply subject, and the first reply wins.
// Every drone request is idempotent (a spawn of a backend the drone has, a
// stop of one it stopped, a drain it is in), so a resent request that the
// drone did get is harmless. Waiting out the whole timeout instead made a
// spawn during the loss of a node take more than 5 s. A pull is the
// exception (resend false): the drone answers it only once the pull is
// over, so resending would pull the image again every second.
//
// Only the first send's "no responders" means that no drone listens: to a
// resend it may mean that the drone's own connection is being replaced,
// with the first request in hand; the request waits for its answer then.
func (d *Dispatcher) request(ctx context.Context, subject string, v any, resend bool) error {
	_, err := d.requestReply(ctx, subject, v, resend)
	return err
}

// requestReply is request that also returns the drone's reply.
func (d *Dispatcher) requestReply(ctx context.Context, subject string, v any, resend bool) (plane.Reply, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return plane.Reply{}, fmt.Errorf("encode request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, d.RequestTimeout)
	defer cancel()
	inbox := d.NC.NewInbox()
	replies := make(chan *nats.Msg, 8)
	sub, err := d.NC.ChanSubscribe(inbox, replies)
	if err != nil {
		return plane.Reply{}, fmt.Errorf("request %s: %w", subject, err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the connection may be closing
	every := d.ResendAfter
	if every <= 0 {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for sent := 0; ; {
		if sent == 0 || resend {
			if err := d.NC.PublishRequest(subject, inbox, data); err != nil {
				return plane.Reply{}, fmt.Errorf("request %s: %w", subject, err)
			}
			sent++
		}
		select {
		case <-tick.C:
			continue
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return plane.Reply{}, plane.Errorf(plane.EUNAVAILABLE, "drone did not answer (%v)", ctx.Err())
			}
			return plane.Reply{}, fmt.Errorf("request %s: %w", subject, ctx.Err())
		case m := <-replies:
			if isNoResponders(m) {
				if sent > 1 {
					continue
				}
				return plane.Reply{}, plane.Errorf(plane.EUNAVAILABLE, "drone did not answer (%v)", nats.ErrNoResponders)
			}
			var r plane.Reply
			if err := json.Unmarshal(m.Data, &r); err != nil {
				return plane.Reply{}, fmt.Errorf("decode reply to %s: %w", subject, err)
			}
			return r, r.Err()
		}
	}
}

// isNoResponders reports whether m is the server's notice that nobody
// subscribes to the request's subject (nats.go keeps the header's name and
// value to itself; they are in the NATS protocol's documentation).
func isNoResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}

// Spawn asks a drone to start a backend; warm says that the drone claimed
// a warm pool's member for it (spec.Warm).
func (d *Dispatcher) Spawn(ctx context.Context, droneID string, spec plane.SpawnSpec) (warm bool, err error) {
	r, err := d.requestReply(ctx, plane.SubjectSpawn(droneID), spec, true)
	return r.Warm && err == nil, err
}

// SetPools tells a drone which warm pools to keep.
func (d *Dispatcher) SetPools(ctx context.Context, droneID string, req plane.PoolsRequest) error {
	return d.request(ctx, plane.SubjectPools(droneID), req, true)
}

// Disconnect asks a drone to close a user's (or every user's) connections
// to a backend and refuse their older connect tokens.
func (d *Dispatcher) Disconnect(ctx context.Context, droneID string, req plane.DisconnectRequest) error {
	return d.request(ctx, plane.SubjectDisconnect(droneID), req, true)
}

// KeepAlive asks a drone to hold off a backend's idle stop until req.Until.
func (d *Dispatcher) KeepAlive(ctx context.Context, droneID string, req plane.KeepAliveRequest) error {
	return d.request(ctx, plane.SubjectKeepAlive(droneID), req, true)
}

// Terminate asks a drone to stop a backend.
func (d *Dispatcher) Terminate(ctx context.Context, droneID string, req plane.TerminateRequest) error {
	return d.request(ctx, plane.SubjectTerminate(droneID), req, true)
}

// Drain sets or clears a drone's draining flag.
func (d *Dispatcher) Drain(ctx context.Context, droneID string, draining bool) error {
	return d.request(ctx, plane.SubjectDrain(droneID), plane.DrainRequest{Draining: draining}, true)
}

// Pull asks a drone to pull an image ahead of use.
func (d *Dispatcher) Pull(ctx context.Context, droneID, ref string) error {
	return d.request(ctx, plane.SubjectPull(droneID), plane.PullRequest{ImageRef: ref}, false)
}

// handleConnectKey answers a drone's request for the connect-token keys.
func (d *Dispatcher) handleConnectKey(m *nats.Msg) {
	d.respond(m, d.connectKeys())
}

func (d *Dispatcher) connectKeys() plane.ConnectKey {
	k := plane.ConnectKey{PublicKey: d.ConnectKey}
	for _, a := range d.AcceptKeys {
		k.Accepted = append(k.Accepted, a)
	}
	return k
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
