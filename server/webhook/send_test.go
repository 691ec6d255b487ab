package webhook_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"plane"
	"plane/server/webhook"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// received is one request a receiver got.
type received struct {
	header http.Header
	body   []byte
}

// receiver is an HTTP endpoint on loopback that records what it gets and
// answers with answer (200 when nil).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	answer func(w http.ResponseWriter, r *http.Request)
}

func newReceiver(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{r.Header.Clone(), body})
		rc.mu.Unlock()
		if rc.answer != nil {
			rc.answer(w, r)
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// port is the receiver's port.
func (rc *receiver) port() string {
	_, port, _ := net.SplitHostPort(rc.Listener.Addr().String())
	return port
}

// stubResolver answers for the names it knows, asks the system for
// localhost, and says the others do not exist.
type stubResolver struct {
	names   map[string][]netip.Addr
	lookups atomic.Int32
}

func (r *stubResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.lookups.Add(1)
	if a, ok := r.names[host]; ok {
		return a, nil
	}
	if host == "localhost" {
		return net.DefaultResolver.LookupNetIP(ctx, network, host)
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func message(url string) plane.WebhookMessage {
	return plane.WebhookMessage{ID: "evt_42", URL: url, Secret: testSecret, Body: []byte(`{"id":42,"type":"backend.status","timestamp":"2025-01-02T03:04:05Z","data":{"backend_id":"b1","status":"ready"}}`)}
}

// A message arrives as the specification says: a POST of the body as it
// was, with the three headers, which a receiver's own verifier accepts.
func TestSendSigned(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	s := webhook.New(webhook.Config{AllowPrivate: true})
	m := message(rc.URL + "/hooks/plane?token=abc")
	res := s.Send(context.Background(), m)
	if !res.OK() || res.StatusCode != http.StatusNoContent || res.Err != nil || res.Duration <= 0 {
		t.Fatalf("result %+v", res)
	}
	got := rc.requests()
	if len(got) != 1 {
		t.Fatalf("%d requests", len(got))
	}
	r := got[0]
	if string(r.body) != string(m.Body) || r.header.Get("Content-Type") != "application/json" || r.header.Get("webhook-id") != "evt_42" {
		t.Errorf("request %v %s", r.header, r.body)
	}
	if err := verify(testSecret, r.header, r.body, time.Now()); err != nil {
		t.Errorf("the receiver's verifier: %v", err)
	}
	if err := verify("whsec_c2VjcmV0c2VjcmV0c2VjcmV0", r.header, r.body, time.Now()); err == nil {
		t.Error("another secret verified the message")
	}
}

// Anything but a 2xx is a failure, with its status; a redirect is not
// followed; Retry-After is read.
func TestSendAnswers(t *testing.T) {
	tests := []struct {
		name       string
		answer     func(w http.ResponseWriter, r *http.Request)
		status     int
		ok         bool
		retryAfter time.Duration
	}{
		{"200", func(w http.ResponseWriter, _ *http.Request) {}, 200, true, 0},
		{"202", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(202) }, 202, true, 0},
		{"500", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }, 500, false, 0},
		{"404", func(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) }, 404, false, 0},
		{"410", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(410) }, 410, false, 0},
		{"503 with Retry-After", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(503)
		}, 503, false, 7 * time.Second},
		{"a redirect", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/moved" {
				return // reached only if followed
			}
			http.Redirect(w, r, "/moved", http.StatusFound)
		}, 302, false, 0},
	}
	s := webhook.New(webhook.Config{AllowPrivate: true})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, tt.answer)
			res := s.Send(context.Background(), message(rc.URL+"/hook"))
			if res.StatusCode != tt.status || res.OK() != tt.ok || res.Err != nil || res.RetryAfter != tt.retryAfter {
				t.Fatalf("result %+v, want status %d ok %v retry after %v", res, tt.status, tt.ok, tt.retryAfter)
			}
			if n := len(rc.requests()); n != 1 {
				t.Fatalf("%d requests, want 1", n)
			}
		})
	}
}

// An endpoint that does not answer in time is a failure that says so.
func TestSendTimeout(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	s := webhook.New(webhook.Config{AllowPrivate: true, Timeout: 200 * time.Millisecond})
	res := s.Send(context.Background(), message(rc.URL))
	if res.OK() || res.Err == nil || !strings.Contains(res.Err.Error(), "no answer within 200ms") {
		t.Fatalf("result %+v", res)
	}
	if res.Duration < 200*time.Millisecond {
		t.Errorf("gave up after %v", res.Duration)
	}
}

