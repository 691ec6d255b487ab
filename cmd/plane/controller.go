package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"plane"
	"plane/auth"
	"plane/dns"
	"plane/server"
	"plane/server/bus"
	"plane/server/dispatch"
	"plane/server/sqlstore"
)

// ControllerConfig configures a Controller.
type ControllerConfig struct {
	DataDir string
	// Store is the Postgres URL of the store that several controllers
	// share; empty: sqlite in DataDir.
	Store      string
	HTTPAddr   string
	BackendURL string // with {id} for the backend's ID
	NATSURL    string // external NATS; empty: embedded, listening on NATSListen
	NATSCreds  string
	NATSListen string
	// ConnectTokenTTL is how long a connect URL works (default
	// plane.DefaultConnectTokenTTL).
	ConnectTokenTTL time.Duration
	// DNS: the authoritative server for Domain, when DNSAddr is set.
	DNSAddr string
	Domain  string
	DNSNS   []string // name servers of the zone; default ns.<Domain>
	DNSIP   string   // the controller's address: apex A and glue for in-zone name servers
	// TrustedProxies: reverse proxies whose X-Forwarded-For names the
	// client (for the login limiter); none: the TCP peer is the client.
	TrustedProxies []netip.Prefix
	// DroneUnreachableAfter and DroneLostAfter: how long a drone may be
	// silent before it takes no new backends (its backends stay as they
	// are) and before its backends are terminated as lost. Defaults:
	// plane.DefaultDroneUnreachableAfter, plane.DefaultDroneLostAfter.
	DroneUnreachableAfter, DroneLostAfter time.Duration
	// NATSReplicas: copies JetStream keeps of each stream and bucket (0:
	// dispatch.DefaultReplicas, from the NATS servers known).
	NATSReplicas int
	Logger       *slog.Logger
	// SigningKey is the file of the key that signs tokens (default
	// <DataDir>/signing.key, made on first use); AcceptKeys are files of
	// other keys whose tokens are still good (a rotation). Every
	// controller of a cluster must have the same.
	SigningKey string
	AcceptKeys []string
	// TakeOverCluster replaces another cluster's claim on the NATS instead
	// of refusing to start (see claimCluster).
	TakeOverCluster bool
	// WebhookAllowPrivate lets webhooks reach private, loopback and
	// link-local addresses (server/webhook refuses them by default).
	WebhookAllowPrivate bool
}

// Controller is a running controller: store, NATS link, API server.
type Controller struct {
	cfg      ControllerConfig
	Cluster  plane.ClusterIdentity // of the store, claimed in NATS
	DB       *sqlstore.DB
	NATS     *natsserver.Server // embedded server, if any
	NC       *nats.Conn
	Dispatch *dispatch.Dispatcher
	Bus      *bus.NATS
	Server   *server.Server
	DNS      *dns.Server

	stopWebhooks func() // ends the webhook deliveries' loop and waits for it
}

