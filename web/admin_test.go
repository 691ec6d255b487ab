package web

import (
	"testing"
	"time"

	"plane"
)

func TestDroneRows(t *testing.T) {
	expiry := t0.Add(60 * 24 * time.Hour)
	ds := []*plane.Drone{
		{ID: "d1", Address: "10.0.0.1", ProxyAddress: "10.0.0.1:443", Version: "v1.2.0", Status: plane.DroneReady, Capacity: 20, Backends: 3,
			CPUPercent: 12.5, MemoryBytes: 3 << 30, CertNotAfter: &expiry, LastHeartbeat: t0.Add(-2 * time.Second)},
		{ID: "d2", Address: "10.0.0.2", Version: "v1.2.0", Status: plane.DroneDraining, Draining: true, Capacity: 20, LastHeartbeat: t0.Add(-10 * time.Second),
			CertError: "acme: rate limited"},
		{ID: "d3", Address: "10.0.0.3", Version: "v1.1.0", ProtocolVersion: plane.ProtocolVersion - 1, Status: plane.DroneLost, LastHeartbeat: t0.Add(-5 * time.Minute)},
		{ID: "d4", Address: "10.0.0.4", Version: "v1.2.0", Status: plane.DroneReady, LastHeartbeat: t0.Add(-time.Second),
			ProxyError: "proxy cannot accept connections since 2026-01-02T03:04:05Z: too many open files"},
	}
	golden(t, "drone-rows", DroneRows("csrf-token", ds, t0))
	golden(t, "drone-rows-empty", DroneRows("csrf-token", nil, t0))
}

func TestAdminBackendRows(t *testing.T) {
	bs := []*plane.Backend{backendAt(plane.StatusReady), backendAt(plane.StatusTerminated)}
	bs[1].ProjectID = 8
	golden(t, "admin-backend-rows", AdminBackendRows(bs, map[int64]string{7: "app"}, t0.Add(time.Minute)))
}
