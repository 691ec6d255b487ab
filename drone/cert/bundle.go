package cert

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"slices"
	"strings"
	"time"

	"plane"
)

// bundle is a CertBundle that has been checked: its certificate and key
// parse, match, cover the cluster's names and have not expired.
type bundle struct {
	wire plane.CertBundle
	cert *tls.Certificate
	leaf *x509.Certificate
}

func (b *bundle) notAfter() time.Time { return b.leaf.NotAfter }

// renewAt is when the certificate is due: renewBefore ahead of its expiry,
// or a third of its lifetime ahead when that is shorter. Let's Encrypt's
// 90-day certificates are renewed 30 days ahead either way; a short-lived
// one (days, or minutes from a test CA) is not renewed the moment it arrives.
func (b *bundle) renewAt(renewBefore time.Duration) time.Time {
	lifetime := b.leaf.NotAfter.Sub(b.leaf.NotBefore)
	return b.leaf.NotAfter.Add(-min(renewBefore, lifetime/3))
}

// same reports whether both hold the same certificate.
func (b *bundle) same(o *bundle) bool { return o != nil && bytes.Equal(b.leaf.Raw, o.leaf.Raw) }

// decode parses and checks a bundle read from the bucket.
func (m *Manager) decode(data []byte) (*bundle, error) {
	w, err := plane.Decode[plane.CertBundle](data)
	if err != nil {
		return nil, err
	}
	return checkBundle(w, m.domains, m.cfg.Now())
}

// checkBundle checks that w holds a certificate usable for domains at now.
func checkBundle(w plane.CertBundle, domains []string, now time.Time) (*bundle, error) {
	cert, err := tls.X509KeyPair(w.CertPEM, w.KeyPEM)
	if err != nil {
		return nil, plane.Errorf(plane.EINVALID, "certificate and key: %v", err)
	}
	leaf := cert.Leaf
	if leaf == nil { // GODEBUG x509keypairleaf=0
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, plane.Errorf(plane.EINVALID, "certificate: %v", err)
		}
		cert.Leaf = leaf
	}
	for _, d := range domains {
		if !slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return strings.EqualFold(n, d) }) {
			return nil, plane.Errorf(plane.EINVALID, "certificate does not cover %s (it covers %s)", d, strings.Join(leaf.DNSNames, ", "))
		}
	}
	if !now.Before(leaf.NotAfter) {
		return nil, plane.Errorf(plane.EINVALID, "certificate expired at %s", leaf.NotAfter.Format(time.RFC3339))
	}
	w.NotAfter = leaf.NotAfter // the certificate is the authority
	if err := w.Validate(); err != nil {
		return nil, err
	}
	return &bundle{wire: w, cert: &cert, leaf: leaf}, nil
}

// adopt makes b the current certificate and hands it to OnCert, unless it
// is the current one already. It wakes the loop, which then knows when the
// next renewal is due.
func (m *Manager) adopt(b *bundle) {
	m.cbMu.Lock()
	defer m.cbMu.Unlock()
	m.mu.Lock()
	if b.same(m.cur) {
		m.mu.Unlock()
		return
	}
	m.cur = b
	if m.pending == nil {
		// Status shows the certificate and when it is renewed together;
		// the loop, woken below, settles on the same time.
		m.next = b.renewAt(m.cfg.RenewBefore)
	}
	m.mu.Unlock()
	m.log.Info("certificate in use", "not_after", b.notAfter(), "serial", b.leaf.SerialNumber.String(), "issued_by", b.wire.IssuedBy)
	if m.cfg.OnCert != nil {
		m.cfg.OnCert(b.cert, b.wire)
	}
	m.poke()
}
