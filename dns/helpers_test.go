package dns

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"plane"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testSerial replaces the start time as the SOA serial, so that goldens stay put.
const testSerial = 2026010100

// Backends of the fake source.
const (
	liveID = "livebackend001" // a live backend on an IPv4 drone
	v6ID   = "v6backend00001" // a live backend on an IPv6 drone
	deadID = "deadbackend001" // never live
)

var (
	liveIP = netip.MustParseAddr("203.0.113.7")
	v6IP   = netip.MustParseAddr("2001:db8::7")
)

// fakeSource is an in-memory Source for the handler's tests; the
// controller's implementation is tested with its store.
type fakeSource struct {
	mu         sync.Mutex
	backends   map[string]netip.Addr
	challenges []string
	err        error
	calls      []string // backend IDs asked for, and "challenges"
}

var _ Source = (*fakeSource)(nil)

func newFakeSource() *fakeSource {
	return &fakeSource{backends: map[string]netip.Addr{liveID: liveIP, v6ID: v6IP}}
}

func (f *fakeSource) BackendIP(_ context.Context, id string) (netip.Addr, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, id)
	if f.err != nil {
		return netip.Addr{}, false, f.err
	}
	ip, ok := f.backends[id]
	return ip, ok, nil
}

func (f *fakeSource) Challenges(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "challenges")
	if f.err != nil {
		return nil, f.err
	}
	return append([]string(nil), f.challenges...), nil
}

// set changes the fake's state under its lock.
func (f *fakeSource) set(fn func(f *fakeSource)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// takeCalls returns and forgets the calls made so far.
func (f *fakeSource) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// logBuffer collects a logger's output; the server logs from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testConfig is the zone of the tests: a name server inside it with glue,
// one outside it, and apex addresses of both families. The zone's spelling
// exercises normalization.
func testConfig(logger *slog.Logger) Config {
	return Config{
		Zone: "Plane.Example.COM.",
		NS:   []string{"ns1.plane.example.com", "ns.other-provider.example.net."},
		Apex: []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")},
		NSAddrs: map[string][]netip.Addr{
			"NS1.plane.example.com": {netip.MustParseAddr("2001:db8::53"), netip.MustParseAddr("192.0.2.53")},
		},
		Logger: logger,
	}
}

// slogText logs as text into w.
func slogText(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// discardLogger drops everything.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newTestServer returns a server on the test zone that does not listen.
func newTestServer(tb testing.TB, src Source, logger *slog.Logger) *Server {
	tb.Helper()
	s, err := New(testConfig(logger), src)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	s.serial = testSerial
	tb.Cleanup(func() { s.Close() })
	return s
}

// startServer returns a server listening on 127.0.0.1 on a random port.
func startServer(tb testing.TB, src Source, logger *slog.Logger) *Server {
	tb.Helper()
	s := newTestServer(tb, src, logger)
	if err := s.Open("127.0.0.1:0"); err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return s
}

// exchange sends m to addr over network ("udp" or "tcp") and returns the
// answer. Over UDP it retries on timeouts, as resolvers do: loopback drops
// datagrams too when a socket's buffer is full.
func exchange(tb testing.TB, network, addr string, m *mdns.Msg) *mdns.Msg {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := &mdns.Client{Net: network, Timeout: 2 * time.Second}
		r, _, err := c.Exchange(m, addr)
		if err == nil {
			return r
		}
		var ne net.Error
		if network != "udp" || !errors.As(err, &ne) || !ne.Timeout() || time.Now().After(deadline) {
			tb.Fatalf("exchange over %s: %v", network, err)
		}
	}
}

// query returns a query as a stub resolver sends it: RD set, one question.
func query(name string, qtype uint16) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

// withEDNS adds an OPT record to m.
func withEDNS(m *mdns.Msg, size uint16, do bool) *mdns.Msg {
	m.SetEdns0(size, do)
	return m
}

// goldenText is the text form of an answer compared with golden files: the
// message ID is random, so it is zeroed.
func goldenText(m *mdns.Msg) string {
	c := m.Copy()
	c.Id = 0
	return c.String()
}

// checkGolden compares got with testdata/<name>.golden, or rewrites the file
// under -update.
func checkGolden(tb testing.TB, name, got string) {
	tb.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run go test ./dns/ -update to create it)", err)
	}
	if got != string(want) {
		tb.Errorf("answer differs from %s (run go test ./dns/ -update if the change is intended)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

// recorder is a ResponseWriter that keeps what the handler writes.
type recorder struct {
	tcp  bool
	msgs []*mdns.Msg
	raw  int // calls to Write
}

var _ mdns.ResponseWriter = (*recorder)(nil)

func (w *recorder) LocalAddr() net.Addr {
	if w.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}

func (w *recorder) RemoteAddr() net.Addr {
	if w.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 40000}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 40000}
}

func (w *recorder) WriteMsg(m *mdns.Msg) error  { w.msgs = append(w.msgs, m); return nil }
func (w *recorder) Write(b []byte) (int, error) { w.raw++; return len(b), nil }
func (w *recorder) Close() error                { return nil }
func (w *recorder) TsigStatus() error           { return nil }
func (w *recorder) TsigTimersOnly(bool)         {}
func (w *recorder) Hijack()                     {}

// manyChallenges returns n distinct challenge-like values (43 characters,
// like base64url SHA-256 digests).
func manyChallenges(n int) []string {
	var out []string
	for i := range n {
		v := strings.Repeat(string(rune('a'+i%26)), 40)
		out = append(out, v+"-"+string(rune('A'+i/26))+string(rune('0'+i%10)))
	}
	return out
}

// isInvalid reports whether err is a plane.EINVALID error.
func isInvalid(err error) bool { return plane.ErrorCodeOf(err) == plane.EINVALID }