// OpenController starts a controller; Close stops it.
func OpenController(ctx context.Context, cfg ControllerConfig) (c *Controller, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c = &Controller{cfg: cfg}
	// "return nil, err" clears c before this runs: close what was opened.
	opened := c
	defer func() {
		if err != nil {
			opened.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	// MkdirAll leaves an existing folder's mode alone; the store, the
	// signing key and NATS's files in it are for the controller only.
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	if c.DB, err = openStore(ctx, cfg.Store, cfg.DataDir); err != nil {
		return nil, err
	}
	keys, err := loadSigningKeys(cfg.DataDir, cfg.SigningKey, cfg.AcceptKeys)
	if err != nil {
		return nil, err
	}
	signID, acceptIDs := keys.describe()
	cfg.Logger.Info("signing key", "key", signID, "accepted", acceptIDs)
	// Several controllers share one store, and must share one key.
	if err := c.DB.RegisterSigningKeys(ctx, signID, acceptIDs); err != nil {
		return nil, fmt.Errorf("%s: give this controller the cluster's key file with --signing-key (docs/deploy.md, \"The signing key\")", plane.ErrorMessageOf(err))
	}
	url := cfg.NATSURL
	if url == "" {
		if c.NATS, err = startNATS(cfg.NATSListen, filepath.Join(cfg.DataDir, "nats")); err != nil {
			return nil, err
		}
		url = c.NATS.ClientURL()
	}
	if c.NC, err = connectNATS(url, cfg.NATSCreds, "plane-controller"); err != nil {
		return nil, err
	}
	// Before anything else touches the NATS (streams, the status consumer,
	// heartbeats, reconciliation) or serves: a controller of another
	// cluster would end every backend of this one's drones.
	// A refusal is final; JetStream not ready yet (a NATS cluster starting
	// with the controller) is worth waiting for.
	claim := func() error {
		err := c.claimCluster(ctx, url)
		if _, owned := errors.AsType[*clusterOwnedError](err); owned {
			return dispatch.Final(err)
		}
		return err
	}
	if err := dispatch.RetryJetStream(ctx, cfg.Logger, "claim the cluster", claim); err != nil {
		return nil, err
	}
	// One key signs API tokens and connect tokens; drones fetch its public
	// half over NATS to verify connect tokens, with the keys accepted.
	pub := keys.public()
	// Live views follow the changes every controller on this NATS applies.
	if c.Bus, err = bus.NewNATS(c.NC, cfg.Logger); err != nil {
		return nil, err
	}
	c.Dispatch = &dispatch.Dispatcher{NC: c.NC, Backends: c.DB, Drones: c.DB, ACME: c.DB, ConnectKey: pub, AcceptKeys: keys.accept, Logger: cfg.Logger,
		UnreachableAfter: cfg.DroneUnreachableAfter, LostAfter: cfg.DroneLostAfter, Replicas: cfg.NATSReplicas,
		HolderID: c.holderID(), Bus: c.Bus}
	c.Server = server.New(server.Config{
		Projects: c.DB, Images: c.DB, Backends: c.DB, Drones: c.DB, Tokens: c.DB,
		Users: c.DB, Teams: c.DB, Activity: c.DB,
		Auth:            &auth.Authenticator{Key: pub, Accept: keys.accept, Tokens: c.DB},
		Dispatch:        c.Dispatch,
		Bus:             c.Bus,
		BackendURL:      func(id string) string { return strings.ReplaceAll(cfg.BackendURL, "{id}", id) },
		ConnectKey:      keys.sign,
		ConnectTokenTTL: cfg.ConnectTokenTTL,
		TrustedProxies:  cfg.TrustedProxies,
		Ready:           c.ready,
		Logger:          cfg.Logger,
		Events:          c.DB, Webhooks: c.DB, WebhookAllowPrivate: cfg.WebhookAllowPrivate,
	})
	c.Dispatch.Applier = c.Server.Core()
	c.Dispatch.PoolSource = c.Server.Core()
	if err := c.Dispatch.Open(ctx); err != nil {
		return nil, err
	}
	if cfg.DNSAddr != "" {
		if c.DNS, err = openDNS(cfg, c.Dispatch); err != nil {
			return nil, err
		}
		cfg.Logger.Info("dns listening", "addr", c.DNS.Addr(), "zone", cfg.Domain)
	}
	// As plane dev: a newcomer's first token and the first admin's
	// dashboard find a project to work in, from the first answer of
	// /readyz on.
	if _, err := c.EnsureProject(ctx, plane.DefaultProject); err != nil {
		return nil, fmt.Errorf("create project %s: %w", plane.DefaultProject, err)
	}
	if err := c.Server.Open(cfg.HTTPAddr); err != nil {
		return nil, err
	}
	// The webhook deliveries' loop lives until Close, not until ctx (which
	// may bound only the start): Close stops it before the store closes.
	hooksCtx, stopHooks := context.WithCancel(context.WithoutCancel(ctx))
	hooksDone := make(chan struct{})
	go func() {
		defer close(hooksDone)
		c.Server.Core().RunWebhooks(hooksCtx)
	}()
	c.stopWebhooks = func() { stopHooks(); <-hooksDone }
	cfg.Logger.Info("controller listening", "http", c.Server.Addr(), "nats", redactURL(url), "cluster", c.Cluster.ID)
	return c, nil
}

// claimCluster claims the NATS at url for the store's cluster, or says
// which cluster owns it.
func (c *Controller) claimCluster(ctx context.Context, url string) error {
	id, err := c.DB.ClusterIdentity(ctx)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(c.cfg.DataDir)
	if err != nil {
		dir = c.cfg.DataDir
	}
	host, _ := os.Hostname() // only for the messages of other clusters' controllers
	// The bucket starts with the replica count the streams get; the
	// dispatcher opens after the claim, so it cannot say.
	replicas := c.cfg.NATSReplicas
	if replicas <= 0 {
		replicas = dispatch.DefaultReplicas(c.NC)
	}
	if _, err := claimCluster(ctx, c.NC, clusterClaim{
		Identity: id, Host: host, DataDir: dir, NATSURL: redactURL(url), Embedded: c.NATS != nil,
		Replicas: replicas,
		TakeOver: c.cfg.TakeOverCluster,
		Logger:   c.cfg.Logger,
	}); err != nil {
		return err
	}
	c.Cluster = id
	return nil
}

// holderID names this controller in the cluster's lease: its host and data
// folder, so that a controller restarted after a crash takes back its own
// lease at once instead of waiting for it to expire.
func (c *Controller) holderID() string {
	host, _ := os.Hostname()
	dir, err := filepath.Abs(c.cfg.DataDir)
	if err != nil {
		dir = c.cfg.DataDir
	}
	return host + ":" + dir
}

func (c *Controller) ready(ctx context.Context) error {
	// The answer says which part fails, for whoever looks at a load
	// balancer's health checks; the details go to the log (handleReadyz).
	if _, err := c.DB.FindProjects(ctx); err != nil {
		c.cfg.Logger.Warn("readiness: the store", "err", err)
		return plane.Errorf(plane.EUNAVAILABLE, "the store does not answer")
	}
	if !c.NC.IsConnected() {
		return plane.Errorf(plane.EUNAVAILABLE, "NATS is not connected")
	}
	if err := c.Dispatch.CheckWrite(ctx); err != nil {
		c.cfg.Logger.Warn("readiness: JetStream", "err", err)
		return plane.Errorf(plane.EUNAVAILABLE, "JetStream does not take writes")
	}
	return nil
}

// Close stops serving and releases everything, in reverse order.
func (c *Controller) Close() {
	if c.stopWebhooks != nil {
		c.stopWebhooks()
	}
	if c.Bus != nil {
		_ = c.Bus.Close() // ends the open event streams
	}
	if c.Server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.Server.Close(ctx)
		cancel()
	}
	if c.DNS != nil {
		_ = c.DNS.Close()
	}
	if c.Dispatch != nil {
		c.Dispatch.Close()
	}
	if c.NC != nil {
		c.NC.Close()
	}
	if c.NATS != nil {
		c.NATS.Shutdown()
		c.NATS.WaitForShutdown()
	}
	if c.DB != nil {
		_ = c.DB.Close()
	}
}

// EnsureProject returns the named project, creating it when absent.
func (c *Controller) EnsureProject(ctx context.Context, name string) (*plane.Project, error) {
	p, err := c.DB.FindProjectByName(ctx, name)
	if plane.ErrorCodeOf(err) == plane.ENOTFOUND {
		p = &plane.Project{Name: name}
		err = c.DB.CreateProject(ctx, p)
	}
	return p, err
}

// openDNS starts the zone's authoritative server.
func openDNS(cfg ControllerConfig, src dns.Source) (*dns.Server, error) {
	ip, err := netip.ParseAddr(cfg.DNSIP)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--dns-ip %q: %v", cfg.DNSIP, err)}
	}
	ns := cfg.DNSNS
	if len(ns) == 0 {
		ns = []string{"ns." + cfg.Domain}
	}
	nsAddrs := map[string][]netip.Addr{}
	for _, n := range ns {
		nsAddrs[n] = []netip.Addr{ip}
	}
	s, err := dns.New(dns.Config{Zone: cfg.Domain, NS: ns, NSAddrs: nsAddrs, Apex: []netip.Addr{ip}, Logger: cfg.Logger}, src)
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	if err := s.Open(cfg.DNSAddr); err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	return s, nil
}

