package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
	"plane/drone"
	"plane/drone/cert"
	"plane/drone/docker"
	"plane/drone/proxy"
	"plane/drone/store"
)

// DroneConfig configures a Drone.
type DroneConfig struct {
	DataDir   string
	ID        string // empty: read from or saved to <data>/drone-id
	NATSURL   string
	NATSCreds string
	IP        string
	// PublishIP is where Docker publishes backends' ports and the proxy
	// dials them; empty: docker.DefaultPublishIP (127.0.0.1).
	PublishIP string
	ProxyAddr string // where the HTTP proxy listens (":0" works)
	// Proxy limits: open client connections (0: from the descriptor
	// limit; < 0: none) and the wait for a backend's response head.
	ProxyMaxConns        int
	ProxyResponseTimeout time.Duration
	// SuspendMemoryMB bounds the memory of suspended backends (0: none).
	SuspendMemoryMB int
	Domain          string // backends are at <id>.<Domain>
	HTTPSAddr       string // where the HTTPS proxy listens; empty: no HTTPS
	ACME            ACMEConfig
	Capacity        int
	StartTimeout    time.Duration
	StopGrace       time.Duration
	Logger          *slog.Logger
}

// ACMEConfig configures the drone's certificate orders; no Directory, no orders.
type ACMEConfig struct {
	Directory string
	Email     string
	EABKeyID  string
	EABHMAC   string
	CARoots   string   // PEM file of extra roots for the ACME server's HTTPS (tests, private CAs)
	Resolvers []string // DNS servers for propagation checks (host:port)
}

// Drone is a running drone process: store, runtime, NATS link and agent.
type Drone struct {
	cfg     DroneConfig
	Store   *store.Store
	Runtime *docker.Runtime
	NC      *nats.Conn
	Agent   *drone.Agent
	Proxy   *proxy.Proxy
	Cert    *cert.Manager
	proxyLn net.Listener
	httpsLn net.Listener
	cancel  context.CancelFunc
	done    chan error
}

