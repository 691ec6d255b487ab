package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"plane"
)

// This file is the request/reply side of NATS: the controller's requests to
// drones, and its answers to theirs.

// request sends a request to a drone and decodes its reply. A drone that
// does not answer in time, or at all, is plane.EUNAVAILABLE; a drone's
// error keeps its code.
func (d *Dispatcher) request(ctx context.Context, subject string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, d.RequestTimeout)
	defer cancel()
	m, err := d.NC.RequestWithContext(ctx, subject, data)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return plane.Errorf(plane.EUNAVAILABLE, "drone did not answer (%v)", err)
		}
		return fmt.Errorf("request %s: %w", subject, err)
	}
	var r plane.Reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("decode reply to %s: %w", subject, err)
	}
	return r.Err()
}

// Spawn asks a drone to start a backend.
func (d *Dispatcher) Spawn(ctx context.Context, droneID string, spec plane.SpawnSpec) error {
	return d.request(ctx, plane.SubjectSpawn(droneID), spec)
}

// Terminate asks a drone to stop a backend.
func (d *Dispatcher) Terminate(ctx context.Context, droneID string, req plane.TerminateRequest) error {
	return d.request(ctx, plane.SubjectTerminate(droneID), req)
}

// Drain sets or clears a drone's draining flag.
func (d *Dispatcher) Drain(ctx context.Context, droneID string, draining bool) error {
	return d.request(ctx, plane.SubjectDrain(droneID), plane.DrainRequest{Draining: draining})
}

// Pull asks a drone to pull an image ahead of use.
func (d *Dispatcher) Pull(ctx context.Context, droneID, ref string) error {
	return d.request(ctx, plane.SubjectPull(droneID), plane.PullRequest{ImageRef: ref})
}

// handleConnectKey answers a drone's request for the connect-token key.
func (d *Dispatcher) handleConnectKey(m *nats.Msg) {
	d.respond(m, plane.ConnectKey{PublicKey: d.ConnectKey})
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
