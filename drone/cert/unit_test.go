package cert

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
)

// newTestManager returns a Manager that is never run, for its parts.
func newTestManager(t *testing.T, nc *nats.Conn, edit func(*Config)) *Manager {
	t.Helper()
	if nc == nil {
		nc = &nats.Conn{}
	}
	cfg := Config{
		Zone: testZone, DirectoryURL: "https://127.0.0.1:14000/dir",
		DroneID: "drone-a", NATS: nc, AccountDir: t.TempDir(),
		Logger: testLogger(t),
	}
	if edit != nil {
		edit(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNewChecksConfig(t *testing.T) {
	ok := func(c *Config) {}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // "" = accepted
	}{
		{"valid", ok, ""},
		{"zone with trailing dot and capitals", func(c *Config) { c.Zone = "Cluster.Example.COM." }, ""},
		{"no zone", func(c *Config) { c.Zone = "" }, "zone"},
		{"single-label zone", func(c *Config) { c.Zone = "localhost" }, "zone"},
		{"zone with a wildcard", func(c *Config) { c.Zone = "*.example.com" }, "zone"},
		{"zone with an empty label", func(c *Config) { c.Zone = "a..example.com" }, "zone"},
		{"zone label with a leading hyphen", func(c *Config) { c.Zone = "-a.example.com" }, "zone"},
		{"no directory", func(c *Config) { c.DirectoryURL = "" }, "acme_directory"},
		{"directory without scheme", func(c *Config) { c.DirectoryURL = "acme.example.com/dir" }, "acme_directory"},
		{"directory with another scheme", func(c *Config) { c.DirectoryURL = "ftp://acme.example.com/dir" }, "acme_directory"},
		{"EAB key ID alone", func(c *Config) { c.EABKeyID = "kid" }, "eab"},
		{"EAB HMAC alone", func(c *Config) { c.EABHMAC = "aG1hYw" }, "eab"},
		{"EAB both", func(c *Config) { c.EABKeyID, c.EABHMAC = "kid", "aG1hYw" }, ""},
		{"bad drone ID", func(c *Config) { c.DroneID = "Drone_A" }, "drone_id"},
		{"no NATS", func(c *Config) { c.NATS = nil }, "NATS"},
		{"no account dir", func(c *Config) { c.AccountDir = "" }, "account_dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{
				Zone: testZone, DirectoryURL: "https://acme.example.com/dir",
				DroneID: "drone-a", NATS: &nats.Conn{}, AccountDir: t.TempDir(),
			}
			tc.edit(&cfg)
			m, err := New(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("New accepted the config; want an error about %s", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("New: %v; want an error about %s", err, tc.want)
			}
			if err == nil && (m.cfg.RenewBefore != plane.CertRenewBefore || m.cfg.RetryMin != DefaultRetryMin) {
				t.Errorf("defaults not applied: %+v", m.cfg)
			}
		})
	}
	m := newTestManager(t, nil, func(c *Config) { c.Zone = "Cluster.Example.COM." })
	if got := strings.Join(m.domains, " "); got != "*.cluster.example.com cluster.example.com" {
		t.Errorf("domains = %s", got)
	}
}

func TestCheckBundle(t *testing.T) {
	now := time.Now()
	day := 24 * time.Hour
	domains := plane.CertDomains(testZone)
	good := selfSigned(t, domains, now.Add(-day), now.Add(89*day))
	other := selfSigned(t, domains, now.Add(-day), now.Add(89*day))
	for _, tc := range []struct {
		name string
		b    plane.CertBundle
		want string // "" = valid
	}{
		{"valid", good, ""},
		{"names in capitals", selfSigned(t, []string{"*.CLUSTER.plane.test", "Cluster.Plane.Test"}, now.Add(-day), now.Add(day)), ""},
		{"extra names", selfSigned(t, append([]string{"x.example.com"}, domains...), now.Add(-day), now.Add(day)), ""},
		{"expired", selfSigned(t, domains, now.Add(-90*day), now.Add(-time.Second)), "expired"},
		{"wildcard missing", selfSigned(t, domains[1:], now.Add(-day), now.Add(day)), "does not cover *." + testZone},
		{"apex missing", selfSigned(t, domains[:1], now.Add(-day), now.Add(day)), "does not cover " + testZone},
		{"key of another certificate", plane.CertBundle{CertPEM: good.CertPEM, KeyPEM: other.KeyPEM}, "certificate and key"},
		{"no key", plane.CertBundle{CertPEM: good.CertPEM}, "certificate and key"},
		{"garbage", plane.CertBundle{CertPEM: []byte("junk"), KeyPEM: []byte("junk")}, "certificate and key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := checkBundle(tc.b, domains, now)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !b.wire.NotAfter.Equal(b.leaf.NotAfter) || b.cert.Leaf == nil {
					t.Errorf("bundle not filled in: NotAfter %s, leaf %v", b.wire.NotAfter, b.cert.Leaf != nil)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("checkBundle: %v; want an error about %q", err, tc.want)
			}
			if plane.ErrorCodeOf(err) != plane.EINVALID {
				t.Errorf("error code %s, want %s", plane.ErrorCodeOf(err), plane.EINVALID)
			}
		})
	}

	m := newTestManager(t, nil, nil)
	for _, data := range []string{"", "{", "null", `{"cert_pem":"AA=="}`, string(mustJSON(t, good))[:40]} {
		if _, err := m.decode([]byte(data)); err == nil {
			t.Errorf("decode(%q) accepted it", data)
		}
	}
	if _, err := m.decode(mustJSON(t, good)); err != nil {
		t.Errorf("decode(valid bundle): %v", err)
	}
}

