package cert

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"plane"
	"plane/drone/cert/certtest"
)

// verifyChain checks that b chains to root and serves the zone, any name
// directly below it, and nothing deeper.
func verifyChain(t *testing.T, b plane.CertBundle, root *x509.Certificate) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	var leaf *x509.Certificate
	for rest := b.CertPEM; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if leaf == nil {
			leaf = c
		} else {
			inter.AddCert(c)
		}
	}
	for _, name := range []string{testZone, "abc123." + testZone, "ANOTHER." + strings.ToUpper(testZone)} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}); err != nil {
			t.Errorf("certificate does not verify for %s against Pebble's root: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "a.b." + testZone, Roots: roots, Intermediates: inter}); err == nil {
		t.Errorf("certificate verifies for a.b.%s, two labels below the zone", testZone)
	}
}

// TestIssueWildcard: a drone that starts before the controller has created
// the bucket waits for it, then orders *.<zone> and <zone> in one order with
// External Account Binding, both TXT values being served at once.
func TestIssueWildcard(t *testing.T) {
	t.Parallel() // each test has its own CA, NATS and DNS; the time is spent waiting
	hmac := base64.RawURLEncoding.EncodeToString([]byte("an-hmac-key-of-32-bytes-for-eab!"))
	e := newTestEnv(t, certtest.Options{EAB: map[string]string{"kid-1": hmac}})
	d := e.startDrone(t, "drone-a", func(c *Config) { c.EABKeyID, c.EABHMAC = "kid-1", hmac })

	waitFor(t, "the missing bucket to show in Status", func() bool {
		return strings.Contains(d.M.Status().LastError, plane.CertBucket)
	})
	kv := MustCreateBucket(t, e.NC)
	waitFor(t, "a certificate", func() bool { return d.Seen.count() > 0 })

	serial, b := d.Seen.get(0)
	verifyChain(t, b, e.Pebble.Root())
	stored, _ := bucketBundle(t, kv)
	if leafOf(t, stored).SerialNumber.String() != serial {
		t.Errorf("the bucket holds serial %s, OnCert got %s", leafOf(t, stored).SerialNumber, serial)
	}
	if stored.IssuedBy != "drone-a" || len(stored.Domains) != 2 {
		t.Errorf("stored bundle: issued by %q for %v", stored.IssuedBy, stored.Domains)
	}
	if !stored.NotAfter.Equal(leafOf(t, stored).NotAfter) {
		t.Errorf("stored NotAfter %s, certificate's %s", stored.NotAfter, leafOf(t, stored).NotAfter)
	}

	waitFor(t, "the lease to be released", func() bool { h, _, _, _, _, _ := e.Ctrl.state(); return h == "" })
	_, values, grants, sets, _, maxHeld := e.Ctrl.state()
	if values != 0 {
		t.Errorf("%d TXT values left behind", values)
	}
	if grants != 1 || sets != 2 || maxHeld != 2 {
		t.Errorf("lease grants %d, TXT sets %d, most TXT values at once %d; want 1, 2, 2", grants, sets, maxHeld)
	}
	if n := e.Pebble.Orders(); n != 1 {
		t.Errorf("%d ACME orders, want 1", n)
	}

	waitFor(t, "Status to show the certificate", func() bool { return d.M.Status().NotAfter != nil })
	st := d.M.Status()
	notAfter := leafOf(t, stored).NotAfter
	if !st.NotAfter.Equal(notAfter) || st.LastError != "" {
		t.Errorf("Status = %+v, want NotAfter %s and no error", st, notAfter)
	}
	if want := notAfter.Add(-plane.CertRenewBefore); st.NextAttempt.Sub(want).Abs() > time.Second {
		t.Errorf("next attempt %s, want 30 days before expiry (%s)", st.NextAttempt, want)
	}

	fi, err := os.Stat(filepath.Join(d.Dir, AccountKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("account key mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestOneOrderForTwoDrones: two drones need a certificate at once; one
// orders, and the other gets the same certificate through the bucket.
func TestOneOrderForTwoDrones(t *testing.T) {
	t.Parallel() // each test has its own CA, NATS and DNS; the time is spent waiting
	e := newTestEnv(t, certtest.Options{})
	MustCreateBucket(t, e.NC)
	a := e.startDrone(t, "drone-a", nil)
	b := e.startDrone(t, "drone-b", nil)

	waitFor(t, "both drones to get a certificate", func() bool { return a.Seen.count() > 0 && b.Seen.count() > 0 })
	sa, ba := a.Seen.get(0)
	sb, _ := b.Seen.get(0)
	if sa != sb {
		t.Errorf("drone-a got serial %s, drone-b %s", sa, sb)
	}
	verifyChain(t, ba, e.Pebble.Root())
	if n := e.Pebble.Orders(); n != 1 {
		t.Errorf("%d ACME orders, want 1", n)
	}
	if _, _, _, sets, _, _ := e.Ctrl.state(); sets != 2 {
		t.Errorf("%d TXT values set, want 2 (one order)", sets)
	}
	for _, d := range []*drone{a, b} {
		if n := d.Seen.count(); n != 1 {
			t.Errorf("OnCert called %d times, want 1", n)
		}
	}
	// Only the drone that ordered has an ACME account.
	var keys int
	for _, d := range []*drone{a, b} {
		if _, err := os.Stat(filepath.Join(d.Dir, AccountKeyFile)); err == nil {
			keys++
		}
	}
	if keys != 1 {
		t.Errorf("%d drones created an account key, want 1", keys)
	}
}

// TestReplacesStoredCertificate: the bucket holds a certificate that is
// about to expire, has expired, or is for other names. A drone serves the
// first while it orders a new one, and replaces each in the bucket (an
// update at the revision it read).
func TestReplacesStoredCertificate(t *testing.T) {
	t.Parallel() // each test has its own CA, NATS and DNS; the time is spent waiting
	now := time.Now()
	day := 24 * time.Hour
	for _, tc := range []struct {
		name             string
		names            []string
		notBefore, until time.Time
		served           bool // OnCert gets it before the new one
	}{
		{"expires in ten days", plane.CertDomains(testZone), now.Add(-80 * day), now.Add(10 * day), true},
		{"expired", plane.CertDomains(testZone), now.Add(-90 * day), now.Add(-time.Hour), false},
		{"other names", []string{"*.elsewhere.test", "elsewhere.test"}, now.Add(-day), now.Add(80 * day), false},
		{"apex only", []string{testZone}, now.Add(-day), now.Add(80 * day), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEnv(t, certtest.Options{})
			kv := MustCreateBucket(t, e.NC)
			old := selfSigned(t, tc.names, tc.notBefore, tc.until)
			if _, err := kv.Create(context.Background(), plane.CertKey, mustJSON(t, old)); err != nil {
				t.Fatal(err)
			}
			oldSerial := leafOf(t, old).SerialNumber.String()

			d := e.startDrone(t, "drone-a", nil)
			want := 1
			if tc.served {
				want = 2
			}
			waitFor(t, "the new certificate", func() bool { return d.Seen.count() >= want })
			if tc.served {
				if s0, _ := d.Seen.get(0); s0 != oldSerial {
					t.Errorf("first OnCert got serial %s, want the stored certificate's %s", s0, oldSerial)
				}
			}
			serial, renewed := d.Seen.get(want - 1)
			if serial == oldSerial {
				t.Fatal("OnCert got the stored certificate last")
			}
			verifyChain(t, renewed, e.Pebble.Root())
			stored, rev := bucketBundle(t, kv)
			if leafOf(t, stored).SerialNumber.String() != serial || rev != 2 {
				t.Errorf("bucket holds serial %s at revision %d, want %s at 2", leafOf(t, stored).SerialNumber, rev, serial)
			}
			if n := e.Pebble.Orders(); n != 1 {
				t.Errorf("%d ACME orders, want 1", n)
			}
			if n := d.Seen.count(); n != want {
				t.Errorf("OnCert called %d times, want %d", n, want)
			}
		})
	}
}

// TestOrderFailureBacksOff: while the controller refuses TXT values, every
// attempt fails, shows in Status and is retried after a backoff; once it
// accepts them, the certificate is issued and the error is gone.
func TestOrderFailureBacksOff(t *testing.T) {
	t.Parallel() // each test has its own CA, NATS and DNS; the time is spent waiting
	e := newTestEnv(t, certtest.Options{})
	MustCreateBucket(t, e.NC)
	e.Ctrl.setRefuse("TXT updates are refused by the test")
	d := e.startDrone(t, "drone-a", nil)

	// Every attempt is a new order; lego gives up on it when the first
	// TXT value is refused.
	waitFor(t, "three failed attempts", func() bool { return e.Pebble.Orders() >= 3 })
	st := d.M.Status()
	if !strings.Contains(st.LastError, "TXT updates are refused by the test") {
		t.Errorf("LastError = %q, want the controller's refusal", st.LastError)
	}
	if st.NotAfter != nil || st.NextAttempt.IsZero() || strings.Contains(st.LastError, "\n") {
		t.Errorf("Status = %+v, want no certificate, a next attempt and a one-line error", st)
	}
	if d.Seen.count() != 0 {
		t.Error("OnCert called without a certificate")
	}
	waitFor(t, "the lease to be released", func() bool { h, _, _, _, _, _ := e.Ctrl.state(); return h == "" })

	e.Ctrl.setRefuse("")
	waitFor(t, "a certificate once TXT values are accepted", func() bool { return d.Seen.count() > 0 })
	waitFor(t, "the error to clear", func() bool { return d.M.Status().LastError == "" })
	if _, values, _, _, _, _ := e.Ctrl.state(); values != 0 {
		t.Errorf("%d TXT values left behind", values)
	}
}

// TestRenewsWhenDue: with Pebble issuing short-lived certificates, the drone
// wakes up when the renewal time of its certificate comes, orders a new one
// and hands it to OnCert, reusing its ACME account key.
func TestRenewsWhenDue(t *testing.T) {
	t.Parallel() // each test has its own CA, NATS and DNS; the time is spent waiting
	// Renewed at a third of its lifetime left: the first order must end
	// before then (it takes a second or two), and the test waits for it.
	e := newTestEnv(t, certtest.Options{Validity: 5 * time.Second})
	kv := MustCreateBucket(t, e.NC)
	d := e.startDrone(t, "drone-a", nil)

	waitFor(t, "a first certificate", func() bool { return d.Seen.count() >= 1 })
	keyPath := filepath.Join(d.Dir, AccountKeyFile)
	key1, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	s0, b0 := d.Seen.get(0)
	waitFor(t, "the renewed certificate", func() bool { return d.Seen.count() >= 2 })
	s1, b1 := d.Seen.get(1)
	if s0 == s1 {
		t.Error("the renewal has the same serial")
	}
	if !leafOf(t, b1).NotAfter.After(leafOf(t, b0).NotAfter) {
		t.Errorf("renewed certificate expires %s, the first %s", leafOf(t, b1).NotAfter, leafOf(t, b0).NotAfter)
	}
	first := leafOf(t, b0)
	if renewAt := first.NotAfter.Add(-first.NotAfter.Sub(first.NotBefore) / 3); leafOf(t, b1).NotBefore.Before(renewAt.Add(-time.Second)) {
		t.Errorf("renewed at %s, before the first certificate was due (%s)", leafOf(t, b1).NotBefore, renewAt)
	}
	verifyChain(t, b1, e.Pebble.Root())
	if stored, _ := bucketBundle(t, kv); leafOf(t, stored).NotAfter.Before(leafOf(t, b1).NotAfter) {
		t.Errorf("the bucket holds a certificate expiring %s, before the renewal's %s", leafOf(t, stored).NotAfter, leafOf(t, b1).NotAfter)
	}
	key2, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(key1) != string(key2) {
		t.Error("the account key changed between orders")
	}
}
