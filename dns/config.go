package dns

import (
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strings"

	"plane"
)

// Default TTLs. Backend names come and go within seconds, so their records
// (and negative answers) must not stay in caches for long; the zone's own
// records change only with its configuration.
const (
	DefaultBackendTTL uint32 = 5
	DefaultTTL        uint32 = 300
)

// maxTTL is the largest TTL RFC 2181 §8 allows.
const maxTTL = math.MaxInt32

// SOA timers. Plane serves no zone transfers, so refresh, retry and expire
// matter only to secondaries someone may set up by other means; the values
// are RFC 1912's usual ones.
const (
	soaRefresh uint32 = 3600
	soaRetry   uint32 = 600
	soaExpire  uint32 = 1209600 // two weeks
)

// Config describes the zone the server is authoritative for.
type Config struct {
	Zone       string                  // e.g. "plane.example.com" (case-insensitive; trailing dot optional)
	NS         []string                // name servers of the zone (host names), for NS and the SOA's mname
	Apex       []netip.Addr            // A (and AAAA for IPv6) records of the zone apex itself; may be empty
	NSAddrs    map[string][]netip.Addr // glue: addresses of name servers inside the zone
	Mbox       string                  // SOA rname, default "hostmaster.<zone>"; "user@domain" is accepted too
	BackendTTL uint32                  // TTL of backend and challenge records, and the negative TTL; default 5
	TTL        uint32                  // TTL of the apex, NS and SOA records; default 300
	Logger     *slog.Logger            // slog.Default() when nil
}

// zone is a validated Config in the form the handler works with: names are
// lowercase and fully qualified.
type zone struct {
	name       string   // "plane.example.com."
	labels     []string // "plane", "example", "com"
	ns         []string // fully qualified name server names, in config order
	apex4      []netip.Addr
	apex6      []netip.Addr
	hosts      map[string][]netip.Addr // in-zone name servers → their addresses
	enclosers  map[string]bool         // names between the apex and a deeper host: they exist, with no records
	mbox       string
	ttl        uint32
	backendTTL uint32
}

// newZone validates cfg. Every error is a plane.EINVALID error that names the
// offending field.
func newZone(cfg Config) (*zone, error) {
	name, err := hostName("zone", cfg.Zone)
	if err != nil {
		return nil, err
	}
	z := &zone{
		name:       name,
		labels:     strings.Split(strings.TrimSuffix(name, "."), "."),
		hosts:      map[string][]netip.Addr{},
		enclosers:  map[string]bool{},
		ttl:        cfg.TTL,
		backendTTL: cfg.BackendTTL,
	}
	if z.ttl == 0 {
		z.ttl = DefaultTTL
	}
	if z.backendTTL == 0 {
		z.backendTTL = DefaultBackendTTL
	}
	if z.ttl > maxTTL {
		return nil, plane.FieldErrorf("ttl", "%d is above the largest TTL, %d", z.ttl, maxTTL)
	}
	if z.backendTTL > maxTTL {
		return nil, plane.FieldErrorf("backend_ttl", "%d is above the largest TTL, %d", z.backendTTL, maxTTL)
	}

	if len(cfg.NS) == 0 {
		return nil, plane.FieldErrorf("ns", "at least one name server is required (it is also the SOA's primary)")
	}
	for _, n := range cfg.NS {
		fq, err := hostName("ns", n)
		if err != nil {
			return nil, err
		}
		if slices.Contains(z.ns, fq) {
			return nil, plane.FieldErrorf("ns", "%q is listed twice", n)
		}
		z.ns = append(z.ns, fq)
	}

	for _, a := range cfg.Apex {
		a, err := usableAddr("apex", a)
		if err != nil {
			return nil, err
		}
		if a.Is4() {
			z.apex4 = appendNew(z.apex4, a)
		} else {
			z.apex6 = appendNew(z.apex6, a)
		}
	}

	for n, addrs := range cfg.NSAddrs {
		fq, err := hostName("ns_addrs", n)
		if err != nil {
			return nil, err
		}
		switch {
		case !slices.Contains(z.ns, fq):
			return nil, plane.FieldErrorf("ns_addrs", "%q is not one of the name servers in ns", n)
		case fq == z.name:
			return nil, plane.FieldErrorf("ns_addrs", "%q is the zone apex: its addresses belong in apex", n)
		case !z.contains(fq):
			return nil, plane.FieldErrorf("ns_addrs", "%q is outside the zone %q: glue is only served for name servers inside it", n, z.name)
		case len(addrs) == 0:
			return nil, plane.FieldErrorf("ns_addrs", "%q has no address", n)
		case len(z.hosts[fq]) > 0:
			return nil, plane.FieldErrorf("ns_addrs", "%q is listed twice", n)
		}
		var list []netip.Addr
		for _, a := range addrs {
			a, err := usableAddr("ns_addrs", a)
			if err != nil {
				return nil, err
			}
			list = appendNew(list, a)
		}
		slices.SortFunc(list, netip.Addr.Compare) // map order must not leak into answers
		z.hosts[fq] = list
	}
	// An in-zone name server without addresses could never be reached: the
	// server would answer NXDOMAIN for its own name.
	for _, n := range z.ns {
		if !z.contains(n) {
			continue
		}
		if n == z.name {
			if len(cfg.Apex) == 0 {
				return nil, plane.FieldErrorf("apex", "name server %q is the zone apex, which then needs an address", n)
			}
			continue
		}
		if len(z.hosts[n]) == 0 {
			return nil, plane.FieldErrorf("ns_addrs", "name server %q is inside the zone and needs an address", n)
		}
		// ns.dns.<zone> makes dns.<zone> exist (an empty non-terminal).
		for p := parentName(n); p != z.name; p = parentName(p) {
			z.enclosers[p] = true
		}
	}

	z.mbox, err = mailbox(cfg.Mbox, z.name)
	if err != nil {
		return nil, err
	}
	return z, nil
}

