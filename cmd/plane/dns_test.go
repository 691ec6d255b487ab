package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"plane"
)

// The controller's DNS server resolves a live backend's name to its drone's
// address, over UDP and TCP, and forgets it once the backend terminates.
func TestControllerDNS(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	_, b := c.spawn(map[string]any{"image": "demo", "wait": true})
	query := func(net, name string) *mdns.Msg {
		t.Helper()
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		cl := &mdns.Client{Net: net, Timeout: 5 * time.Second}
		r, _, err := cl.Exchange(m, c.ctrl.DNS.Addr())
		if err != nil {
			t.Fatalf("%s query %s: %v", net, name, err)
		}
		return r
	}
	for _, net := range []string{"udp", "tcp"} {
		for _, name := range []string{b.ID + ".plane.localhost", strings.ToUpper(b.ID) + ".Plane.LocalHost"} {
			r := query(net, name)
			if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 || !r.Authoritative {
				t.Fatalf("%s %s: %v", net, name, r)
			}
			if a, ok := r.Answer[0].(*mdns.A); !ok || a.A.String() != "127.0.0.1" {
				t.Errorf("%s %s: answer %v, want the drone's 127.0.0.1", net, name, r.Answer[0])
			}
		}
	}
	c.call(http.MethodPost, "/api/v1/backends/"+b.ID+"/terminate", map[string]bool{"hard": true})
	c.waitStatus(b.ID, plane.StatusTerminated, 15*time.Second)
	if r := query("udp", b.ID+".plane.localhost"); r.Rcode != mdns.RcodeNameError {
		t.Errorf("after terminate: %v, want NXDOMAIN", r)
	}
}