// Server-side request forgery: without AllowPrivate, no request leaves for
// a loopback, private or link-local address, whether the URL names it or
// a host name resolves to it; with it, they are reached.
func TestSendPrivateAddresses(t *testing.T) {
	rc := newReceiver(t, nil)
	port := rc.port()
	v6 := newIPv6Receiver(t)
	res := &stubResolver{names: map[string][]netip.Addr{
		"hook.test":  addrs("127.0.0.1"),
		"mixed.test": addrs("93.184.215.14", "10.0.0.1"),
		"meta.test":  addrs("169.254.169.254"),
	}}
	tests := []struct {
		name, url string
		why       string // in the refusal
		live      bool   // reachable here with AllowPrivate (loopback only)
	}{
		{"loopback", "http://127.0.0.1:" + port + "/", "127.0.0.1 is a loopback address", true},
		{"private", "http://10.0.0.1/hook", "10.0.0.1 is a private address", false},
		{"link-local", "http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address", false},
		{"IPv6 loopback", "http://[::1]:" + v6.port + "/", "::1 is a loopback address", v6.ok},
		{"a name resolving to loopback", "http://hook.test:" + port + "/", "hook.test: refused: 127.0.0.1 is a loopback address", true},
		{"localhost", "http://localhost:" + port + "/", "loopback address", true},
		{"a name resolving to link-local", "http://meta.test/", "169.254.169.254 is a link-local address", false},
	}
	strict := webhook.New(webhook.Config{Resolver: res})
	open := webhook.New(webhook.Config{Resolver: res, AllowPrivate: true})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(rc.requests()) + v6.count()
			r := strict.Send(context.Background(), message(tt.url))
			var re *webhook.RefusedError
			if r.OK() || !errors.As(r.Err, &re) || !strings.Contains(r.Err.Error(), tt.why) {
				t.Fatalf("without AllowPrivate: %+v (%v), want a refusal saying %q", r, r.Err, tt.why)
			}
			if after := len(rc.requests()) + v6.count(); after != before {
				t.Fatalf("a refused message reached the receiver")
			}
			if err := strict.CheckURL(context.Background(), tt.url); plane.ErrorCodeOf(err) != plane.EINVALID || !strings.Contains(err.Error(), "refused") {
				t.Errorf("CheckURL without AllowPrivate: %v", err)
			}
			if err := open.CheckURL(context.Background(), tt.url); err != nil {
				t.Errorf("CheckURL with AllowPrivate: %v", err)
			}
			if !tt.live {
				return // not an address tests may connect to
			}
			if r := open.Send(context.Background(), message(tt.url)); !r.OK() {
				t.Fatalf("with AllowPrivate: %+v", r)
			}
			if after := len(rc.requests()) + v6.count(); after != before+1 {
				t.Fatalf("with AllowPrivate the receiver got %d messages, want 1", after-before)
			}
		})
	}
	t.Run("a name with a public and a private address", func(t *testing.T) {
		err := strict.CheckURL(context.Background(), "https://mixed.test/hook")
		if err == nil || !strings.Contains(err.Error(), "10.0.0.1 is a private address") {
			t.Fatalf("CheckURL: %v", err)
		}
	})
	t.Run("a name that does not resolve yet", func(t *testing.T) {
		if err := strict.CheckURL(context.Background(), "https://later.test/hook"); err != nil {
			t.Fatalf("CheckURL: %v", err)
		}
		if r := strict.Send(context.Background(), message("https://later.test/hook")); r.Err == nil || !strings.Contains(r.Err.Error(), "no such host") {
			t.Fatalf("send: %+v", r)
		}
	})
}

// v6Receiver is a receiver on [::1], when this machine has it.
type v6Receiver struct {
	ok   bool
	port string
	n    atomic.Int32
}

func (v *v6Receiver) count() int { return int(v.n.Load()) }

func newIPv6Receiver(t *testing.T) *v6Receiver {
	t.Helper()
	v := &v6Receiver{port: "1"}
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Logf("no IPv6 loopback: the [::1] case is only refused, not sent: %v", err)
		return v
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { v.n.Add(1) }), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	_, v.port, _ = net.SplitHostPort(ln.Addr().String())
	v.ok = true
	return v
}

// The connection goes to the address that was checked: the host is
// resolved once per connection and never again by name, so a DNS answer
// that changes in between (rebinding) cannot send it elsewhere. The
// system's resolver does not know hook.test: only a dial to the checked
// address reaches the receiver.
func TestSendDialsTheCheckedAddress(t *testing.T) {
	rc := newReceiver(t, nil)
	res := &stubResolver{names: map[string][]netip.Addr{"hook.test": addrs("127.0.0.1")}}
	s := webhook.New(webhook.Config{Resolver: res, AllowPrivate: true})
	if r := s.Send(context.Background(), message("http://hook.test:"+rc.port()+"/in")); !r.OK() {
		t.Fatalf("send: %+v", r)
	}
	if n := res.lookups.Load(); n != 1 {
		t.Errorf("%d lookups for one message, want 1", n)
	}
	if got := rc.requests(); len(got) != 1 || got[0].header.Get("webhook-id") != "evt_42" {
		t.Fatalf("received %+v", got)
	}
}

// A message whose URL or secret is wrong fails before any request.
func TestSendBadMessage(t *testing.T) {
	rc := newReceiver(t, nil)
	s := webhook.New(webhook.Config{AllowPrivate: true})
	for _, m := range []plane.WebhookMessage{
		{ID: "evt_1", URL: "ftp://" + rc.Listener.Addr().String() + "/", Secret: testSecret},
		{ID: "evt_1", URL: rc.URL, Secret: "not a secret"},
		{ID: "evt.1", URL: rc.URL, Secret: testSecret},
	} {
		if r := s.Send(context.Background(), m); r.Err == nil {
			t.Errorf("%+v: sent, %+v", m, r)
		}
	}
	if n := len(rc.requests()); n != 0 {
		t.Errorf("%d requests", n)
	}
}
