package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"plane"
	"plane/auth"
	"plane/server"
	"plane/server/dispatch"
	"plane/server/sqlite"
)

// ControllerConfig configures a Controller.
type ControllerConfig struct {
	DataDir    string
	HTTPAddr   string
	BackendURL string // with {id} for the backend's ID
	NATSURL    string // external NATS; empty: embedded, listening on NATSListen
	NATSCreds  string
	NATSListen string
	// ConnectTokenTTL is how long a connect URL works (default
	// plane.DefaultConnectTokenTTL).
	ConnectTokenTTL time.Duration
	Logger          *slog.Logger
}

// Controller is a running controller: store, NATS link, API server.
type Controller struct {
	cfg      ControllerConfig
	DB       *sqlite.DB
	NATS     *natsserver.Server // embedded server, if any
	NC       *nats.Conn
	Dispatch *dispatch.Dispatcher
	Server   *server.Server
}

// OpenController starts a controller; Close stops it.
func OpenController(ctx context.Context, cfg ControllerConfig) (c *Controller, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c = &Controller{cfg: cfg}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	if c.DB, err = sqlite.Open(ctx, filepath.Join(cfg.DataDir, "controller.db")); err != nil {
		return nil, err
	}
	key, err := auth.LoadOrCreateKey(cfg.DataDir)
	if err != nil {
		return nil, err
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
	// One key signs API tokens and connect tokens; drones fetch its public
	// half over NATS to verify connect tokens.
	pub := key.Public().(ed25519.PublicKey)
	c.Dispatch = &dispatch.Dispatcher{NC: c.NC, Backends: c.DB, Drones: c.DB, ConnectKey: pub, Logger: cfg.Logger}
	c.Server = server.New(server.Config{
		Projects: c.DB, Images: c.DB, Backends: c.DB, Drones: c.DB, Tokens: c.DB,
		Auth:            &auth.Authenticator{Key: pub, Tokens: c.DB},
		Dispatch:        c.Dispatch,
		BackendURL:      func(id string) string { return strings.ReplaceAll(cfg.BackendURL, "{id}", id) },
		ConnectKey:      key,
		ConnectTokenTTL: cfg.ConnectTokenTTL,
		Ready:           c.ready,
		Logger:          cfg.Logger,
	})
	c.Dispatch.OnBackend = c.Server.NotifyBackend
	if err := c.Dispatch.Open(ctx); err != nil {
		return nil, err
	}
	if err := c.Server.Open(cfg.HTTPAddr); err != nil {
		return nil, err
	}
	cfg.Logger.Info("controller listening", "http", c.Server.Addr(), "nats", url)
	return c, nil
}

func (c *Controller) ready(ctx context.Context) error {
	if _, err := c.DB.FindProjects(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if !c.NC.IsConnected() {
		return errors.New("NATS is not connected")
	}
	return nil
}

// Close stops serving and releases everything, in reverse order.
func (c *Controller) Close() {
	if c.Server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.Server.Close(ctx)
		cancel()
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

func controllerFlags(fs interface {
	StringVar(*string, string, string, string)
}, cfg *ControllerConfig, dataDefault string) {
	fs.StringVar(&cfg.DataDir, "data", dataDefault, "data folder: sqlite store, signing key, embedded NATS store")
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "address of the API and dashboard")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "external NATS server URL; empty runs an embedded one")
	fs.StringVar(&cfg.NATSCreds, "nats-creds", "", "NATS credentials file")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4222", "where the embedded NATS server listens")
}

func runController(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg ControllerConfig
	fs := newFlagSet("controller", "Run the controller: API, scheduler, store. Drones reach it through NATS.", stderr)
	controllerFlags(fs, &cfg, "/var/lib/plane")
	domain := fs.String("domain", "", "cluster domain: backends are at https://<id>.<domain>/ (required)")
	backendURL := fs.String("backend-url", "", "backend URL pattern with {id}; default https://{id}.<domain>/")
	fs.DurationVar(&cfg.ConnectTokenTTL, "connect-token-ttl", plane.DefaultConnectTokenTTL, "how long a backend's connect URL works")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *domain == "" && *backendURL == "" {
		return usageError{"--domain is required"}
	}
	if cfg.ConnectTokenTTL <= 0 {
		return usageError{fmt.Sprintf("--connect-token-ttl %s: must be positive", cfg.ConnectTokenTTL)}
	}
	cfg.BackendURL = *backendURL
	if cfg.BackendURL == "" {
		cfg.BackendURL = "https://{id}." + *domain + "/"
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
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

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", level)}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