// nsFlag collects a comma-separated list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = nil
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func controllerFlags(fs interface {
	StringVar(*string, string, string, string)
}, cfg *ControllerConfig, dataDefault string) {
	fs.StringVar(&cfg.DataDir, "data", dataDefault, "data folder: sqlite store, signing key, embedded NATS store")
	fs.StringVar(&cfg.Store, "store", os.Getenv(storeEnv), "the controller's store: a postgres:// URL that several controllers share; empty: sqlite in the data folder (env "+storeEnv+")")
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "address of the API and dashboard")
	fs.StringVar(&cfg.NATSURL, "nats", "", "external NATS server URL; empty runs an embedded one")
	fs.StringVar(&cfg.NATSCreds, "nats-creds", "", "NATS credentials file")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4222", "where the embedded NATS server listens")
}

// prefixesFlag collects a comma-separated list of CIDRs; a bare address is
// a one-address range.
type prefixesFlag []netip.Prefix

func (l *prefixesFlag) String() string {
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l *prefixesFlag) Set(v string) error {
	*l = nil
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return fmt.Errorf("%q is neither a CIDR range (like 10.0.0.0/8) nor an IP address", s)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		*l = append(*l, p.Masked())
	}
	return nil
}

// trustedProxiesFlag adds --trusted-proxies.
func trustedProxiesFlag(fs *flag.FlagSet, cfg *ControllerConfig) {
	fs.Var((*prefixesFlag)(&cfg.TrustedProxies), "trusted-proxies",
		"comma-separated CIDRs of the reverse proxies in front of the dashboard, whose X-Forwarded-For is believed (default: none, the TCP peer is the client)")
}