// contains reports whether the lowercase fully qualified name fq is the apex
// or a name below it.
func (z *zone) contains(fq string) bool {
	return fq == z.name || strings.HasSuffix(fq, "."+z.name)
}

// parentName strips the first label of a fully qualified host name (one
// without escapes, as hostName returns).
func parentName(fq string) string {
	_, rest, _ := strings.Cut(fq, ".")
	return rest
}

// hostName checks that s is a host name (letters, digits and hyphens, in
// labels of at most 63 bytes) and returns it lowercase and fully qualified.
func hostName(field, s string) (string, error) {
	name := strings.TrimSuffix(s, ".")
	if name == "" {
		return "", plane.FieldErrorf(field, "a host name is required")
	}
	if len(name) > 253 {
		return "", plane.FieldErrorf(field, "%q is longer than 253 characters", s)
	}
	for label := range strings.SplitSeq(name, ".") {
		if err := hostLabel(label); err != "" {
			return "", plane.FieldErrorf(field, "%q is not a valid host name: %s", s, err)
		}
	}
	return lower(name) + ".", nil
}

// hostLabel returns what is wrong with one label of a host name, or "".
func hostLabel(label string) string {
	switch {
	case label == "":
		return "it holds an empty label"
	case len(label) > 63:
		return "a label is longer than 63 characters"
	case label[0] == '-' || label[len(label)-1] == '-':
		return "a label starts or ends with a hyphen"
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return "only letters, digits, hyphens and dots are allowed"
		}
	}
	return ""
}

// mailbox returns the SOA rname for s: "hostmaster.<zone>" when s is empty;
// "user@example.com" becomes "user.example.com." (dots of the local part
// escaped); anything else must be a host name.
func mailbox(s, zoneName string) (string, error) {
	if s == "" {
		return "hostmaster." + zoneName, nil
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok {
		return hostName("mbox", s)
	}
	if local == "" || len(local) > 63 {
		return "", plane.FieldErrorf("mbox", "%q: the part before @ must hold 1 to 63 characters", s)
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-_+", c) >= 0) {
			return "", plane.FieldErrorf("mbox", "%q: the part before @ may hold only letters, digits and . - _ +", s)
		}
	}
	d, err := hostName("mbox", domain)
	if err != nil {
		return "", err
	}
	return strings.ReplaceAll(local, ".", `\.`) + "." + d, nil
}

// usableAddr checks an address from the config; IPv4-mapped IPv6 addresses
// become IPv4 so that they are served as A records.
func usableAddr(field string, a netip.Addr) (netip.Addr, error) {
	if !a.IsValid() {
		return netip.Addr{}, plane.FieldErrorf(field, "an address is missing or invalid")
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.Zone() != "" {
		return netip.Addr{}, plane.FieldErrorf(field, "%s is not an address clients can reach", a)
	}
	return a, nil
}

// appendNew appends a to list unless it holds it already: an RRset holds no
// duplicate records (RFC 2181 §5).
func appendNew(list []netip.Addr, a netip.Addr) []netip.Addr {
	if slices.Contains(list, a) {
		return list
	}
	return append(list, a)
}

// lower lowercases ASCII letters only: DNS compares names case-insensitively
// in ASCII (RFC 4343), and other bytes must stay as they are.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
