// Package server is the controller's HTTP side: the Echo application with
// the JSON API under /api/v1, health and metrics endpoints, and (later) the
// dashboard. Its handlers parse, call the controller core
// (server/controller), and render.
package server

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/auth"
	"plane/server/bus"
	"plane/server/controller"
	"plane/server/webhook"
)

// Config holds the services a Server uses.
type Config struct {
	Projects plane.ProjectService
	Images   plane.ImageService
	Backends plane.BackendService
	Drones   plane.DroneService
	Tokens   plane.TokenService
	Auth     *auth.Authenticator
	// The dashboard's services; without Users the controller serves only
	// the API.
	Users        plane.UserService
	Teams        plane.TeamService
	Activity     plane.ActivityService
	Sessions     *auth.Sessions // default: sessions in Users
	LoginLimiter *auth.Limiter  // default: 5 failures per 5 minutes per address and per client, counted in Users
	Dispatch     controller.Dispatcher
	// Bus carries backend changes to waiting spawns, event streams and the
	// dashboard's live tables; a NATS bus shares them with the other
	// controllers. Nil: an in-memory bus the server closes itself.
	Bus plane.EventBus

	// BackendURL returns the address at which a backend is reached.
	BackendURL func(id string) string
	// WaitTimeout bounds a spawn with "wait": true (default
	// controller.DefaultWaitTimeout).
	WaitTimeout time.Duration
	// ConnectKey signs connect tokens; drones verify them with its public
	// half. Nil: backend URLs carry no token and the connect endpoint
	// answers unavailable. The key of the dashboard's CSRF tokens is
	// derived from it, so forms outlive a restart (nil: a random key for
	// the life of the process).
	ConnectKey ed25519.PrivateKey
	// ConnectTokenTTL is how long a connect token works (default
	// plane.DefaultConnectTokenTTL).
	ConnectTokenTTL time.Duration
	// TrustedProxies are the addresses of the reverse proxies in front of
	// the controller. A request from one of them is taken to come from the
	// address it names in X-Forwarded-For (the nearest untrusted one); with
	// none, the client is the connection's peer and headers are ignored.
	// The login limiter keys on this address.
	TrustedProxies []netip.Prefix
	// Ready reports whether the controller can serve (store and NATS up).
	Ready  func(ctx context.Context) error
	Logger *slog.Logger

	// Events reads the projects' event logs, for GET /api/v1/events and
	// the connections of a backend (nil: those answer unavailable).
	Events plane.ProjectEventService
	// Webhooks stores the projects' webhooks (nil: the webhook routes
	// answer unavailable). WebhookSender sends them; nil: server/webhook's,
	// which refuses private addresses unless WebhookAllowPrivate.
	// WebhookPolicy sets their retries. The deliveries go out while
	// Core().RunWebhooks runs.
	Webhooks            plane.WebhookService
	WebhookSender       plane.WebhookSender
	WebhookAllowPrivate bool
	WebhookPolicy       controller.WebhookPolicy
}

// Server serves the controller's HTTP endpoints.
type Server struct {
	Config
	csrfSecret []byte
	echo       *echo.Echo
	ownBus     *bus.Memory // the bus the server made, when Config.Bus was nil
	core       *controller.Core
	metrics    *metrics
	ln         net.Listener
	srv        *http.Server
}

