package dispatch

import (
	"context"
	"fmt"
	"net/netip"

	"plane"
)

// The Dispatcher is the DNS server's record source (dns.Source): A records
// from the store (which drone runs a live backend, at which address), TXT
// records from the ACME challenges (acme.go).

// BackendIP returns the address of the drone that runs the live backend id;
// ok is false when no live backend has that id, or its drone is unknown.
func (d *Dispatcher) BackendIP(ctx context.Context, id string) (ip netip.Addr, ok bool, err error) {
	b, err := d.Backends.FindBackendByID(ctx, id)
	if plane.ErrorCodeOf(err) == plane.ENOTFOUND {
		return netip.Addr{}, false, nil
	} else if err != nil {
		return netip.Addr{}, false, err
	}
	if !b.Status.Live() {
		return netip.Addr{}, false, nil
	}
	dr, err := d.Drones.FindDroneByID(ctx, b.DroneID)
	if plane.ErrorCodeOf(err) == plane.ENOTFOUND {
		return netip.Addr{}, false, nil
	} else if err != nil {
		return netip.Addr{}, false, err
	}
	ip, err = netip.ParseAddr(dr.Address)
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("drone %s has no usable address %q: %w", dr.ID, dr.Address, err)
	}
	return ip, true, nil
}
