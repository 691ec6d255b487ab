package webhook

import (
	"fmt"
	"net/netip"
)

// Server-side request forgery: a webhook's URL is the user's, and the
// controller sends to it from inside the cluster's network. Unless the
// instance allows it (AllowPrivate, for a cluster whose endpoints live on
// its own network, and tests), an address of these ranges is refused: the
// controller's own machine, private networks, link-local (where cloud
// metadata services answer), and addresses that are no one's in
// particular. Addresses that embed an IPv4 address (mapped, NAT64, 6to4)
// are checked as that address.

type refusedRange struct {
	prefix netip.Prefix
	what   string
}

var refusedRanges = func() []refusedRange {
	list := []struct{ cidr, what string }{
		{"0.0.0.0/8", "an unspecified (this-network)"},
		{"10.0.0.0/8", "a private"},
		{"100.64.0.0/10", "a shared (carrier-grade NAT)"},
		{"127.0.0.0/8", "a loopback"},
		{"169.254.0.0/16", "a link-local"},
		{"172.16.0.0/12", "a private"},
		{"192.0.0.0/24", "an IETF protocol"},
		{"192.168.0.0/16", "a private"},
		{"198.18.0.0/15", "a benchmarking"},
		{"224.0.0.0/4", "a multicast"},
		{"240.0.0.0/4", "a reserved (or broadcast)"},
		{"::/128", "an unspecified"},
		{"::1/128", "a loopback"},
		{"::/96", "an IPv4-compatible (deprecated)"},
		{"100::/64", "a discard-only"},
		{"fc00::/7", "a private (unique local)"},
		{"fe80::/10", "a link-local"},
		{"fec0::/10", "a site-local (deprecated)"},
		{"ff00::/8", "a multicast"},
	}
	rs := make([]refusedRange, len(list))
	for i, r := range list {
		rs[i] = refusedRange{netip.MustParsePrefix(r.cidr), r.what}
	}
	return rs
}()

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// RefusedError is an address a webhook is not sent to, and why.
type RefusedError struct {
	Addr netip.Addr
	Why  string // "is a loopback address"
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused: %s %s (this instance sends webhooks to public addresses only)", e.Addr, e.Why)
}

// CheckAddr returns a *RefusedError for an address of the refused ranges,
// or nil.
func CheckAddr(a netip.Addr) error {
	if why := refusal(a); why != "" {
		return &RefusedError{Addr: a, Why: why}
	}
	return nil
}

func refusal(a netip.Addr) string {
	if !a.IsValid() {
		return "is not an IP address"
	}
	a = a.WithZone("").Unmap() // a zone matches no prefix; ::ffff:a.b.c.d is a.b.c.d
	if v4, ok := embeddedV4(a); ok {
		if why := refusal(v4); why != "" {
			return fmt.Sprintf("embeds %s, which %s", v4, why)
		}
	}
	for _, r := range refusedRanges {
		if r.prefix.Contains(a) {
			return "is " + r.what + " address"
		}
	}
	return ""
}

// embeddedV4 is the IPv4 address a NAT64 or 6to4 address routes to.
func embeddedV4(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	switch {
	case !a.Is6():
		return netip.Addr{}, false
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}
