package main

import (
	"context"
	"fmt"
	"net/netip"

	"plane"
	"plane/dns"
	"plane/server/dispatch"
	"plane/server/sqlite"
)

// dnsSource answers the DNS server's questions from the controller's store
// (which drone runs a live backend, and at which address) and the
// dispatcher's ACME challenges.
type dnsSource struct {
	db   *sqlite.DB
	disp *dispatch.Dispatcher
}

var _ dns.Source = dnsSource{}

func (s dnsSource) BackendIP(ctx context.Context, id string) (netip.Addr, bool, error) {
	b, err := s.db.FindBackendByID(ctx, id)
	if plane.ErrorCodeOf(err) == plane.ENOTFOUND {
		return netip.Addr{}, false, nil
	} else if err != nil {
		return netip.Addr{}, false, err
	}
	if !b.Status.Live() {
		return netip.Addr{}, false, nil
	}
	d, err := s.db.FindDroneByID(ctx, b.DroneID)
	if plane.ErrorCodeOf(err) == plane.ENOTFOUND {
		return netip.Addr{}, false, nil
	} else if err != nil {
		return netip.Addr{}, false, err
	}
	ip, err := netip.ParseAddr(d.Address)
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("drone %s has no usable address %q: %w", d.ID, d.Address, err)
	}
	return ip, true, nil
}

func (s dnsSource) Challenges(ctx context.Context) ([]string, error) { return s.disp.Challenges(ctx) }
