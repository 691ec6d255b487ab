package cert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plane"
	"plane/dns"
	"plane/drone/cert/certtest"
)

// testZone is the cluster zone of the tests.
const testZone = "cluster.plane.test"

// waitTimeout bounds every wait of the tests: an order against the
// in-process Pebble takes a few seconds.
const waitTimeout = 60 * time.Second

// waitFor polls cond until it holds, failing the test at the deadline.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		<-tick.C
	}
}

func testLogger(tb testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// MustRunNATS starts a nats-server with JetStream on a random loopback port.
func MustRunNATS(tb testing.TB) *natsserver.Server {
	tb.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: natsserver.RANDOM_PORT,
		JetStream: true, StoreDir: tb.TempDir(),
		NoSigs: true, NoLog: true,
	})
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server did not start")
	}
	tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// MustConnect opens a NATS connection to s, closed at the end of the test.
func MustConnect(tb testing.TB, s *natsserver.Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// MustCreateBucket creates the certificate bucket, as the controller does.
func MustCreateBucket(tb testing.TB, nc *nats.Conn) jetstream.KeyValue {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	kv, err := js.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: plane.CertBucket})
	if err != nil {
		tb.Fatal(err)
	}
	return kv
}

// standInController plays the controller's side of the plane.acme.*
// subjects for this package's tests only (the real one is in server/): it
// grants the ordering lease to one drone at a time and keeps the TXT values
// of _acme-challenge.<zone>, which it serves to the DNS server as its Source.
type standInController struct {
	mu       sync.Mutex
	holder   string
	expires  time.Time
	values   map[string]string // TXT value → drone that set it
	grants   int               // leases granted to a drone that did not hold it
	sets     int               // TXT values set
	setCalls int               // set requests, refused ones included
	maxHeld  int               // most values held at once
	refuse   string            // when set, TXT set requests fail with this message
}

var _ dns.Source = (*standInController)(nil)

// startStandInController subscribes the stand-in on nc.
func startStandInController(tb testing.TB, nc *nats.Conn) *standInController {
	tb.Helper()
	c := &standInController{values: map[string]string{}}
	for subject, handle := range map[string]func([]byte) any{
		plane.SubjectACMELease:    c.handleLease,
		plane.SubjectACMESetTXT:   c.handleSet,
		plane.SubjectACMEClearTXT: c.handleClear,
	} {
		sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
			data, _ := json.Marshal(handle(m.Data))
			_ = m.Respond(data)
		})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	return c
}

