package dispatch

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"plane"
)

func TestBackendIP(t *testing.T) {
	t.Parallel()
	st := newStore([]*plane.Backend{
		{ID: "ready", DroneID: "d1", Status: plane.StatusReady},
		{ID: "starting", DroneID: "d1", Status: plane.StatusStarting},
		{ID: "done", DroneID: "d1", Status: plane.StatusTerminated, TerminationReason: plane.ReasonIdle},
		{ID: "orphan", DroneID: "nowhere", Status: plane.StatusReady},
		{ID: "badaddr", DroneID: "d2", Status: plane.StatusReady},
	}, []*plane.Drone{
		{ID: "d1", Address: "10.0.0.7"},
		{ID: "d2", Address: "not-an-ip"},
	})
	d, _ := newDispatcher(st, nil)
	for _, tc := range []struct {
		id      string
		ip      string // "": none
		wantErr bool
	}{
		{id: "ready", ip: "10.0.0.7"},
		{id: "starting", ip: "10.0.0.7"},
		{id: "done"},
		{id: "unknown"},
		{id: "orphan"},
		{id: "badaddr", wantErr: true},
	} {
		t.Run(tc.id, func(t *testing.T) {
			ip, ok, err := d.BackendIP(t.Context(), tc.id)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if want := tc.ip != ""; ok != want || want && ip != netip.MustParseAddr(tc.ip) {
				t.Errorf("BackendIP = %v, %v; want %q", ip, ok, tc.ip)
			}
		})
	}
}

func TestBackendIPStoreError(t *testing.T) {
	t.Parallel()
	d, _ := newDispatcher(newStore(nil, nil), nil)
	d.Backends = failingBackends{}
	if _, ok, err := d.BackendIP(t.Context(), "a"); err == nil || ok {
		t.Errorf("BackendIP = %v, %v; want the store's error", ok, err)
	}
}

type failingBackends struct{ plane.BackendService }

func (failingBackends) FindBackendByID(context.Context, string) (*plane.Backend, error) {
	return nil, errors.New("store down")
}
