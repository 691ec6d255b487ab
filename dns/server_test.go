package dns

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"

	mdns "github.com/miekg/dns"

	"plane"
)

func TestNewValidatesConfig(t *testing.T) {
	addr := netip.MustParseAddr
	tests := []struct {
		name   string
		change func(c *Config)
		want   string // part of the error message
	}{
		{"no zone", func(c *Config) { c.Zone = "" }, "zone: a host name is required"},
		{"root zone", func(c *Config) { c.Zone = "." }, "zone: a host name is required"},
		{"zone with a space", func(c *Config) { c.Zone = "plane example.com" }, `zone: "plane example.com" is not a valid host name`},
		{"zone with an empty label", func(c *Config) { c.Zone = "plane..example.com" }, "empty label"},
		{"zone label too long", func(c *Config) { c.Zone = strings.Repeat("a", 64) + ".com" }, "longer than 63"},
		{"zone label with hyphen at the end", func(c *Config) { c.Zone = "plane-.example.com" }, "hyphen"},
		{"no name server", func(c *Config) { c.NS = nil }, "ns: at least one name server is required"},
		{"bad name server", func(c *Config) { c.NS = []string{"ns_1.example.net"} }, `ns: "ns_1.example.net" is not a valid host name`},
		{"name server twice", func(c *Config) { c.NS = append(c.NS, "NS1.plane.example.com.") }, "listed twice"},
		{"invalid apex address", func(c *Config) { c.Apex = []netip.Addr{{}} }, "apex: an address is missing or invalid"},
		{"unspecified apex address", func(c *Config) { c.Apex = []netip.Addr{addr("0.0.0.0")} }, "apex: 0.0.0.0 is not an address clients can reach"},
		{"glue for an unknown name server", func(c *Config) {
			c.NSAddrs["ns2.plane.example.com"] = []netip.Addr{addr("192.0.2.2")}
		}, `ns_addrs: "ns2.plane.example.com" is not one of the name servers`},
		{"glue outside the zone", func(c *Config) {
			c.NSAddrs["ns.other-provider.example.net"] = []netip.Addr{addr("192.0.2.2")}
		}, "outside the zone"},
		{"glue without address", func(c *Config) { c.NSAddrs["ns1.plane.example.com"] = nil }, "has no address"},
		{"in-zone name server without glue", func(c *Config) { c.NSAddrs = nil }, `ns_addrs: name server "ns1.plane.example.com." is inside the zone and needs an address`},
		{"apex name server without apex address", func(c *Config) {
			c.NS = []string{"plane.example.com"}
			c.NSAddrs = nil
			c.Apex = nil
		}, "apex: name server"},
		{"glue for the apex", func(c *Config) {
			c.NS = []string{"plane.example.com"}
			c.NSAddrs = map[string][]netip.Addr{"plane.example.com": {addr("192.0.2.2")}}
		}, "belong in apex"},
		{"bad mbox", func(c *Config) { c.Mbox = "hostmaster example.com" }, "mbox:"},
		{"bad mbox local part", func(c *Config) { c.Mbox = "host master@example.com" }, "mbox:"},
		{"TTL too large", func(c *Config) { c.TTL = 1 << 31 }, "ttl: 2147483648 is above the largest TTL"},
		{"backend TTL too large", func(c *Config) { c.BackendTTL = 1 << 31 }, "backend_ttl:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(discardLogger())
			tt.change(&cfg)
			s, err := New(cfg, newFakeSource())
			if err == nil {
				s.Close()
				t.Fatalf("New accepted the config, want an error containing %q", tt.want)
			}
			if !isInvalid(err) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q (code %q), want an invalid error containing %q", err, plane.ErrorCodeOf(err), tt.want)
			}
		})
	}

	t.Run("no source", func(t *testing.T) {
		if _, err := New(testConfig(nil), nil); !isInvalid(err) {
			t.Errorf("error %v, want an invalid error", err)
		}
	})
}

func TestNewNormalizes(t *testing.T) {
	cfg := Config{
		Zone: "Plane.Localhost",
		NS:   []string{"plane.localhost"},
		Apex: []netip.Addr{netip.MustParseAddr("::ffff:127.0.0.1"), netip.MustParseAddr("127.0.0.1")},
		Mbox: "first.last@Example.com",
	}
	s, err := New(cfg, newFakeSource())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	z := s.zone
	if z.name != "plane.localhost." || z.ns[0] != "plane.localhost." {
		t.Errorf("zone %q, ns %q", z.name, z.ns)
	}
	if len(z.apex4) != 1 || len(z.apex6) != 0 {
		t.Errorf("apex %v %v, want one IPv4 address (the mapped one is the same)", z.apex4, z.apex6)
	}
	if z.mbox != `first\.last.example.com.` {
		t.Errorf("mbox %q", z.mbox)
	}
	if z.ttl != DefaultTTL || z.backendTTL != DefaultBackendTTL {
		t.Errorf("ttl %d, backend ttl %d", z.ttl, z.backendTTL)
	}
	if s.logger == nil {
		t.Error("no default logger")
	}

	def, err := New(testConfig(nil), newFakeSource())
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	if def.zone.mbox != "hostmaster.plane.example.com." {
		t.Errorf("default mbox %q", def.zone.mbox)
	}
}

