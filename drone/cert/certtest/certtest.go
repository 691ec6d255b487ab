// Package certtest gives tests an ACME server, Pebble, running in their own
// process, as httptest gives them an HTTP server. It does not import
// plane/drone/cert, so that package's own tests can use it.
package certtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	pebbledb "github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// Options configure StartPebble.
type Options struct {
	// EAB maps External Account Binding key IDs to their base64url HMAC
	// keys; when set, every new account must be bound to one.
	EAB map[string]string
	// Validity is the lifetime of the certificates Pebble issues, in whole
	// seconds; 0 is Pebble's default of 90 days.
	Validity time.Duration
}

// Pebble is an ACME server (Pebble's CA, VA and web front end) serving its
// API over HTTPS on a random loopback port until the end of the test.
type Pebble struct {
	DirectoryURL string         // the ACME directory
	Roots        *x509.CertPool // trust for its HTTPS
	RootsPEM     []byte         // the same, PEM-encoded, for configuration files and flags
	ca           *ca.CAImpl
	orders       atomic.Int64
}

var pebbleEnv sync.Once

// StartPebble builds Pebble as its main does, with the VA resolving every
// name (for DNS-01 challenges) through the DNS server at dnsAddr.
//
// It sets Pebble's environment variables for the whole test process, the
// same for every Pebble (no validation delays, no rejected nonces, no
// reused authorizations, so that every order sets its TXT values): tests
// may run their Pebbles in parallel.
func StartPebble(tb testing.TB, dnsAddr string, opts Options) *Pebble {
	tb.Helper()
	pebbleEnv.Do(func() {
		// Pebble reads these when the VA and WFE are built.
		for k, v := range map[string]string{"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"} {
			if err := os.Setenv(k, v); err != nil {
				panic(err)
			}
		}
	})

	var out io.Writer = io.Discard
	if testing.Verbose() {
		out = os.Stderr
	}
	logger := log.New(out, "pebble ", log.LstdFlags)
	db := pebbledb.NewMemoryStore()
	profiles := map[string]ca.Profile{"default": {Description: "test", ValidityPeriod: uint64(opts.Validity / time.Second)}}
	authority := ca.New(logger, db, "", "ecdsa", 0, 1, profiles)
	validator := va.New(logger, 0, 0, false, dnsAddr, db)
	for id, key := range opts.EAB {
		if err := db.AddExternalAccountKeyByID(id, key); err != nil {
			tb.Fatal(err)
		}
	}
	front := wfe.New(logger, db, validator, authority, []string{"pebble.letsencrypt.org"}, false, len(opts.EAB) > 0, 1, 1)

	p := &Pebble{ca: authority}
	api := front.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/order-plz":
			p.orders.Add(1)
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/chalZ/"):
			// Pebble sends Retry-After on authorizations only; without
			// one, lego polls a challenge after 5 s. A second keeps the
			// tests short, as a production CA's header would.
			w.Header().Set("Retry-After", "1")
		}
		api.ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	serving := SelfSigned(tb, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "pebble test server"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	})
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serving}}
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	p.Roots = x509.NewCertPool()
	p.Roots.AddCert(serving.Leaf)
	p.RootsPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: serving.Leaf.Raw})
	p.DirectoryURL = srv.URL + wfe.DirectoryPath
	return p
}

// Orders is how many orders have been placed (new-order requests, refused
// ones included).
func (p *Pebble) Orders() int { return int(p.orders.Load()) }

// Root is the root certificate that signs what Pebble issues (through an
// intermediate, sent in the chain).
func (p *Pebble) Root() *x509.Certificate { return p.ca.GetRootCert(0).Cert }

// RootPool is a pool of Root alone, for clients of servers that use
// Pebble's certificates.
func (p *Pebble) RootPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.Root())
	return pool
}

// SelfSigned signs tmpl with itself under a new P-256 key; a nil
// SerialNumber gets a random one. The result has its Leaf set.
func SelfSigned(tb testing.TB, tmpl *x509.Certificate) tls.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64)); err != nil {
			tb.Fatal(err)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}