func TestRenewAt(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		name        string
		lifetime    time.Duration
		renewBefore time.Duration
		want        time.Duration // before expiry
	}{
		{"90 days", 90 * day, plane.CertRenewBefore, 30 * day},
		{"a year", 365 * day, plane.CertRenewBefore, 30 * day},
		{"six days: a third left", 6 * day, plane.CertRenewBefore, 2 * day},
		{"short RenewBefore", 90 * day, time.Hour, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := checkBundle(selfSigned(t, plane.CertDomains(testZone), start, start.Add(tc.lifetime)), plane.CertDomains(testZone), start)
			if err != nil {
				t.Fatal(err)
			}
			if got := b.notAfter().Sub(b.renewAt(tc.renewBefore)); got != tc.want {
				t.Errorf("renewed %s before expiry, want %s", got, tc.want)
			}
		})
	}
}

// TestBackoff: failed attempts wait RetryMin, doubling up to RetryMax, and
// show in Status; a fresh certificate clears them.
func TestBackoff(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := newTestManager(t, nil, func(c *Config) { c.Now = func() time.Time { return now } })
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute,
		16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour, time.Hour}
	for i, w := range want {
		if got := m.fail(context.Background(), errors.New("boom\nsecond line")); got != w {
			t.Errorf("attempt %d: backoff %s, want %s", i+1, got, w)
		}
	}
	st := m.Status()
	if st.LastError != "boom; second line" || !st.NextAttempt.Equal(now.Add(time.Hour)) || st.NotAfter != nil {
		t.Errorf("Status = %+v", st)
	}
	m.settled(now.Add(time.Minute))
	if st := m.Status(); st.LastError != "" || !st.NextAttempt.Equal(now.Add(time.Minute)) {
		t.Errorf("after a fresh certificate: Status = %+v", st)
	}
	if got := m.fail(context.Background(), errors.New("again")); got != 30*time.Second {
		t.Errorf("backoff after a success %s, want it to start over", got)
	}
}

func TestAccountKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "drone")
	k1, created, err := loadAccountKey(dir)
	if err != nil || !created {
		t.Fatalf("first load: created %v, %v", created, err)
	}
	path := filepath.Join(dir, AccountKeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	k2, created, err := loadAccountKey(dir)
	if err != nil || created {
		t.Fatalf("second load: created %v, %v", created, err)
	}
	if !k1.(*ecdsa.PrivateKey).Equal(k2) {
		t.Error("the key changed between loads")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after reload %v, want 0600 again", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the account dir, want the key alone", len(entries))
	}

	// A key in SEC 1 form (as other tools write it) is read too.
	der, err := x509.MarshalECPrivateKey(k1.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if k3, _, err := loadAccountKey(dir); err != nil || !k1.(*ecdsa.PrivateKey).Equal(k3) {
		t.Errorf("SEC 1 key: %v", err)
	}

	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadAccountKey(dir); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("corrupt key: %v; want an error naming the file", err)
	}
}

