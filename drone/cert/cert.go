// Package cert is the drone's certificate refresher: it keeps the cluster's
// wildcard certificate (*.<zone> and <zone>) valid by ACME DNS-01, with lego.
//
// Every drone watches the certificate bucket in JetStream and hands each new
// valid certificate to its proxy. When the certificate is missing or due for
// renewal, a drone asks the controller for the ordering lease; the one that
// gets it orders (setting and clearing the TXT values through the controller,
// whose DNS server answers for the zone), stores the result in the bucket and
// gives the lease back. The others see the new certificate arrive through
// their watch, so a cluster places one order however many drones it has.
package cert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plane"
)

// Config holds what a Manager needs. Zero durations take the defaults below.
type Config struct {
	Zone              string         // cluster zone; the certificate covers plane.CertDomains(Zone)
	DirectoryURL      string         // ACME directory
	Email             string         // ACME account contact; may be empty
	EABKeyID, EABHMAC string         // optional External Account Binding (HMAC base64url-encoded)
	CARoots           *x509.CertPool // trust for the ACME server's HTTPS; nil = system roots
	// DNSResolvers are the servers (host:port) that lego asks whether the
	// TXT values are visible before it lets the CA check: the controller's
	// DNS server, which is authoritative for the zone. Nil: lego's default
	// (the system's resolvers, then every authoritative name server of the
	// zone on port 53).
	DNSResolvers []string
	DroneID      string
	NATS         *nats.Conn
	AccountDir   string        // where the ACME account key is kept (the drone's data folder)
	RenewBefore  time.Duration // default plane.CertRenewBefore
	// OnCert is called with every new valid certificate, from the bucket or
	// from this drone's own order, one call at a time.
	OnCert func(*tls.Certificate, plane.CertBundle)
	Logger *slog.Logger
	Now    func() time.Time // the clock for expiry decisions (tests); default time.Now

	RetryMin   time.Duration // backoff after the first failed attempt; doubles up to RetryMax
	RetryMax   time.Duration
	LeaseRetry time.Duration // how soon to ask again while another drone holds the lease
	// PropagationTimeout and PropagationInterval bound lego's wait for the
	// TXT values to show in DNSResolvers.
	PropagationTimeout  time.Duration
	PropagationInterval time.Duration
}

// Defaults of Config's durations.
const (
	DefaultRetryMin            = 30 * time.Second
	DefaultRetryMax            = time.Hour
	DefaultLeaseRetry          = time.Minute
	DefaultPropagationTimeout  = 2 * time.Minute
	DefaultPropagationInterval = 2 * time.Second
)

const (
	// requestTimeout bounds one NATS request to the controller.
	requestTimeout = 10 * time.Second
	// maxSleep bounds one wait of the loop, so that a wall clock that jumps
	// (a suspended machine) delays a renewal by an hour at most.
	maxSleep = time.Hour
	// bucketRetryMax bounds the wait between attempts to open the bucket.
	bucketRetryMax = 30 * time.Second
)

// Status is the refresher's state for drone health.
type Status struct {
	NotAfter    *time.Time // expiry of the current certificate; nil: none yet
	LastError   string     // the last failed attempt; empty once one succeeds
	NextAttempt time.Time  // when the refresher looks again: renewal time, end of a backoff, or lease re-check
}

// Manager keeps the cluster certificate fresh; New makes one, Run runs it.
type Manager struct {
	cfg       Config
	domains   []string
	zone      string // lowercase, no trailing dot
	log       *slog.Logger
	transport *http.Transport // to the ACME server, shared by every order
	wake      chan struct{}   // a new certificate arrived
	running   atomic.Bool

	cbMu sync.Mutex // serializes adopt, so that OnCert sees certificates in order

	mu       sync.Mutex
	cur      *bundle // the certificate in use; nil: none yet
	pending  *bundle // ordered here but not yet stored in the bucket
	failures int     // failed attempts in a row
	retryAt  time.Time
	lastErr  string
	next     time.Time

	acctMu sync.Mutex
	acct   *account // loaded on the first order
}

