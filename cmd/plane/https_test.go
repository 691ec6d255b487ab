package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"plane/drone/cert/certtest"
)

// httpsZone is the zone of the HTTPS tests: Pebble refuses names under
// .localhost, and accepts this one.
const httpsZone = "cluster.plane.test"

// certTimeout bounds the wait for a certificate: an order against the
// in-process Pebble takes a few seconds.
const certTimeout = 60 * time.Second

// httpsCluster is a cluster for httpsZone whose drones serve HTTPS with
// certificates from Pebble, which checks the DNS-01 challenges against the
// controller's DNS server.
type httpsCluster struct {
	*cluster
	pebble    *certtest.Pebble
	rootsFile string // Pebble's HTTPS roots, for the drones' --acme-ca-roots
}

func newHTTPSCluster(t *testing.T, opts certtest.Options) *httpsCluster {
	t.Helper()
	c := &httpsCluster{cluster: newCluster(t, clusterOpts{domain: httpsZone, noDrone: true})}
	c.pebble = certtest.StartPebble(t, c.ctrl.DNS.Addr(), opts)
	c.rootsFile = filepath.Join(t.TempDir(), "pebble-roots.pem")
	if err := os.WriteFile(c.rootsFile, c.pebble.RootsPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// startHTTPSDrone starts a drone that listens for HTTPS and orders its
// certificate from Pebble.
func (c *httpsCluster) startHTTPSDrone(id string) *Drone {
	c.t.Helper()
	return c.startDrone(id, func(cfg *DroneConfig) {
		cfg.HTTPSAddr = "127.0.0.1:0"
		cfg.ACME = ACMEConfig{
			Directory: c.pebble.DirectoryURL,
			Email:     "ops@" + httpsZone,
			CARoots:   c.rootsFile,
			Resolvers: []string{c.ctrl.DNS.Addr()},
		}
	})
}

// waitCert waits until the drone serves a certificate, and until its
// heartbeat has told the controller when that certificate expires.
func (c *httpsCluster) waitCert(id string, d *Drone) {
	c.t.Helper()
	eventually(c.t, certTimeout, "a certificate on drone "+id, func() bool { return d.Proxy.Certificate() != nil })
	c.waitCertHealth(id, d.Proxy.Certificate().Leaf)
}

// waitCertHealth waits until the drone's heartbeat reports leaf's expiry
// and no certificate error.
func (c *httpsCluster) waitCertHealth(id string, leaf *x509.Certificate) {
	c.t.Helper()
	eventually(c.t, 10*time.Second, "drone "+id+" to report its certificate in heartbeats", func() bool {
		dr, err := c.ctrl.DB.FindDroneByID(context.Background(), id)
		// The store keeps milliseconds.
		return err == nil && dr.CertNotAfter != nil && dr.CertNotAfter.Sub(leaf.NotAfter).Abs() < time.Millisecond && dr.CertError == ""
	})
}

// httpsAddr is where the drone's HTTPS proxy listens.
func httpsAddr(d *Drone) string { return d.httpsLn.Addr().String() }

// tlsConfig trusts Pebble's issuing root alone and asks for name.
func (c *httpsCluster) tlsConfig(name string) *tls.Config {
	return &tls.Config{RootCAs: c.pebble.RootPool(), ServerName: name}
}

// httpsClientTo sends every request to addr, a drone's HTTPS listener,
// over TLS with cfg, whatever the URL's host says.
func httpsClientTo(addr string, cfg *tls.Config) *http.Client {
	client := proxyClientTo(addr)
	client.Transport.(*http.Transport).TLSClientConfig = cfg
	return client
}

// handshake connects to addr with cfg and returns the certificate served,
// verified by the handshake against cfg's roots for cfg's server name.
func handshake(addr string, cfg *tls.Config) (*x509.Certificate, error) {
	d := tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

func mustHandshake(t testing.TB, addr string, cfg *tls.Config) *x509.Certificate {
	t.Helper()
	leaf, err := handshake(addr, cfg)
	if err != nil {
		t.Fatalf("TLS handshake with %s for %s: %v", addr, cfg.ServerName, err)
	}
	return leaf
}

// TestHTTPSCertificate: two drones of a cluster get the wildcard certificate
// of the zone from Pebble with one order between them, serve it, and proxy
// a backend over HTTPS; plain HTTP redirects to HTTPS.
func TestHTTPSCertificate(t *testing.T) {
	c := newHTTPSCluster(t, certtest.Options{})
	ids := []string{"t" + randHex(5), "t" + randHex(5)}
	drones := map[string]*Drone{}
	for _, id := range ids {
		drones[id] = c.startHTTPSDrone(id)
	}
	for _, id := range ids {
		c.waitCert(id, drones[id])
	}

	t.Run("one order, the same certificate on both drones", func(t *testing.T) {
		if n := c.pebble.Orders(); n != 1 {
			t.Errorf("%d ACME orders for two drones, want 1", n)
		}
		var serials []string
		for _, id := range ids {
			leaf := mustHandshake(t, httpsAddr(drones[id]), c.tlsConfig(httpsZone))
			serials = append(serials, leaf.SerialNumber.String())
		}
		if serials[0] != serials[1] {
			t.Errorf("drones serve serials %v, want one certificate", serials)
		}
	})

	t.Run("names", func(t *testing.T) {
		leaf := drones[ids[0]].Proxy.Certificate().Leaf
		if got, want := slices.Sorted(slices.Values(leaf.DNSNames)), []string{"*." + httpsZone, httpsZone}; !slices.Equal(got, want) {
			t.Errorf("certificate names %v, want %v", got, want)
		}
		for _, tc := range []struct {
			name string
			ok   bool
		}{
			{httpsZone, true},
			{"abc123." + httpsZone, true},
			{"ABC123." + strings.ToUpper(httpsZone), true},
			{"a.b." + httpsZone, false},
			{"elsewhere.test", false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				leaf, err := handshake(httpsAddr(drones[ids[0]]), c.tlsConfig(tc.name))
				if tc.ok && err != nil {
					t.Errorf("handshake: %v", err)
				}
				if !tc.ok && err == nil {
					t.Errorf("handshake verified a certificate for %v", leaf.DNSNames)
				}
			})
		}
	})

	_, b := c.spawn(map[string]any{"image": "demo", "user": "alice", "wait": true})
	d := drones[b.Drone]
	if d == nil {
		t.Fatalf("backend %s is on drone %q, not one of %v", b.ID, b.Drone, ids)
	}
	name := b.ID + "." + httpsZone
	cookie := tokenCookie(c.connectToken(b.ID, "alice", time.Hour))

	t.Run("HTTPS to the backend", func(t *testing.T) {
		client := httpsClientTo(httpsAddr(d), c.tlsConfig(name))
		resp, body := c.proxyGet(t, client, "https://"+name+"/", cookie)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), b.ID) {
			t.Fatalf("GET /: %d %.200s", resp.StatusCode, body)
		}
		if resp.TLS == nil || len(resp.TLS.VerifiedChains) == 0 {
			t.Fatal("the response came without a verified chain")
		}
		leaf := resp.TLS.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, ic := range resp.TLS.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: c.pebble.RootPool(), Intermediates: inter}); err != nil {
			t.Errorf("served certificate does not verify against Pebble's root: %v", err)
		}

		resp, body = c.proxyGet(t, client, "https://"+name+"/headers", cookie)
		var got struct {
			Headers http.Header `json:"headers"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("GET /headers: %d %v: %.200s", resp.StatusCode, err, body)
		}
		if p := got.Headers.Values("X-Forwarded-Proto"); !slices.Equal(p, []string{"https"}) {
			t.Errorf("backend saw X-Forwarded-Proto %q, want https", p)
		}
	})

	t.Run("plain HTTP redirects to HTTPS", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(httpsAddr(d))
		_, proxyPort, _ := net.SplitHostPort(d.ProxyAddr())
		for _, path := range []string{"/", "/some/path?a=1&b=2"} {
			resp, _ := c.proxyGet(t, proxyClientTo(d.ProxyAddr()), "http://"+name+":"+proxyPort+path, cookie)
			want := "https://" + name + ":" + port + path
			if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
				t.Errorf("GET %s: %d Location %q, want 308 to %s", path, resp.StatusCode, resp.Header.Get("Location"), want)
			}
		}
	})

	if n := c.pebble.Orders(); n != 1 {
		t.Errorf("%d ACME orders by the end, want 1", n)
	}
}

// TestHTTPSCertRenewalKeepsWebSocket (last of the ACME tests: its drone
// keeps renewing, and an order cut short by the end of the test may hold
// the process-wide order slot a while): Pebble issues certificates that
// live seconds, so the drone renews while a WebSocket through its HTTPS
// proxy is open; new handshakes get the new certificate, and the WebSocket
// goes on.
func TestHTTPSCertRenewalKeepsWebSocket(t *testing.T) {
	// Renewed a third of its lifetime ahead, about 20 s after issue: an
	// order takes a few seconds, so the new certificate comes well before
	// the old one expires.
	c := newHTTPSCluster(t, certtest.Options{Validity: 30 * time.Second})
	id := "t" + randHex(5)
	d := c.startHTTPSDrone(id)
	_, b := c.spawn(map[string]any{"image": "demo", "user": "alice", "wait": true})
	c.waitCert(id, d)
	name := b.ID + "." + httpsZone

	// The WebSocket's handshake records the certificate it was served.
	var wsSerial atomic.Pointer[string]
	cfg := c.tlsConfig(name)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		s := cs.PeerCertificates[0].SerialNumber.String()
		wsSerial.CompareAndSwap(nil, &s)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*certTimeout)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "wss://"+name+"/ws",
		&websocket.DialOptions{HTTPClient: httpsClientTo(httpsAddr(d), cfg), HTTPHeader: tokenCookie(c.connectToken(b.ID, "alice", time.Hour))})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("websocket: %v (status %d)", err, status)
	}
	defer ws.CloseNow()
	echo := func(msg string) error {
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			return err
		}
		_, got, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		if string(got) != msg {
			return fmt.Errorf("echo %q, want %q", got, msg)
		}
		return nil
	}
	if err := echo("before the renewal"); err != nil {
		t.Fatal(err)
	}
	old := *wsSerial.Load()

	var renewed *x509.Certificate
	eventually(t, certTimeout, "a handshake with a renewed certificate", func() bool {
		leaf, err := handshake(httpsAddr(d), c.tlsConfig(name))
		if err == nil && leaf.SerialNumber.String() != old {
			renewed = leaf
		}
		return renewed != nil
	})
	if err := echo("after the renewal"); err != nil {
		t.Fatalf("the WebSocket opened with certificate %s broke when %s came: %v", old, renewed.SerialNumber, err)
	}
	if n := c.pebble.Orders(); n < 2 {
		t.Errorf("%d ACME orders, want at least 2", n)
	}
	c.waitCertHealth(id, renewed)
	ws.Close(websocket.StatusNormalClosure, "")
}