// TestProviderOverNATS: the DNS-01 provider sends the TXT value of a key
// authorization on the set and clear subjects, refuses names outside the
// zone, and clears what is left behind.
func TestProviderOverNATS(t *testing.T) {
	s := MustRunNATS(t)
	nc := MustConnect(t, s)
	var mu sync.Mutex
	var got []string
	for _, subject := range []string{plane.SubjectACMESetTXT, plane.SubjectACMEClearTXT} {
		if _, err := nc.Subscribe(subject, func(msg *nats.Msg) {
			ch, err := plane.Decode[plane.ACMEChallenge](msg.Data)
			mu.Lock()
			got = append(got, msg.Subject+" "+ch.DroneID+" "+ch.Value)
			mu.Unlock()
			data, _ := json.Marshal(plane.ReplyOf(err))
			_ = msg.Respond(data)
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The server has the subscriptions before the manager's connection,
	// another one, sends its first request (else: no responders).
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	m := newTestManager(t, MustConnect(t, s), nil)
	p := &dnsProvider{m: m, ctx: context.Background(), values: map[string]bool{}}

	// RFC 8555 §8.4: base64url(SHA-256(key authorization)), unpadded.
	const keyAuth = "token.thumbprint"
	const value = "61rBZ_4knHblO0MNoxFsXZ_eTFUHum0B6IVRbhvUn5I"
	if v := challengeValue(keyAuth); v != value {
		t.Fatalf("challengeValue = %s, want %s", v, value)
	}
	if err := p.Present(testZone, "token", keyAuth); err != nil {
		t.Fatal(err)
	}
	if err := p.Present("*."+strings.ToUpper(testZone)+".", "token2", "other"); err != nil {
		t.Fatal(err)
	}
	if err := p.Present("evil.test", "token", keyAuth); err == nil {
		t.Error("Present accepted a name outside the zone")
	}
	if err := p.CleanUp(testZone, "token", keyAuth); err != nil {
		t.Fatal(err)
	}
	p.clearAll()
	mu.Lock()
	defer mu.Unlock()
	other := challengeValue("other")
	want := []string{
		plane.SubjectACMESetTXT + " drone-a " + value,
		plane.SubjectACMESetTXT + " drone-a " + other,
		plane.SubjectACMEClearTXT + " drone-a " + value,
		plane.SubjectACMEClearTXT + " drone-a " + other,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if timeout, interval := p.Timeout(); timeout != DefaultPropagationTimeout || interval != DefaultPropagationInterval {
		t.Errorf("Timeout() = %s, %s", timeout, interval)
	}
}

// TestPublishKeepsNewer: storing is conditional on the revision read before
// ordering; a newer certificate stored meanwhile is kept, an older one is
// replaced.
func TestPublishKeepsNewer(t *testing.T) {
	s := MustRunNATS(t)
	nc := MustConnect(t, s)
	kv := MustCreateBucket(t, nc)
	m := newTestManager(t, nc, nil)
	ctx := context.Background()
	now := time.Now()
	day := 24 * time.Hour
	mk := func(until time.Duration) *bundle {
		b, err := checkBundle(selfSigned(t, plane.CertDomains(testZone), now.Add(-day), now.Add(until)), m.domains, now)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	old, mine, newer := mk(10*day), mk(80*day), mk(89*day)

	// Absent: created.
	if got, err := m.publish(ctx, kv, old, nil); err != nil || got != old {
		t.Fatalf("publish into an empty bucket: %v", err)
	}
	seen, err := getEntry(ctx, kv)
	if err != nil || seen == nil {
		t.Fatal(err)
	}
	// Someone stores a newer certificate while "mine" is being ordered.
	if _, err := kv.Put(ctx, plane.CertKey, mustJSON(t, newer.wire)); err != nil {
		t.Fatal(err)
	}
	got, err := m.publish(ctx, kv, mine, seen)
	if err != nil || !got.same(newer) {
		t.Fatalf("publish over a newer certificate: got %v, %v; want the newer one kept", got, err)
	}
	if stored, _ := bucketBundle(t, kv); !bytes.Equal(stored.CertPEM, newer.wire.CertPEM) {
		t.Error("the newer certificate was overwritten")
	}

	// Someone stores an older one meanwhile: mine replaces it.
	seen, _ = getEntry(ctx, kv)
	if _, err := kv.Put(ctx, plane.CertKey, mustJSON(t, old.wire)); err != nil {
		t.Fatal(err)
	}
	newest := mk(89*day + time.Hour)
	if got, err := m.publish(ctx, kv, newest, seen); err != nil || got != newest {
		t.Fatalf("publish over an older certificate: %v", err)
	}
	if stored, _ := bucketBundle(t, kv); !bytes.Equal(stored.CertPEM, newest.wire.CertPEM) {
		t.Error("the bucket does not hold the newest certificate")
	}
	// Created meanwhile where there was none: compared too.
	if err := kv.Delete(ctx, plane.CertKey); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, plane.CertKey, mustJSON(t, newest.wire)); err != nil {
		t.Fatal(err)
	}
	if got, err := m.publish(ctx, kv, mine, nil); err != nil || !got.same(newest) {
		t.Fatalf("publish after a concurrent create: got %v, %v", got, err)
	}
}

// TestStatusCoherentOnAdopt: the moment Status shows a certificate, its
// next attempt is that certificate's renewal time, not whatever the loop
// was waiting for before (CI saw the old lease re-check time in between).
func TestStatusCoherentOnAdopt(t *testing.T) {
	m := newTestManager(t, nil, nil)
	now := time.Now()
	day := 24 * time.Hour
	m.setNext(now) // the loop was about to look again at once
	b, err := checkBundle(selfSigned(t, plane.CertDomains(testZone), now.Add(-day), now.Add(89*day)), m.domains, now)
	if err != nil {
		t.Fatal(err)
	}
	m.adopt(b)
	st := m.Status()
	if st.NotAfter == nil || !st.NextAttempt.Equal(b.renewAt(m.cfg.RenewBefore)) {
		t.Errorf("Status after adopt = %+v, want next attempt at renewal %s", st, b.renewAt(m.cfg.RenewBefore))
	}

	// A certificate this drone could not store yet keeps the retry time.
	m.mu.Lock()
	m.pending, m.next = b, now.Add(time.Minute)
	m.mu.Unlock()
	b2, _ := checkBundle(selfSigned(t, plane.CertDomains(testZone), now.Add(-day), now.Add(88*day)), m.domains, now)
	m.adopt(b2)
	if st := m.Status(); !st.NextAttempt.Equal(now.Add(time.Minute)) {
		t.Errorf("Status with a pending store = %+v, want the retry time kept", st)
	}
}

// TestTXTVisible: the propagation check asks every resolver, real DNS
// packets to our DNS server, and waits until all of them serve the value.
func TestTXTVisible(t *testing.T) {
	ctrl := &standInController{values: map[string]string{"value-a": "drone-a"}}
	up := MustRunDNS(t, ctrl).Addr()
	down := func() string { // a port nobody answers on
		s := MustRunDNS(t, ctrl)
		addr := s.Addr()
		_ = s.Close()
		return addr
	}()
	fqdn := "_acme-challenge." + testZone + "."
	for _, tc := range []struct {
		name      string
		resolvers []string
		fqdn      string
		value     string
		want      bool
		errHas    string
	}{
		{"served", []string{up}, fqdn, "value-a", true, ""},
		{"served by both", []string{up, up}, fqdn, "value-a", true, ""},
		{"not yet", []string{up}, fqdn, "value-b", false, "does not serve the TXT value"},
		{"outside the zone", []string{up}, "_acme-challenge.elsewhere.test.", "value-a", false, "REFUSED"},
		{"one resolver down", []string{up, down}, fqdn, "value-a", false, "ask " + down},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := txtVisible(ctx, tc.resolvers, tc.fqdn, tc.value)
			if got != tc.want || (tc.errHas == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.errHas)) {
				t.Errorf("txtVisible = %v, %v; want %v and an error with %q", got, err, tc.want, tc.errHas)
			}
		})
	}
}
