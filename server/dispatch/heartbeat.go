package dispatch

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
)

// handleHeartbeat records a drone's heartbeat, then reconciles what it runs
// with the store (reconcile.go). A heartbeat that does not decode,
// or speaks a protocol version this controller does not, is ignored.
func (d *Dispatcher) handleHeartbeat(m *nats.Msg) {
	hb, err := plane.Decode[plane.Heartbeat](m.Data)
	if err != nil {
		d.Logger.Warn("invalid heartbeat", "err", err)
		return
	}
	d.noteProtocol(hb)
	d.pools.record(hb, d.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dr := droneOf(hb, d.Now())
	if err := d.Drones.UpsertDrone(ctx, dr); err != nil {
		d.Logger.Error("record heartbeat", "drone", hb.DroneID, "err", err)
	}
	if !d.singleton() {
		return // the controller that holds the lease reconciles and announces
	}
	d.announceDrone(ctx, dr)
	d.syncPools(ctx, hb)
	if err := d.reconcile(ctx, hb); err != nil {
		d.Logger.Error("compare drone backends", "drone", hb.DroneID, "err", err)
	}
}

// announceDrone publishes a drone's new state on the bus. Every controller
// records each heartbeat; the lease holder alone announces it, once for
// the cluster.
func (d *Dispatcher) announceDrone(ctx context.Context, dr *plane.Drone) {
	if d.Bus == nil {
		return
	}
	if err := d.Bus.Publish(ctx, plane.Event{Kind: plane.EventDrone, Drone: dr}); err != nil {
		d.Logger.Warn("announce a drone's change", "drone", dr.ID, "err", err)
	}
}

// droneOf is the drone record a heartbeat received at now makes.
func droneOf(hb plane.Heartbeat, now time.Time) *plane.Drone {
	status := plane.DroneReady
	switch {
	case hb.Stopping:
		status = plane.DroneStopped
	case hb.Draining:
		status = plane.DroneDraining
	}
	return &plane.Drone{
		ID:              hb.DroneID,
		Address:         hb.Address,
		ProxyAddress:    hb.ProxyAddress,
		Version:         hb.Version,
		ProtocolVersion: hb.ProtocolVersion,
		Status:          status,
		Draining:        hb.Draining,
		Capacity:        hb.Capacity,
		Backends:        len(hb.LiveBackends),
		CPUPercent:      hb.CPUPercent,
		MemoryBytes:     hb.MemoryBytes,
		Images:          hb.Images,
		CertNotAfter:    hb.CertNotAfter,
		CertError:       hb.CertError,
		ProxyError:      hb.ProxyError,
		LastHeartbeat:   now, // our clock, not the drone's: staleness is judged here
	}
}

// protocols remembers each drone's protocol version, to log a change once.
type protocols struct {
	mu sync.Mutex
	m  map[string]int
}

// note records a drone's version and reports whether it changed (or is
// the first seen).
func (p *protocols) note(droneID string, version int) (changed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]int{}
	}
	old, ok := p.m[droneID]
	p.m[droneID] = version
	return !ok || old != version
}

// noteProtocol logs, once for each drone and version, a drone that speaks
// the previous protocol version: it is served, and should be upgraded.
func (d *Dispatcher) noteProtocol(hb plane.Heartbeat) {
	if d.proto.note(hb.DroneID, hb.ProtocolVersion) && hb.ProtocolVersion < plane.ProtocolVersion {
		d.Logger.Warn("drone speaks the previous protocol version: it is served, upgrade it",
			"drone", hb.DroneID, "drone_protocol", hb.ProtocolVersion, "protocol", plane.ProtocolVersion, "drone_version", hb.Version)
	}
}