// webhookFlags adds the webhooks' flags.
func webhookFlags(fs *flag.FlagSet, cfg *ControllerConfig) {
	fs.BoolVar(&cfg.WebhookAllowPrivate, "webhook-allow-private", false,
		"let webhooks reach private, loopback and link-local addresses (default: public addresses only, against server-side request forgery)")
}

// dnsFlags adds the DNS server's flags.
func dnsFlags(fs *flag.FlagSet, cfg *ControllerConfig, addrDefault string) {
	fs.StringVar(&cfg.DNSAddr, "dns", addrDefault, "address of the zone's authoritative DNS server (UDP and TCP); empty: none")
	fs.Var((*listFlag)(&cfg.DNSNS), "dns-ns", "comma-separated name servers of the zone (default ns.<domain>)")
	fs.StringVar(&cfg.DNSIP, "dns-ip", "127.0.0.1", "this controller's public IP: the zone apex and in-zone name servers resolve to it")
}

func runController(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg ControllerConfig
	fs := newFlagSet("controller", "Run the controller: API, scheduler, store. Drones reach it through NATS.", stderr)
	controllerFlags(fs, &cfg, "/var/lib/plane")
	fs.StringVar(&cfg.Domain, "domain", "", "cluster domain: backends are at https://<id>.<domain>/ (required)")
	dnsFlags(fs, &cfg, "")
	trustedProxiesFlag(fs, &cfg)
	faultFlags(fs, &cfg)
	webhookFlags(fs, &cfg)
	backendURL := fs.String("backend-url", "", "backend URL pattern with {id}; default https://{id}.<domain>/")
	fs.DurationVar(&cfg.ConnectTokenTTL, "connect-token-ttl", plane.DefaultConnectTokenTTL, "how long a backend's connect URL works")
	fs.StringVar(&cfg.SigningKey, "signing-key", os.Getenv("PLANE_SIGNING_KEY"),
		"the key that signs API and connect tokens, shared by every controller of a cluster (env PLANE_SIGNING_KEY); default: <data>/signing.key, made on first use")
	fs.Var((*listFlag)(&cfg.AcceptKeys), "accept-keys",
		"comma-separated files of other keys whose tokens are still accepted, during a rotation of --signing-key (private or public key PEM)")
	fs.BoolVar(&cfg.TakeOverCluster, "take-over-cluster", false,
		"claim the NATS for this data folder's cluster even though another cluster owns it: the backends on that cluster's drones will be ended")
	log, err := parseWithLogger(fs, args, stderr)
	if err != nil {
		return err
	}
	if cfg.Domain == "" {
		return usageError{"--domain is required"}
	}
	if cfg.ConnectTokenTTL <= 0 {
		return usageError{fmt.Sprintf("--connect-token-ttl %s: must be positive", cfg.ConnectTokenTTL)}
	}
	cfg.BackendURL = *backendURL
	if cfg.BackendURL == "" {
		cfg.BackendURL = "https://{id}." + cfg.Domain + "/"
	}
	cfg.Logger = log
	c, err := OpenController(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

// parseWithLogger parses args as parseFlags does, with the --log-level flag
// of every long-running command, and returns the logger it asks for.
func parseWithLogger(fs *flag.FlagSet, args []string, stderr io.Writer) (*slog.Logger, error) {
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	return newLogger(stderr, *level)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", level)}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