// TestZoneWithDeepNameServer shows that a name server two labels below the
// apex is served, and the name between them exists without records.
func TestZoneWithDeepNameServer(t *testing.T) {
	cfg := testConfig(discardLogger())
	cfg.NS = []string{"ns.dns.plane.example.com"}
	cfg.NSAddrs = map[string][]netip.Addr{"ns.dns.plane.example.com": {netip.MustParseAddr("192.0.2.53")}}
	s, err := New(cfg, newFakeSource())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		name    string
		rcode   int
		answers int
	}{
		{"ns.dns.plane.example.com.", mdns.RcodeSuccess, 1},
		{"dns.plane.example.com.", mdns.RcodeSuccess, 0},
		{"x.dns.plane.example.com.", mdns.RcodeNameError, 0},
	}
	for _, tt := range tests {
		w := &recorder{}
		s.ServeDNS(w, query(tt.name, mdns.TypeA))
		if r := w.msgs[0]; r.Rcode != tt.rcode || len(r.Answer) != tt.answers || !r.Authoritative {
			t.Errorf("%s: %v", tt.name, r)
		}
	}
}

func TestOpenClose(t *testing.T) {
	s := newTestServer(t, newFakeSource(), discardLogger())
	if s.Addr() != "" {
		t.Errorf("Addr before Open = %q", s.Addr())
	}
	if err := s.Open("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(s.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr = %q, %v", s.Addr(), err)
	}
	// Both protocols on the one port.
	for _, network := range []string{"udp", "tcp"} {
		if r := exchange(t, network, s.Addr(), query("plane.example.com.", mdns.TypeSOA)); r.Rcode != mdns.RcodeSuccess {
			t.Errorf("%s: %v", network, r)
		}
	}
	if err := s.Open("127.0.0.1:0"); err == nil {
		t.Error("a second Open succeeded")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Open("127.0.0.1:0"); err == nil {
		t.Error("Open after Close succeeded")
	}
	// The port is free again: nothing listens on it.
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		t.Errorf("the TCP port is still taken after Close: %v", err)
	} else {
		ln.Close()
	}
}

func TestOpenErrors(t *testing.T) {
	// A TCP port that is taken, on a fixed port: no retry.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)

	for _, addr := range []string{"127.0.0.1:" + port, "no-port", "127.0.0.1:99999"} {
		s := newTestServer(t, newFakeSource(), discardLogger())
		if err := s.Open(addr); err == nil {
			t.Errorf("Open(%q) succeeded", addr)
		} else if !strings.Contains(err.Error(), "dns") {
			t.Errorf("Open(%q): error %q names no context", addr, err)
		}
		if s.Addr() != "" {
			t.Errorf("Open(%q) failed but Addr = %q", addr, s.Addr())
		}
	}
}

// TestCloseWithoutOpen checks that a server that never listened closes.
func TestCloseWithoutOpen(t *testing.T) {
	s, err := New(testConfig(nil), newFakeSource())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRetriesTakenPort makes the TCP side of the first ports picked
// collide and checks that Open moves on to another port, and gives up after
// listenAttempts tries.
func TestOpenRetriesTakenPort(t *testing.T) {
	defer func(orig func(string, string) (net.Listener, error)) { listenTCP = orig }(listenTCP)
	tests := []struct {
		collisions int
		ok         bool
	}{
		{0, true},
		{3, true},
		{listenAttempts, false},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.collisions), func(t *testing.T) {
			var tried []string
			listenTCP = func(network, addr string) (net.Listener, error) {
				tried = append(tried, addr)
				if len(tried) <= tt.collisions {
					return nil, &net.OpError{Op: "listen", Net: network, Err: syscall.EADDRINUSE}
				}
				return net.Listen(network, addr)
			}
			s := newTestServer(t, newFakeSource(), discardLogger())
			err := s.Open("127.0.0.1:0")
			if !tt.ok {
				if err == nil || !strings.Contains(err.Error(), "address already in use") {
					t.Fatalf("Open = %v, want the collision reported", err)
				}
				if len(tried) != listenAttempts {
					t.Errorf("%d tries, want %d", len(tried), listenAttempts)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Real collisions may add tries: the port UDP picks can be a
			// TCP client's, which is why Open retries at all.
			if len(tried) < tt.collisions+1 || tried[len(tried)-1] != s.Addr() {
				t.Errorf("tried %q, serving on %s", tried, s.Addr())
			}
			for _, network := range []string{"udp", "tcp"} {
				exchange(t, network, s.Addr(), query("plane.example.com.", mdns.TypeSOA))
			}
		})
	}

	t.Run("other error", func(t *testing.T) {
		calls := 0
		listenTCP = func(network, addr string) (net.Listener, error) {
			calls++
			return nil, &net.OpError{Op: "listen", Net: network, Err: syscall.EACCES}
		}
		s := newTestServer(t, newFakeSource(), discardLogger())
		if err := s.Open("127.0.0.1:0"); err == nil || calls != 1 {
			t.Errorf("Open = %v after %d tries, want an error after one", err, calls)
		}
	})
}