// New builds the Echo application and its routes.
func New(cfg Config) *Server {
	if cfg.ConnectTokenTTL <= 0 {
		cfg.ConnectTokenTTL = plane.DefaultConnectTokenTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = cfg.Logger.With("component", "server")
	if cfg.BackendURL == nil {
		cfg.BackendURL = func(id string) string { return "http://" + id + ".plane.localhost:9090/" }
	}
	if cfg.Sessions == nil {
		cfg.Sessions = &auth.Sessions{Users: cfg.Users}
	}
	if cfg.LoginLimiter == nil && cfg.Users != nil {
		cfg.LoginLimiter = auth.NewLimiter(cfg.Users, auth.LoginMaxFailures, auth.LoginWindow)
	}
	s := &Server{Config: cfg, csrfSecret: csrfKeyFrom(cfg.ConnectKey), echo: echo.New()}
	if s.Bus == nil {
		s.ownBus = bus.NewMemory()
		s.Bus = s.ownBus
	}
	s.metrics = newMetrics(s)
	if cfg.Webhooks != nil && cfg.WebhookSender == nil {
		cfg.WebhookSender = webhook.New(webhook.Config{AllowPrivate: cfg.WebhookAllowPrivate})
		s.WebhookSender = cfg.WebhookSender
	}
	s.core = &controller.Core{
		Store: store{cfg.Images, cfg.Backends, cfg.Drones}, Activity: cfg.Activity,
		Dispatch: cfg.Dispatch, Bus: s.Bus, Metrics: s.metrics, WaitTimeout: cfg.WaitTimeout, Logger: cfg.Logger,
		URLPattern: cfg.BackendURL, ConnectKey: cfg.ConnectKey, ConnectTokenTTL: cfg.ConnectTokenTTL,
		Logins: cfg.LoginLimiter,
		Events: cfg.Events, Webhooks: cfg.Webhooks, WebhookSender: cfg.WebhookSender, WebhookPolicy: cfg.WebhookPolicy,
	}
	if cfg.Users != nil {
		s.core.Accounts = accounts{cfg.Users, cfg.Teams, cfg.Projects, cfg.Tokens}
	}
	s.echo.HideBanner = true
	s.echo.HidePort = true
	s.echo.HTTPErrorHandler = s.handleError
	s.echo.IPExtractor = ipExtractor(cfg.TrustedProxies)
	s.echo.Use(s.metrics.middleware)
	s.routes()
	return s
}

// store is the services of Config as the controller core's one store.
type store struct {
	plane.ImageService
	plane.BackendService
	plane.DroneService
}

// accounts is the services of Config as the controller core's account store.
type accounts struct {
	plane.UserService
	plane.TeamService
	plane.ProjectService
	plane.TokenService
}

// ipExtractor finds a request's client address. Echo's default believes
// X-Forwarded-For and X-Real-IP from anyone, so a client could pick a new
// address for each request; only the listed proxies are believed here, and
// not Echo's default of every loopback and private address.
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		if !p.IsValid() {
			continue // the zero Prefix: cmd/plane lets no bad one through
		}
		p = p.Masked()
		opts = append(opts, echo.TrustIPRange(&net.IPNet{
			IP:   net.IP(p.Addr().AsSlice()),
			Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
		}))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// Handler returns the application as an http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Core is the controller's use-cases the server calls; the dispatcher
// applies the drones' status changes through it.
func (s *Server) Core() *controller.Core { return s.core }

// Open listens on addr (":0" works) and serves in the background.
func (s *Server) Open(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.echo, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Logger.Error("serve", "err", err)
		}
	}()
	return nil
}

// Addr is the address the server listens on, once open.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops serving; open streams are cut after ctx is done.
func (s *Server) Close(ctx context.Context) error {
	if s.ownBus != nil {
		s.ownBus.Close() // ends the open streams
	}
	if s.srv == nil {
		return nil
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		return s.srv.Close()
	}
	return nil
}

func (s *Server) routes() {
	e := s.echo
	e.GET("/healthz", s.handleHealthz)
	e.GET("/readyz", s.handleReadyz)
	e.GET("/metrics", s.metrics.handler)

	api := e.Group("/api/v1")
	api.GET("/openapi.json", s.handleOpenAPI)

	rd, wr := s.requireScope(plane.ScopeImagesRead), s.requireScope(plane.ScopeImagesWrite)
	api.POST("/images", s.handleCreateImage, wr)
	api.GET("/images", s.handleListImages, rd)
	api.GET("/images/:name", s.handleGetImage, rd)
	api.PATCH("/images/:name", s.handleUpdateImage, wr)
	api.DELETE("/images/:name", s.handleDeleteImage, wr)

	rd, wr = s.requireScope(plane.ScopeBackendsRead), s.requireScope(plane.ScopeBackendsWrite)
	api.POST("/backends", s.handleSpawn, wr)
	api.GET("/backends", s.handleListBackends, rd)
	api.GET("/backends/:id", s.handleGetBackend, rd)
	api.POST("/backends/:id/terminate", s.handleTerminate, wr)
	api.POST("/backends/:id/connect", s.handleConnect, wr)
	api.POST("/backends/:id/disconnect", s.handleDisconnect, wr)
	api.POST("/backends/:id/keepalive", s.handleKeepAlive, wr)
	api.GET("/backends/:id/events", s.handleBackendEvents, rd)
	api.GET("/backends/:id/logs", s.handleBackendLogs, rd)
	api.GET("/backends/:id/connections", s.handleBackendConnections, rd)
	api.GET("/events", s.handleProjectEvents, rd)
	api.GET("/webhooks", s.handleListWebhooks, rd)
	api.GET("/webhooks/:id", s.handleGetWebhook, rd)
	api.GET("/webhooks/:id/deliveries", s.handleWebhookDeliveries, rd)
	api.POST("/webhooks", s.handleCreateWebhook, wr)
	api.DELETE("/webhooks/:id", s.handleDeleteWebhook, wr)
	api.POST("/webhooks/:id/deliveries/:delivery/retry", s.handleRetryDelivery, wr)

	admin := s.requireScope(plane.ScopeAdmin)
	api.GET("/drones", s.handleListDrones, admin)
	api.POST("/drones/:id/drain", s.handleDrain(true), admin)
	api.POST("/drones/:id/undrain", s.handleDrain(false), admin)

	if s.Users != nil {
		s.dashboardRoutes()
	}
}

func (s *Server) handleHealthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(c echo.Context) error {
	if s.Ready != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			s.Logger.Warn("not ready", "err", err)
			return plane.Errorf(plane.EUNAVAILABLE, "not ready: %s", plane.ErrorMessageOf(err))
		}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