// New checks cfg and returns a Manager; Run starts it.
func New(cfg Config) (*Manager, error) {
	zone := strings.ToLower(strings.TrimSuffix(cfg.Zone, "."))
	if err := validZone(zone); err != nil {
		return nil, fmt.Errorf("cert config: %w", err)
	}
	if u, err := url.Parse(cfg.DirectoryURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("cert config: %w", plane.FieldErrorf("acme_directory", "%q is not an http(s) URL", cfg.DirectoryURL))
	}
	if (cfg.EABKeyID == "") != (cfg.EABHMAC == "") {
		return nil, fmt.Errorf("cert config: %w", plane.FieldErrorf("eab", "the key ID and the HMAC key go together"))
	}
	if err := plane.ValidateDroneID(cfg.DroneID); err != nil {
		return nil, fmt.Errorf("cert config: %w", err)
	}
	if cfg.NATS == nil {
		return nil, errors.New("cert config: NATS is required")
	}
	if cfg.AccountDir == "" {
		return nil, fmt.Errorf("cert config: %w", plane.FieldErrorf("account_dir", "is required"))
	}
	if cfg.RenewBefore <= 0 {
		cfg.RenewBefore = plane.CertRenewBefore
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	if cfg.LeaseRetry <= 0 {
		cfg.LeaseRetry = DefaultLeaseRetry
	}
	if cfg.PropagationTimeout <= 0 {
		cfg.PropagationTimeout = DefaultPropagationTimeout
	}
	if cfg.PropagationInterval <= 0 {
		cfg.PropagationInterval = DefaultPropagationInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("component", "cert", "drone", cfg.DroneID)
	legoLogger.Store(log)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: cfg.CARoots, MinVersion: tls.VersionTLS12}
	return &Manager{
		cfg:       cfg,
		domains:   plane.CertDomains(zone),
		zone:      zone,
		log:       log,
		transport: transport,
		wake:      make(chan struct{}, 1),
	}, nil
}

// validZone checks the cluster zone: a host name of at least two labels.
func validZone(zone string) error {
	if zone == "" {
		return plane.FieldErrorf("zone", "is required")
	}
	if len(zone) > 253 || !strings.Contains(zone, ".") {
		return plane.FieldErrorf("zone", "%q is not a domain name with at least two labels", zone)
	}
	for label := range strings.SplitSeq(zone, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' ||
			strings.IndexFunc(label, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') }) >= 0 {
			return plane.FieldErrorf("zone", "%q is not a valid domain name", zone)
		}
	}
	return nil
}

// Status returns the current state, for drone health.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Status{LastError: m.lastErr, NextAttempt: m.next}
	if m.cur != nil {
		t := m.cur.notAfter()
		s.NotAfter = &t
	}
	return s
}

// Run opens the certificate bucket (waiting for the controller to create
// it), follows it, and renews the certificate when it is due, until ctx is
// done. It returns nil then; Run may be called once.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("cert: Run called twice")
	}
	kv, err := m.openBucket(ctx)
	if err != nil {
		return nil // ctx is done
	}

	// Whatever the bucket holds is delivered before the loop decides
	// anything: a drone that starts must not order a certificate the
	// cluster already has.
	ready := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { m.watch(ctx, kv, ready) })
	select {
	case <-ready:
	case <-ctx.Done():
		return nil
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d := m.step(ctx, kv)
		if ctx.Err() != nil {
			return nil
		}
		if d <= 0 {
			continue
		}
		timer.Reset(min(d, maxSleep))
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		case <-timer.C:
		}
	}
}

// poke wakes the loop without blocking.
func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// step looks at the certificate once, orders one when it is due, and
// returns how long to wait before looking again.
func (m *Manager) step(ctx context.Context, kv jetstream.KeyValue) time.Duration {
	now := m.cfg.Now()
	m.mu.Lock()
	cur, pending, retryAt := m.cur, m.pending, m.retryAt
	m.mu.Unlock()

	backoff := func() (time.Duration, bool) {
		if !now.Before(retryAt) {
			return 0, false
		}
		m.setNext(retryAt)
		return retryAt.Sub(now), true
	}
	if pending != nil {
		if d, ok := backoff(); ok {
			return d
		}
		return m.publishPending(ctx, kv, pending)
	}
	if cur != nil && now.Before(cur.renewAt(m.cfg.RenewBefore)) {
		renewAt := cur.renewAt(m.cfg.RenewBefore)
		m.settled(renewAt)
		return renewAt.Sub(now)
	}
	if d, ok := backoff(); ok {
		return d
	}

	lease, err := m.requestLease(ctx)
	if err != nil {
		return m.fail(ctx, fmt.Errorf("request the ordering lease: %w", err))
	}
	if !lease.Granted {
		// Another drone is ordering: its certificate will come through the
		// watch, which wakes the loop. Ask again in case its order fails.
		wait := m.cfg.LeaseRetry
		if left := time.Until(lease.ExpiresAt); !lease.ExpiresAt.IsZero() && left > 0 && left < wait {
			wait = left
		}
		m.log.Debug("another drone holds the ordering lease", "holder", lease.Holder, "recheck_in", wait)
		m.setNext(now.Add(wait))
		return wait
	}

	b, err := m.orderUnderLease(ctx, kv, lease)
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		return m.fail(ctx, err)
	}
	m.adopt(b)
	m.succeeded()
	return 0
}