func (c *standInController) handleLease(data []byte) any {
	req, err := plane.Decode[plane.ACMELeaseRequest](data)
	if err != nil {
		return plane.ACMELease{Error: err.Error()}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if req.Release {
		if c.holder == req.DroneID {
			c.holder = ""
		}
		return plane.ACMELease{}
	}
	if c.holder != "" && c.holder != req.DroneID && now.Before(c.expires) {
		return plane.ACMELease{Holder: c.holder, ExpiresAt: c.expires}
	}
	if c.holder != req.DroneID {
		c.grants++
	}
	c.holder, c.expires = req.DroneID, now.Add(plane.ACMELeaseTTL)
	return plane.ACMELease{Granted: true, Holder: c.holder, ExpiresAt: c.expires}
}

func (c *standInController) handleSet(data []byte) any {
	ch, err := plane.Decode[plane.ACMEChallenge](data)
	if err != nil {
		return plane.ReplyOf(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setCalls++
	switch {
	case c.refuse != "":
		return plane.ReplyOf(plane.Errorf(plane.EUNAVAILABLE, "%s", c.refuse))
	case c.holder != ch.DroneID || time.Now().After(c.expires):
		return plane.ReplyOf(plane.Errorf(plane.EFORBIDDEN, "drone %s does not hold the ordering lease", ch.DroneID))
	case len(c.values) >= plane.MaxChallengeValues:
		return plane.ReplyOf(plane.Errorf(plane.EUNAVAILABLE, "too many challenge values"))
	}
	c.values[ch.Value] = ch.DroneID
	c.sets++
	c.maxHeld = max(c.maxHeld, len(c.values))
	return plane.ReplyOf(nil)
}

func (c *standInController) handleClear(data []byte) any {
	ch, err := plane.Decode[plane.ACMEChallenge](data)
	if err != nil {
		return plane.ReplyOf(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.values[ch.Value] == ch.DroneID {
		delete(c.values, ch.Value)
	}
	return plane.ReplyOf(nil)
}

func (c *standInController) BackendIP(context.Context, string) (netip.Addr, bool, error) {
	return netip.Addr{}, false, nil
}

func (c *standInController) Challenges(context.Context) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var vs []string
	for v := range c.values {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs, nil
}

// state reads the stand-in under its lock.
func (c *standInController) state() (holder string, values, grants, sets, setCalls, maxHeld int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holder, len(c.values), c.grants, c.sets, c.setCalls, c.maxHeld
}

func (c *standInController) setRefuse(msg string) {
	c.mu.Lock()
	c.refuse = msg
	c.mu.Unlock()
}

// MustRunDNS starts our DNS server for testZone on a random loopback port,
// answering challenges from src.
func MustRunDNS(tb testing.TB, src dns.Source) *dns.Server {
	tb.Helper()
	ns := "ns1." + testZone
	s, err := dns.New(dns.Config{
		Zone:    testZone,
		NS:      []string{ns},
		NSAddrs: map[string][]netip.Addr{ns: {netip.MustParseAddr("127.0.0.1")}},
		Logger:  slog.New(slog.DiscardHandler),
	}, src)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Open("127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// testEnv is one cluster: NATS, the stand-in controller, our DNS server
// and Pebble.
type testEnv struct {
	NATS   *natsserver.Server
	NC     *nats.Conn // the controller's connection
	Ctrl   *standInController
	DNS    *dns.Server
	Pebble *certtest.Pebble
}

func newTestEnv(tb testing.TB, opts certtest.Options) *testEnv {
	tb.Helper()
	e := &testEnv{NATS: MustRunNATS(tb)}
	e.NC = MustConnect(tb, e.NATS)
	e.Ctrl = startStandInController(tb, e.NC)
	e.DNS = MustRunDNS(tb, e.Ctrl)
	e.Pebble = certtest.StartPebble(tb, e.DNS.Addr(), opts)
	return e
}

// certSeen records what OnCert was called with.
type certSeen struct {
	mu      sync.Mutex
	bundles []plane.CertBundle
	serials []string
}

func (s *certSeen) onCert(c *tls.Certificate, b plane.CertBundle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bundles = append(s.bundles, b)
	s.serials = append(s.serials, c.Leaf.SerialNumber.String())
}

func (s *certSeen) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.serials)
}

func (s *certSeen) get(i int) (string, plane.CertBundle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serials[i], s.bundles[i]
}

// drone is one Manager under test, with its own NATS connection.
type drone struct {
	M    *Manager
	Seen *certSeen
	Dir  string
}

// startDrone runs a Manager for droneID against e until the end of the test.
func (e *testEnv) startDrone(tb testing.TB, droneID string, edit func(*Config)) *drone {
	tb.Helper()
	d := &drone{Seen: &certSeen{}, Dir: tb.TempDir()}
	cfg := Config{
		Zone:                testZone,
		DirectoryURL:        e.Pebble.DirectoryURL,
		Email:               "ops@" + testZone,
		CARoots:             e.Pebble.Roots,
		DNSResolvers:        []string{e.DNS.Addr()},
		DroneID:             droneID,
		NATS:                MustConnect(tb, e.NATS),
		AccountDir:          d.Dir,
		OnCert:              d.Seen.onCert,
		Logger:              testLogger(tb).With("test_drone", droneID),
		RetryMin:            100 * time.Millisecond,
		RetryMax:            time.Second,
		LeaseRetry:          50 * time.Millisecond,
		PropagationInterval: 50 * time.Millisecond,
		PropagationTimeout:  20 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	d.M = m
	run(tb, m)
	return d
}

// run runs m until the end of the test, and checks that Run returns then.
func run(tb testing.TB, m *Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			tb.Errorf("Run did not return after its context was cancelled")
		}
	})
}

// selfSigned makes a bundle with a self-signed certificate for names, valid
// from notBefore to notAfter: a certificate that did not come from Pebble.
func selfSigned(tb testing.TB, names []string, notBefore, notAfter time.Time) plane.CertBundle {
	tb.Helper()
	c := certtest.SelfSigned(tb, &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		DNSNames:    names,
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		tb.Fatal(err)
	}
	return plane.CertBundle{
		Domains:  names,
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		NotAfter: notAfter,
		IssuedBy: "someone-else",
		IssuedAt: notBefore,
	}
}

// leafOf parses the first certificate of a bundle.
func leafOf(tb testing.TB, b plane.CertBundle) *x509.Certificate {
	tb.Helper()
	block, _ := pem.Decode(b.CertPEM)
	if block == nil {
		tb.Fatal("bundle holds no PEM certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// bucketBundle reads the bundle stored under plane.CertKey.
func bucketBundle(tb testing.TB, kv jetstream.KeyValue) (plane.CertBundle, uint64) {
	tb.Helper()
	e, err := kv.Get(context.Background(), plane.CertKey)
	if err != nil {
		tb.Fatal(err)
	}
	var b plane.CertBundle
	if err := json.Unmarshal(e.Value(), &b); err != nil {
		tb.Fatal(err)
	}
	return b, e.Revision()
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}
