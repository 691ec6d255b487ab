package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"plane"
)

// DefaultTimeout bounds one request: the time to connect, send and get the
// answer's head.
const DefaultTimeout = 10 * time.Second

// Resolver looks up a host's addresses (net.DefaultResolver).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures a Sender.
type Config struct {
	// AllowPrivate lets webhooks reach the addresses CheckAddr refuses:
	// for a cluster whose endpoints live on its own network, and tests.
	AllowPrivate bool
	// Timeout bounds a request (default DefaultTimeout).
	Timeout time.Duration
	// Resolver finds a host's addresses (default net.DefaultResolver).
	Resolver Resolver
	// UserAgent of the requests (default "plane-webhooks").
	UserAgent string
}

// Sender signs and sends messages. Safe for concurrent use.
type Sender struct {
	cfg    Config
	client *http.Client
}

var _ plane.WebhookSender = (*Sender)(nil)

// New returns a sender.
func New(cfg Config) *Sender {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "plane-webhooks"
	}
	s := &Sender{cfg: cfg}
	transport := &http.Transport{
		// Never a proxy from the environment: it would reach what the
		// checks refuse, on the checks' behalf.
		Proxy:                 nil,
		DialContext:           s.dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
	}
	s.client = &http.Client{
		Transport: transport,
		Timeout:   cfg.Timeout,
		// A redirect is an answer of its own, a failure: following it
		// would send the signed event where the user did not say, and
		// the specification asks for the URL to be fixed instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s
}

// dial connects to the address it checked: it resolves the host once,
// refuses it if any of its addresses is refused (a name that mixes a
// public address with a private one is someone's trick), and connects to
// those addresses themselves, never to the name again, so that a DNS
// answer that changes between the check and the connection (rebinding)
// cannot point it elsewhere. TLS still verifies the certificate against
// the URL's host name.
func (s *Sender) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	addrs, err := s.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: s.cfg.Timeout}
	var errs []error
	for _, a := range addrs {
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// resolve returns the addresses of host (an IP address is its own), all
// allowed, or why not.
func (s *Sender) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		if addrs, err = s.cfg.Resolver.LookupNetIP(ctx, "ip", host); err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, dnsError(err))
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("resolve %s: no address", host)
		}
	}
	if !s.cfg.AllowPrivate {
		for _, a := range addrs {
			if err := CheckAddr(a); err != nil {
				if host != a.String() {
					return nil, fmt.Errorf("%s: %w", host, err)
				}
				return nil, err
			}
		}
	}
	return addrs, nil
}

// dnsError drops what net.DNSError repeats.
func dnsError(err error) error {
	var de *net.DNSError
	if errors.As(err, &de) {
		if de.IsNotFound {
			return errors.New("no such host")
		}
		return errors.New(de.Err)
	}
	return err
}

// CheckURL checks a webhook's URL when it is created: its shape, and where
// its host points now. A host that cannot be resolved now is not refused
// (its DNS may come later); every send checks again.
func (s *Sender) CheckURL(ctx context.Context, raw string) error {
	u, err := plane.ParseWebhookURL(raw)
	if err != nil {
		return err
	}
	if s.cfg.AllowPrivate {
		return nil
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if err := CheckAddr(a); err != nil {
			return plane.FieldErrorf("url", "%s", err.Error())
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := s.resolve(ctx, host); err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			return plane.FieldErrorf("url", "%s", err.Error())
		}
	}
	return nil
}

// maxAnswer is how much of an answer is read, so that the connection can
// serve the next message; the rest is dropped with the connection.
const maxAnswer = 64 << 10

// Send signs m at now and POSTs it.
func (s *Sender) Send(ctx context.Context, m plane.WebhookMessage) plane.WebhookResult {
	start := time.Now()
	res := s.send(ctx, m, start)
	res.Duration = time.Since(start)
	return res
}

func (s *Sender) send(ctx context.Context, m plane.WebhookMessage, now time.Time) plane.WebhookResult {
	if _, err := plane.ParseWebhookURL(m.URL); err != nil {
		return plane.WebhookResult{Err: errors.New(plane.ErrorMessageOf(err))}
	}
	sig, err := Sign(m.Secret, m.ID, now, m.Body)
	if err != nil {
		return plane.WebhookResult{Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL, strings.NewReader(string(m.Body)))
	if err != nil {
		return plane.WebhookResult{Err: fmt.Errorf("request: %w", unwrapURL(err))}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	req.Header.Set(HeaderID, m.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, sig)
	resp, err := s.client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return plane.WebhookResult{Err: fmt.Errorf("no answer within %s", s.cfg.Timeout)}
		}
		return plane.WebhookResult{Err: unwrapURL(err)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	return plane.WebhookResult{StatusCode: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), now)}
}

// unwrapURL drops url.Error's method and URL: the URL is the webhook's,
// shown beside the attempt already, and may hold a token in its query.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(min(n, 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}