// orderUnderLease orders a certificate while holding the lease, stores it
// in the bucket, and gives the lease back. It returns the certificate to use:
// its own, or a newer one found in the bucket.
func (m *Manager) orderUnderLease(ctx context.Context, kv jetstream.KeyValue, lease plane.ACMELease) (*bundle, error) {
	stopKeeping := m.keepLease(ctx, lease)
	defer m.releaseLease(ctx)
	defer stopKeeping()

	// The lease may have been free because another drone has just stored a
	// certificate and let go: the bucket, not the watch (which may lag),
	// says whether an order is still needed.
	last, err := getEntry(ctx, kv)
	if err != nil {
		return nil, fmt.Errorf("read the certificate bucket: %w", err)
	}
	if last != nil {
		if b, err := m.decode(last.Value()); err == nil && m.cfg.Now().Before(b.renewAt(m.cfg.RenewBefore)) {
			return b, nil
		}
	}

	m.log.Info("ordering certificate", "domains", m.domains, "directory", m.cfg.DirectoryURL)
	b, err := m.orderAsync(ctx)
	if err != nil {
		return nil, fmt.Errorf("order certificate: %w", err)
	}
	if !m.cfg.Now().Before(b.renewAt(m.cfg.RenewBefore)) {
		// Storing it would only start another order at once.
		return nil, fmt.Errorf("order certificate: the CA issued a certificate that is already due for renewal (valid until %s)", b.notAfter().Format(time.RFC3339))
	}
	m.log.Info("certificate issued", "not_after", b.notAfter(), "serial", b.leaf.SerialNumber.String())
	winner, err := m.publish(ctx, kv, b, last)
	if err != nil {
		// Serve it here anyway; storing it is retried without a new order.
		m.mu.Lock()
		m.pending = b
		m.mu.Unlock()
		m.adopt(b)
		return nil, fmt.Errorf("store the certificate in the bucket: %w", err)
	}
	return winner, nil
}

// publishPending retries storing a certificate this drone ordered.
func (m *Manager) publishPending(ctx context.Context, kv jetstream.KeyValue, b *bundle) time.Duration {
	last, err := getEntry(ctx, kv)
	if err == nil {
		var winner *bundle
		if winner, err = m.publish(ctx, kv, b, last); err == nil {
			m.mu.Lock()
			m.pending = nil
			m.mu.Unlock()
			m.adopt(winner)
			m.succeeded()
			return 0
		}
	}
	if ctx.Err() != nil {
		return 0
	}
	return m.fail(ctx, fmt.Errorf("store the certificate in the bucket: %w", err))
}

// fail records a failed attempt and returns the backoff before the next.
func (m *Manager) fail(ctx context.Context, err error) time.Duration {
	m.mu.Lock()
	m.failures++
	d := m.cfg.RetryMin
	for i := 1; i < m.failures && d < m.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, m.cfg.RetryMax)
	m.retryAt = m.cfg.Now().Add(d)
	m.next = m.retryAt
	m.lastErr = strings.ReplaceAll(err.Error(), "\n", "; ") // lego lists one problem a line
	failures := m.failures
	m.mu.Unlock()
	m.log.ErrorContext(ctx, "certificate attempt failed", "err", err, "attempt", failures, "retry_in", d)
	return d
}

// succeeded clears the failure state after a certificate was stored.
func (m *Manager) succeeded() {
	m.mu.Lock()
	m.failures, m.retryAt, m.lastErr = 0, time.Time{}, ""
	m.mu.Unlock()
}

// settled records that the current certificate needs nothing until
// renewAt. Earlier failures no longer matter: the cluster has a fresh
// certificate, whoever ordered it.
func (m *Manager) settled(renewAt time.Time) {
	m.mu.Lock()
	m.failures, m.retryAt, m.lastErr = 0, time.Time{}, ""
	m.next = renewAt
	m.mu.Unlock()
}

func (m *Manager) setNext(t time.Time) {
	m.mu.Lock()
	m.next = t
	m.mu.Unlock()
}
