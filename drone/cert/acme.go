package cert

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/challenge"
	"github.com/go-acme/lego/v4/challenge/dns01"
	"github.com/go-acme/lego/v4/lego"
	"github.com/go-acme/lego/v4/registration"
	"github.com/miekg/dns"

	"plane"
)

// AccountKeyFile is the name of the ACME account key in Config.AccountDir.
const AccountKeyFile = "acme-account.key"

// account is the ACME account: its key, and its registration once made.
type account struct {
	email string
	key   crypto.PrivateKey
	reg   *registration.Resource
	uri   string // of the last registration, kept when reg is dropped
}

var _ registration.User = (*account)(nil)

func (a *account) GetEmail() string                        { return a.email }
func (a *account) GetRegistration() *registration.Resource { return a.reg }
func (a *account) GetPrivateKey() crypto.PrivateKey        { return a.key }

// loadAccountKey reads the account key from dir, creating it on first use.
// The key is what identifies the account to the CA, so it is kept across
// restarts and only ever readable by the drone.
func loadAccountKey(dir string) (crypto.PrivateKey, bool, error) {
	path := filepath.Join(dir, AccountKeyFile)
	data, err := os.ReadFile(path)
	if err == nil {
		key, err := parseKey(data)
		if err != nil {
			return nil, false, fmt.Errorf("account key %s: %w", path, err)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(path, 0o600); err != nil {
				return nil, false, fmt.Errorf("account key %s: %w", path, err)
			}
		}
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("account key: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("account key: %w", err)
	}
	// Write then rename, so that a crash never leaves half a key behind.
	f, err := os.CreateTemp(dir, AccountKeyFile+".*.tmp") // created 0600
	if err != nil {
		return nil, false, fmt.Errorf("account key: %w", err)
	}
	defer os.Remove(f.Name()) //nolint:errcheck // gone after the rename
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("account key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("account key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("account key: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return nil, false, fmt.Errorf("account key: %w", err)
	}
	return key, true, nil
}

// parseKey reads a PEM private key: PKCS#8, or SEC 1 for EC keys.
func parseKey(data []byte) (crypto.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		return x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	}
	return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
}

// orderAsync runs order and returns when it is done or ctx is. lego cannot
// be interrupted: every HTTP request and NATS call of the order fails once
// ctx is done, and what is left of it ends by itself.
func (m *Manager) orderAsync(ctx context.Context) (*bundle, error) {
	type result struct {
		b   *bundle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := m.order(ctx)
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// order places one ACME order for both names and returns the certificate.
func (m *Manager) order(ctx context.Context) (*bundle, error) {
	m.acctMu.Lock()
	defer m.acctMu.Unlock()
	if m.acct == nil {
		key, created, err := loadAccountKey(m.cfg.AccountDir)
		if err != nil {
			return nil, err
		}
		if created {
			m.log.Info("ACME account key created", "path", filepath.Join(m.cfg.AccountDir, AccountKeyFile))
		}
		m.acct = &account{email: m.cfg.Email, key: key}
	}

	lc := lego.NewConfig(m.acct)
	lc.CADirURL = m.cfg.DirectoryURL
	lc.UserAgent = "plane-drone"
	lc.HTTPClient = &http.Client{Timeout: 2 * time.Minute, Transport: ctxTransport{ctx: ctx, base: m.transport}}
	lc.Certificate.KeyType = certcrypto.EC256
	client, err := lego.NewClient(lc)
	if err != nil {
		return nil, fmt.Errorf("ACME directory %s: %w", m.cfg.DirectoryURL, err)
	}

	if m.acct.reg == nil {
		// With a key the CA knows already, this returns its account.
		var reg *registration.Resource
		if m.cfg.EABKeyID != "" {
			reg, err = client.Registration.RegisterWithExternalAccountBinding(registration.RegisterEABOptions{
				TermsOfServiceAgreed: true, Kid: m.cfg.EABKeyID, HmacEncoded: m.cfg.EABHMAC,
			})
		} else {
			reg, err = client.Registration.Register(registration.RegisterOptions{TermsOfServiceAgreed: true})
		}
		if err != nil {
			return nil, fmt.Errorf("register ACME account: %w", err)
		}
		if m.acct.uri != reg.URI {
			m.log.Info("ACME account registered", "account", reg.URI)
		}
		m.acct.reg, m.acct.uri = reg, reg.URI
	}

	p := &dnsProvider{m: m, ctx: ctx, values: map[string]bool{}}
	defer p.clearAll()
	// The resolvers, when given, are the zone's authoritative server:
	// asking them is the propagation check, and the zone's NS names need
	// not resolve from here. The check is ours rather than lego's because
	// lego keeps its resolvers in a package variable, which two Managers
	// in one process (tests) would fight over.
	preCheck := dns01.WrapPreCheck(func(_, fqdn, value string, check dns01.PreCheckFunc) (bool, error) {
		if err := ctx.Err(); err != nil {
			return true, err // stop waiting
		}
		if len(m.cfg.DNSResolvers) == 0 {
			return check(fqdn, value)
		}
		return txtVisible(ctx, m.cfg.DNSResolvers, fqdn, value)
	})
	if err := client.Challenge.SetDNS01Provider(p, preCheck); err != nil {
		return nil, err
	}

	res, err := client.Certificate.Obtain(certificate.ObtainRequest{Domains: m.domains, Bundle: true})
	if err != nil {
		// The account may be gone (a new directory, a reset test CA):
		// registering again is cheap and returns it when it is not.
		m.acct.reg = nil
		return nil, err
	}
	w := plane.CertBundle{
		Domains:  m.domains,
		CertPEM:  res.Certificate,
		KeyPEM:   res.PrivateKey,
		IssuedBy: m.cfg.DroneID,
		IssuedAt: m.cfg.Now().UTC(),
	}
	b, err := checkBundle(w, m.domains, m.cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("the CA's certificate: %w", err)
	}
	return b, nil
}

// ctxTransport ties every request of one order to its context: lego makes
// its requests without one.
type ctxTransport struct {
	ctx  context.Context
	base http.RoundTripper
}

func (t ctxTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.base.RoundTrip(r.WithContext(t.ctx))
}

// dnsProvider is lego's DNS-01 provider: the controller holds the TXT
// values of _acme-challenge.<zone> and its DNS server answers with them.
// Both names of the order use that one name, so two values are set at once.
type dnsProvider struct {
	m   *Manager
	ctx context.Context

	mu     sync.Mutex
	values map[string]bool // set and not cleared yet
}

var _ challenge.ProviderTimeout = (*dnsProvider)(nil)

// challengeValue is the TXT value for a key authorization (RFC 8555 §8.4).
func challengeValue(keyAuth string) string {
	sum := sha256.Sum256([]byte(keyAuth))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (p *dnsProvider) checkDomain(domain string) error {
	if d := strings.ToLower(strings.TrimPrefix(strings.TrimSuffix(domain, "."), "*.")); d != p.m.zone {
		return fmt.Errorf("challenge for %q is outside the zone %q", domain, p.m.zone)
	}
	return nil
}

func (p *dnsProvider) Present(domain, _, keyAuth string) error {
	if err := p.checkDomain(domain); err != nil {
		return err
	}
	value := challengeValue(keyAuth)
	p.mu.Lock()
	p.values[value] = true // cleared even if the answer is lost
	p.mu.Unlock()
	if err := p.m.call(p.ctx, plane.SubjectACMESetTXT, plane.ACMEChallenge{DroneID: p.m.cfg.DroneID, Value: value}); err != nil {
		return fmt.Errorf("set TXT value: %w", err)
	}
	return nil
}

func (p *dnsProvider) CleanUp(domain, _, keyAuth string) error {
	if err := p.checkDomain(domain); err != nil {
		return err
	}
	return p.clear(challengeValue(keyAuth))
}

// clear removes one value, even when the order's context is done: values
// left behind would be served until the controller drops them.
func (p *dnsProvider) clear(value string) error {
	err := p.m.call(context.WithoutCancel(p.ctx), plane.SubjectACMEClearTXT, plane.ACMEChallenge{DroneID: p.m.cfg.DroneID, Value: value})
	if err != nil {
		return fmt.Errorf("clear TXT value: %w", err)
	}
	p.mu.Lock()
	delete(p.values, value)
	p.mu.Unlock()
	return nil
}

// clearAll removes what lego did not clean up (an order that failed early).
func (p *dnsProvider) clearAll() {
	p.mu.Lock()
	var left []string
	for v := range p.values {
		left = append(left, v)
	}
	p.mu.Unlock()
	for _, v := range left {
		if err := p.clear(v); err != nil {
			p.m.log.Warn("TXT value left behind", "err", err)
		}
	}
}

// Timeout tells lego how long to wait for the values to show in DNS.
func (p *dnsProvider) Timeout() (timeout, interval time.Duration) {
	return p.m.cfg.PropagationTimeout, p.m.cfg.PropagationInterval
}

// txtVisible asks each resolver for the TXT records of fqdn and reports
// whether all of them answer with value. Not yet is (false, error) so that
// lego keeps waiting and shows the last reason when it gives up.
func txtVisible(ctx context.Context, resolvers []string, fqdn, value string) (bool, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(fqdn), dns.TypeTXT)
	for _, addr := range resolvers {
		r, err := exchange(ctx, q, addr)
		if err != nil {
			return false, fmt.Errorf("ask %s for %s: %w", addr, fqdn, err)
		}
		if r.Rcode != dns.RcodeSuccess {
			return false, fmt.Errorf("%s answered %s for %s", addr, dns.RcodeToString[r.Rcode], fqdn)
		}
		found := false
		for _, rr := range r.Answer {
			if txt, ok := rr.(*dns.TXT); ok && strings.Join(txt.Txt, "") == value {
				found = true
				break
			}
		}
		if !found {
			return false, fmt.Errorf("%s does not serve the TXT value for %s yet", addr, fqdn)
		}
	}
	return true, nil
}

// exchange sends q over UDP, and again over TCP when the answer is
// truncated (two challenge values with many others may not fit).
func exchange(ctx context.Context, q *dns.Msg, addr string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, _, err := (&dns.Client{Net: "udp"}).ExchangeContext(ctx, q, addr)
	if err == nil && r.Truncated {
		r, _, err = (&dns.Client{Net: "tcp"}).ExchangeContext(ctx, q, addr)
	}
	return r, err
}
