// Package docker is the drone's container runtime: it starts, stops, watches
// and removes backend containers through the Docker Engine API.
//
// Every container it creates carries the labels LabelBackend and LabelDrone,
// so that a restarted drone finds its containers again (List), a warm
// pool's member also LabelPool, and publishes
// its one port on one address only (Config.PublishIP, 127.0.0.1 by default):
// the drone's proxy is the way in.
package docker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Labels set on every backend container.
const (
	LabelBackend = "plane.backend"
	LabelDrone   = "plane.drone"
	// LabelPool names the image of the warm pool a container was started
	// for (ContainerSpec.Pool). Docker labels cannot change, so a member
	// keeps it once claimed: it says how the container started, not that
	// it is unclaimed (only the drone knows that).
	LabelPool = "plane.pool"
)

// ContainerNamePrefix starts the name of every backend container; the backend
// ID follows.
const ContainerNamePrefix = "plane-"

// pingTimeout bounds New's check of the daemon, so that a wedged daemon fails
// start-up rather than hanging it.
const pingTimeout = 10 * time.Second

// DefaultPublishIP is where backend ports are published unless
// Config.PublishIP says otherwise: only the drone's proxy, on the same
// machine, connects to them.
var DefaultPublishIP = netip.MustParseAddr("127.0.0.1")

// Config configures a Runtime.
type Config struct {
	// PublishIP is the address the daemon publishes backend ports on, and so
	// the host of every container Address the drone's proxy dials; the zero
	// value is DefaultPublishIP. A drone that reaches its daemon's published
	// ports through another address (a drone in a network namespace of its
	// own, a multi-homed machine) sets it. It must be one address, not
	// 0.0.0.0 or ::, which would publish backends on every interface.
	PublishIP netip.Addr
}

// Runtime drives one Docker daemon. It is safe for concurrent use.
type Runtime struct {
	client    *client.Client
	publishIP netip.Addr

	mu sync.Mutex
	// prevCPU holds each container's last CPU sample, so that Stats can
	// compute a CPU percentage from a one-shot sample.
	prevCPU map[string]container.CPUStats
}

// New connects to the daemon that the DOCKER_HOST, DOCKER_API_VERSION,
// DOCKER_CERT_PATH and DOCKER_TLS_VERIFY variables name (the local socket by
// default), negotiates the API version and checks that the daemon answers.
// Its containers publish their ports on DefaultPublishIP.
func New(ctx context.Context) (*Runtime, error) { return Open(ctx, Config{}) }

// Open is New with a configuration.
func Open(ctx context.Context, cfg Config) (*Runtime, error) {
	ip := cfg.PublishIP
	if !ip.IsValid() {
		ip = DefaultPublishIP
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() {
		return nil, fmt.Errorf("publish address %s: want one address (this one would publish backends on every interface)", ip)
	}
	c, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := c.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		c.Close()
		return nil, unreachable(c.DaemonHost(), err)
	}
	return &Runtime{client: c, publishIP: ip, prevCPU: map[string]container.CPUStats{}}, nil
}

// unreachable turns a failed ping into one line that says what to do.
func unreachable(host string, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "permission denied"):
		return fmt.Errorf("cannot reach Docker at %s: permission denied (run as root or as a member of the docker group)", host)
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("cannot reach Docker at %s: is dockerd running? (start it with: dockerd --userland-proxy=false)", host)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("cannot reach Docker at %s: no answer within %s: is dockerd healthy?", host, pingTimeout)
	}
	return fmt.Errorf("cannot reach Docker at %s: %s", host, strings.ReplaceAll(msg, "\n", " "))
}

// Close releases the client's connections. Containers keep running.
func (r *Runtime) Close() error { return r.client.Close() }

// PublishIP is the address backend ports are published on.
func (r *Runtime) PublishIP() netip.Addr { return r.publishIP }

// APIVersion is the Engine API version negotiated with the daemon.
func (r *Runtime) APIVersion() string { return r.client.ClientVersion() }

// IsNotFound reports whether err says that a container (or image) does not exist.
func IsNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// isNotRunning reports whether err is the daemon's refusal to signal a
// container that is not running.
func isNotRunning(err error) bool {
	return cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "is not running")
}