// OpenDrone starts a drone; Close stops it without stopping its backends.
func OpenDrone(ctx context.Context, cfg DroneConfig) (_ *Drone, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// Not the named result: a failed start returns nil, and this one still
	// has to be closed.
	d := &Drone{cfg: cfg}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	// MkdirAll keeps an existing folder's mode: narrow it too.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	if cfg.ID == "" {
		if cfg.ID, err = droneID(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	var rc docker.Config
	if cfg.PublishIP != "" {
		if rc.PublishIP, err = netip.ParseAddr(cfg.PublishIP); err != nil {
			return nil, usageError{fmt.Sprintf("--publish-ip %q: %v", cfg.PublishIP, err)}
		}
		if rc.PublishIP.IsUnspecified() {
			return nil, usageError{fmt.Sprintf("--publish-ip %q: want one address (this one would publish backends on every interface)", cfg.PublishIP)}
		}
	}
	if d.Runtime, err = docker.Open(ctx, rc); err != nil {
		return nil, err
	}
	if d.Store, err = store.Open(filepath.Join(cfg.DataDir, "drone.db")); err != nil {
		return nil, err
	}
	if d.NC, err = connectNATS(cfg.NATSURL, cfg.NATSCreds, "plane-drone-"+cfg.ID); err != nil {
		return nil, err
	}
	d.Proxy = proxy.New(proxy.Config{
		Domain:          cfg.Domain,
		Logger:          cfg.Logger,
		MaxConns:        cfg.ProxyMaxConns,
		ResponseTimeout: cfg.ProxyResponseTimeout,
		Lookup:          d.Store.BackendStatus,
		// The agent is made below; no route is suspended before it runs.
		Resume: func(ctx context.Context, id string) error { return d.Agent.Resume(ctx, id) },
	})
	if d.proxyLn, err = net.Listen("tcp", cfg.ProxyAddr); err != nil {
		return nil, fmt.Errorf("proxy: listen on %s: %w", cfg.ProxyAddr, err)
	}
	var certStatus func() (*time.Time, string)
	if cfg.HTTPSAddr != "" {
		if certStatus, err = d.openHTTPS(cfg); err != nil {
			return nil, err
		}
	}
	d.Agent, err = drone.New(drone.Config{
		ID: cfg.ID, Address: cfg.IP, ProxyAddress: d.proxyLn.Addr().String(), Version: Version, Capacity: cfg.Capacity,
		SuspendMemoryBytes: int64(cfg.SuspendMemoryMB) << 20,
		StartTimeout:       cfg.StartTimeout, StopGrace: cfg.StopGrace,
		NATS: d.NC, Store: d.Store, Runtime: d.Runtime, Proxy: d.Proxy, CertStatus: certStatus, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	d.done = make(chan error, 1)
	go func() { d.done <- d.Agent.Run(runCtx) }()
	if d.Cert != nil {
		go func() {
			if err := d.Cert.Run(runCtx); err != nil {
				cfg.Logger.Error("certificate refresher stopped", "err", err)
			}
		}()
	}
	if d.httpsLn != nil {
		go func() {
			if err := d.Proxy.ServeTLS(d.httpsLn); err != nil {
				cfg.Logger.Error("https proxy stopped", "err", err)
			}
		}()
	}
	go func() {
		if err := d.Proxy.Serve(d.proxyLn, false); err != nil {
			cfg.Logger.Error("proxy stopped", "err", err)
		}
	}()
	cfg.Logger.Info("proxy listening", "addr", d.proxyLn.Addr().String(), "domain", cfg.Domain, "max_conns", d.Proxy.MaxConns())
	return d, nil
}

// openHTTPS listens for HTTPS and sets up the certificate refresher; the
// returned function reports certificate health for heartbeats.
func (d *Drone) openHTTPS(cfg DroneConfig) (func() (*time.Time, string), error) {
	var err error
	if d.httpsLn, err = net.Listen("tcp", cfg.HTTPSAddr); err != nil {
		return nil, fmt.Errorf("https: listen on %s: %w", cfg.HTTPSAddr, err)
	}
	d.Proxy.SetHTTPSPort(d.httpsLn.Addr().(*net.TCPAddr).Port)
	if cfg.ACME.Directory == "" {
		return func() (*time.Time, string) {
			if d.Proxy.Certificate() == nil {
				return nil, "no certificate: the drone has no --acme-directory"
			}
			return nil, ""
		}, nil
	}
	var roots *x509.CertPool
	if cfg.ACME.CARoots != "" {
		pem, err := os.ReadFile(cfg.ACME.CARoots)
		if err != nil {
			return nil, fmt.Errorf("--acme-ca-roots: %w", err)
		}
		if roots, err = x509.SystemCertPool(); err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--acme-ca-roots %s: no PEM certificate in it", cfg.ACME.CARoots)
		}
	}
	d.Cert, err = cert.New(cert.Config{
		Zone: cfg.Domain, DirectoryURL: cfg.ACME.Directory, Email: cfg.ACME.Email,
		EABKeyID: cfg.ACME.EABKeyID, EABHMAC: cfg.ACME.EABHMAC, CARoots: roots,
		DNSResolvers: cfg.ACME.Resolvers, DroneID: cfg.ID, NATS: d.NC, AccountDir: cfg.DataDir,
		OnCert: func(c *tls.Certificate, b plane.CertBundle) {
			d.Proxy.SetCertificate(c)
			cfg.Logger.Info("serving certificate", "domains", b.Domains, "not_after", b.NotAfter, "issued_by", b.IssuedBy)
		},
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	return func() (*time.Time, string) {
		st := d.Cert.Status()
		if st.NotAfter == nil && st.LastError == "" {
			return nil, "no certificate yet: the first order is under way"
		}
		return st.NotAfter, st.LastError
	}, nil
}

// ProxyAddr is where the proxy listens.
func (d *Drone) ProxyAddr() string { return d.proxyLn.Addr().String() }

// Done reports the agent's end (an error if it could not start).
func (d *Drone) Done() <-chan error { return d.done }

// Close stops the agent; backends keep running for the next start.
func (d *Drone) Close() {
	if d.Proxy != nil {
		_ = d.Proxy.Close()
	}
	for _, ln := range []net.Listener{d.proxyLn, d.httpsLn} {
		if ln != nil {
			ln.Close() // closed already if Serve ran; listeners ignore a second Close
		}
	}
	if d.cancel != nil {
		d.cancel()
		if err := <-d.done; err != nil {
			d.cfg.Logger.Error("drone stopped", "err", err)
		}
	}
	if d.NC != nil {
		d.NC.Close()
	}
	if d.Store != nil {
		_ = d.Store.Close()
	}
	if d.Runtime != nil {
		_ = d.Runtime.Close()
	}
}

// droneID reads the drone's ID from its data folder, or derives one from the
// host name and saves it, so that a restarted drone keeps its identity.
func droneID(dir string) (string, error) {
	path := filepath.Join(dir, "drone-id")
	if b, err := os.ReadFile(path); err == nil {
		id := strings.TrimSpace(string(b))
		if err := plane.ValidateDroneID(id); err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return id, nil
	}
	host, _ := os.Hostname()
	id := sanitizeLabel(host)
	if id == "" {
		id = "drone"
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save drone id: %w", err)
	}
	return id, nil
}

// sanitizeLabel turns a host name into a DNS label: lowercase letters,
// digits and inner dashes.
func sanitizeLabel(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0:
			b.WriteByte('-')
		}
		if b.Len() >= 63 {
			break
		}
	}
	return strings.Trim(b.String(), "-")
}

func droneFlags(fs *flag.FlagSet, cfg *DroneConfig) {
	fs.StringVar(&cfg.ID, "id", "", "drone ID (a DNS label); default: from <data>/drone-id, else the host name")
	fs.StringVar(&cfg.IP, "ip", "127.0.0.1", "IP address that backend host names resolve to")
	fs.StringVar(&cfg.ProxyAddr, "proxy", "127.0.0.1:9090", "address of the drone's HTTP proxy")
	fs.StringVar(&cfg.PublishIP, "publish-ip", docker.DefaultPublishIP.String(), "the address Docker publishes backends' ports on and the drone's proxy dials (a drone in its own network namespace, or a multi-homed machine, needs the address its Docker publishes on)")
	fs.StringVar(&cfg.Domain, "domain", "plane.localhost", "cluster domain: the proxy serves <backend-id>.<domain>")
	fs.StringVar(&cfg.HTTPSAddr, "https", "", "address of the HTTPS proxy; empty: HTTP only")
	fs.IntVar(&cfg.SuspendMemoryMB, "suspend-memory-mb", 0, "most memory (MB) suspended backends may hold; past it the longest-suspended are terminated as idle; 0 = no bound")
	fs.IntVar(&cfg.ProxyMaxConns, "proxy-max-conns", 0, "most open client connections of the proxy, past which it answers 503; 0 = sized from the file-descriptor limit, -1 = no limit")
	fs.DurationVar(&cfg.ProxyResponseTimeout, "proxy-response-timeout", proxy.DefaultResponseTimeout, "how long the proxy waits for a backend's response head (long polls need minutes)")
	fs.StringVar(&cfg.ACME.Directory, "acme-directory", "", "ACME directory URL for the *.<domain> certificate (DNS-01 through the controller)")
	fs.StringVar(&cfg.ACME.Email, "acme-email", "", "ACME account e-mail")
	fs.StringVar(&cfg.ACME.EABKeyID, "acme-eab-kid", "", "ACME External Account Binding key id")
	fs.StringVar(&cfg.ACME.EABHMAC, "acme-eab-hmac", "", "ACME External Account Binding HMAC key (base64url)")
	fs.StringVar(&cfg.ACME.CARoots, "acme-ca-roots", "", "PEM file of extra roots trusted for the ACME server's HTTPS")
	fs.Var((*listFlag)(&cfg.ACME.Resolvers), "acme-resolvers", "comma-separated DNS servers (host:port) for propagation checks; default: the system's")
	fs.IntVar(&cfg.Capacity, "capacity", 0, "most containers on this drone: live backends plus warm pools' members; 0 = no limit")
	fs.DurationVar(&cfg.StartTimeout, "start-timeout", drone.DefaultStartTimeout, "how long a started backend may take to answer HTTP")
	fs.DurationVar(&cfg.StopGrace, "stop-grace", drone.DefaultStopGrace, "SIGTERM to SIGKILL grace on soft terminate")
}

func runDrone(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg DroneConfig
	fs := newFlagSet("drone", "Run a drone: start backends in Docker on this machine, as the controller asks over NATS.", stderr)
	fs.StringVar(&cfg.DataDir, "data", "/var/lib/plane-drone", "data folder: the drone's sqlite state")
	fs.StringVar(&cfg.NATSURL, "nats", nats.DefaultURL, "NATS server URL")
	fs.StringVar(&cfg.NATSCreds, "nats-creds", "", "NATS credentials file")
	droneFlags(fs, &cfg)
	log, err := parseWithLogger(fs, args, stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	d, err := OpenDrone(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	select {
	case <-ctx.Done():
		log.Info("shutting down; backends keep running")
		return nil
	case err := <-d.done:
		d.done <- err // for Close
		return err
	}
}
