// Package dns is the controller's authoritative DNS server for the cluster
// zone: A records of live backends (the IP of the drone that runs each one),
// the TXT records of ACME DNS-01 challenges, and the zone's own SOA, NS and
// apex records, over UDP and TCP with EDNS0.
//
// Records come from a Source, which the controller implements over its store
// and the certificate leases; the package holds no state of its own.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"

	"plane"
)

// Source is the narrow interface the controller implements.
type Source interface {
	// BackendIP returns the IP of the drone running the live backend id; ok false when there is none.
	BackendIP(ctx context.Context, backendID string) (ip netip.Addr, ok bool, err error)
	// Challenges returns the current _acme-challenge TXT values for the zone.
	Challenges(ctx context.Context) ([]string, error)
}

// sourceTimeout bounds one call to the Source: resolvers retry after a
// second or two, so a later answer helps nobody.
const sourceTimeout = 2 * time.Second

// listenAttempts is how often Open tries to find a port free on both
// protocols when asked for port 0.
const listenAttempts = 10

// shutdownTimeout bounds how long Close waits for queries in flight.
const shutdownTimeout = 5 * time.Second

// Server answers DNS queries for one zone. Open starts listeners; ServeDNS
// is the handler and may also be called directly.
type Server struct {
	zone   *zone
	src    Source
	logger *slog.Logger
	serial uint32

	// ctx bounds Source calls; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	addr    string
	servers []*mdns.Server
	done    []chan error // one per server: the result of its serve loop
	closed  bool
}

var _ mdns.Handler = (*Server)(nil)

// New validates cfg and returns a server that is not yet listening.
func New(cfg Config, src Source) (*Server, error) {
	if src == nil {
		return nil, plane.Errorf(plane.EINVALID, "dns: a record source is required")
	}
	z, err := newZone(cfg)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		zone:   z,
		src:    src,
		logger: logger,
		// The serial only has to grow: Plane serves no zone transfers, and
		// every record that changes (backends, challenges) lives outside
		// the zone's versioned data anyway. The start time grows across
		// restarts.
		serial: uint32(time.Now().Unix()),
		ctx:    ctx,
		cancel: cancel,
	}, nil
}

// Open listens on UDP and TCP at addr (host:port) and serves in the
// background. With port 0, the port is picked on UDP and reused for TCP,
// retrying with another port when TCP's is taken.
func (s *Server) Open(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("dns: server is closed")
	}
	if s.servers != nil {
		return errors.New("dns: server is already open")
	}
	pc, ln, err := listen(addr)
	if err != nil {
		return err
	}

	udp := &mdns.Server{
		PacketConn:    pc,
		Handler:       s,
		UDPSize:       mdns.DefaultMsgSize, // read buffer for queries; answers are sized per client
		MsgAcceptFunc: acceptQuery,
	}
	tcp := &mdns.Server{
		Listener:      ln,
		Handler:       s,
		MsgAcceptFunc: acceptQuery,
	}
	for _, srv := range []*mdns.Server{udp, tcp} {
		started := make(chan struct{})
		done := make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { done <- srv.ActivateAndServe() }()
		// Wait until it serves: Shutdown refuses a server that has not
		// started, and Close must be able to stop what Open started.
		select {
		case <-started:
			s.servers = append(s.servers, srv)
			s.done = append(s.done, done)
		case err := <-done:
			_ = s.stopLocked() // the error that matters is err
			pc.Close()
			ln.Close()
			return fmt.Errorf("dns: serve %s: %w", addr, err)
		}
	}
	s.addr = pc.LocalAddr().String()
	s.logger.Info("dns server listening", "addr", s.addr, "zone", s.zone.name)
	return nil
}

// listenTCP is net.Listen; tests replace it to make ports collide.
var listenTCP = net.Listen

// listen opens UDP and TCP sockets on the same address.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, plane.Errorf(plane.EINVALID, "dns: listen address %q: %v", addr, err)
	}
	attempts := 1
	if port == "0" || port == "" {
		attempts = listenAttempts
	}
	for i := 0; ; i++ {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, port))
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listen udp %s: %w", addr, err)
		}
		udpPort := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := listenTCP("tcp", net.JoinHostPort(host, strconv.Itoa(udpPort)))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if i+1 >= attempts || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("dns: listen tcp %s: %w", addr, err)
		}
	}
}

// acceptQuery replaces miekg's default filter, which answers FORMERR or
// NOTIMP before the handler sees a message: ServeDNS judges queries itself,
// so that it behaves the same when called directly. Responses are dropped
// unanswered, so that two servers never bounce packets between them.
func acceptQuery(h mdns.Header) mdns.MsgAcceptAction {
	const qr = 1 << 15
	if h.Bits&qr != 0 {
		return mdns.MsgIgnore
	}
	return mdns.MsgAccept
}

// Addr returns the host:port the server listens on, "" before Open.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Close stops the listeners, waits (bounded) for queries in flight and
// cancels Source calls. It may be called more than once, and without Open.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.cancel()
	return s.stopLocked()
}

// stopLocked shuts down the servers that run. s.mu is held.
func (s *Server) stopLocked() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	for i, srv := range s.servers {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, fmt.Errorf("dns: shutdown: %w", err))
		}
		if err := <-s.done[i]; err != nil {
			errs = append(errs, fmt.Errorf("dns: serve: %w", err))
		}
	}
	s.servers, s.done = nil, nil
	return errors.Join(errs...)
}
