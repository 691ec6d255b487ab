package docker

import (
	"context"
	"errors"
	"fmt"
	"github.com/containerd/errdefs"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// cleanupTimeout bounds the removal of a container whose start failed, which
// runs even when the caller's context is done.
const cleanupTimeout = 30 * time.Second

// ContainerSpec describes a backend container to start.
type ContainerSpec struct {
	BackendID string
	DroneID   string
	ImageRef  string
	Port      int               // the container port to publish, tcp
	Env       map[string]string // set as given; the caller adds PORT and PLANE_*
	CPUMillis int               // 0: no limit
	MemoryMB  int               // 0: no limit
	// Pool is the image name of the warm pool the container is a member
	// of, set as LabelPool ("": none).
	Pool string
}

// Container is a started backend container.
type Container struct {
	ID string
	// Address is "<publish IP>:<host port>", where its port is published
	// (127.0.0.1 by default, see Config.PublishIP); "" when the process
	// exited before Start could see the port (Wait then returns its exit
	// code).
	Address string
}

// ContainerState is what the daemon knows of a backend container.
type ContainerState struct {
	ID         string
	BackendID  string // from the LabelBackend label
	Pool       string // from the LabelPool label: started as a warm pool's member
	Running    bool
	Paused     bool // running, its processes frozen (Pause)
	ExitCode   int
	Address    string    // "<publish IP>:<host port>" while running, else ""
	FinishedAt time.Time // zero while running, or if it never ran
}

// Start creates the container named ContainerNamePrefix+spec.BackendID,
// labelled with the backend and drone IDs, with spec's port published on
// the runtime's publish IP on a port the kernel picks, and starts it. It returns once the
// process runs; whether it answers is the caller's business. A container that
// fails to start is removed; one whose process started and already exited is
// kept, with an empty Address, so that its exit code and logs can be read.
func (r *Runtime) Start(ctx context.Context, spec ContainerSpec) (Container, error) {
	if spec.BackendID == "" || spec.DroneID == "" || spec.ImageRef == "" {
		return Container{}, errors.New("start container: backend ID, drone ID and image are required")
	}
	port, ok := network.PortFrom(uint16(spec.Port), network.TCP)
	if !ok || spec.Port < 1 || spec.Port > math.MaxUint16 {
		return Container{}, fmt.Errorf("start container for backend %s: port %d is not between 1 and 65535", spec.BackendID, spec.Port)
	}
	env := make([]string, 0, len(spec.Env))
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	slices.Sort(env) // stable, readable `docker inspect`
	res := container.Resources{
		NanoCPUs: int64(spec.CPUMillis) * 1_000_000,
		Memory:   int64(spec.MemoryMB) << 20,
	}
	created, err := r.client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: ContainerNamePrefix + spec.BackendID,
		Config: &container.Config{
			Image:        spec.ImageRef,
			Env:          env,
			ExposedPorts: network.PortSet{port: {}},
			Labels:       labels(spec),
		},
		HostConfig: &container.HostConfig{
			PortBindings: network.PortMap{port: {{HostIP: r.publishIP}}},
			Resources:    res,
		},
	})
	if err != nil {
		return Container{}, fmt.Errorf("create container for backend %s from %s: %w", spec.BackendID, spec.ImageRef, err)
	}
	id := created.ID
	c, err := r.startCreated(ctx, id, port)
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if rerr := r.Remove(rctx, id); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return Container{}, fmt.Errorf("start container for backend %s: %w", spec.BackendID, err)
	}
	return c, nil
}

// labels are the labels of spec's container.
func labels(spec ContainerSpec) map[string]string {
	l := map[string]string{LabelBackend: spec.BackendID, LabelDrone: spec.DroneID}
	if spec.Pool != "" {
		l[LabelPool] = spec.Pool
	}
	return l
}

func (r *Runtime) startCreated(ctx context.Context, id string, port network.Port) (Container, error) {
	if _, err := r.client.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return Container{}, err
	}
	// The host port is only known once the container runs.
	in, err := r.client.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return Container{}, fmt.Errorf("inspect: %w", err)
	}
	addr := r.address(in.Container.NetworkSettings, port)
	if addr == "" {
		if s := in.Container.State; s != nil && !s.Running {
			// It started and already exited: that is the backend's failure,
			// not the start's. Keep it, for Wait's exit code and for its logs.
			return Container{ID: id}, nil
		}
		return Container{}, fmt.Errorf("port %s is not published", port)
	}
	return Container{ID: id, Address: addr}, nil
}

// address finds where port is published, or "". A binding on every
// interface (not one of ours) is reached on the publish IP.
func (r *Runtime) address(ns *container.NetworkSettings, port network.Port) string {
	if ns == nil {
		return ""
	}
	for _, b := range ns.Ports[port] {
		if b.HostPort == "" {
			continue
		}
		return net.JoinHostPort(r.hostIP(b.HostIP).String(), b.HostPort)
	}
	return ""
}

// hostIP is where a port bound on ip is reached: ip itself, or the publish
// IP for a binding on every interface.
func (r *Runtime) hostIP(ip netip.Addr) netip.Addr {
	if !ip.IsValid() || ip.IsUnspecified() {
		return r.publishIP
	}
	return ip.Unmap()
}

// anyAddress finds the first published port, for containers whose spec is
// not at hand: a backend container publishes only one.
func (r *Runtime) anyAddress(ns *container.NetworkSettings) string {
	if ns == nil {
		return ""
	}
	ports := make([]network.Port, 0, len(ns.Ports))
	for p := range ns.Ports {
		ports = append(ports, p)
	}
	slices.SortFunc(ports, func(a, b network.Port) int { return int(a.Num()) - int(b.Num()) })
	for _, p := range ports {
		if a := r.address(ns, p); a != "" {
			return a
		}
	}
	return ""
}

// Stop ends the container softly: SIGTERM, then SIGKILL if it still runs
// after grace (rounded up to whole seconds, the daemon's unit). A grace of 0
// or less sends SIGKILL at once. It returns once the container is stopped. A
// container that is already stopped or absent is not an error.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	var err error
	if grace <= 0 {
		_, err = r.client.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "SIGKILL"})
	} else {
		secs := int((grace + time.Second - 1) / time.Second)
		_, err = r.client.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs})
	}
	if err == nil || IsNotFound(err) || isNotRunning(err) {
		return nil
	}
	return fmt.Errorf("stop container %s: %w", id, err)
}

// Wait blocks until the container is not running and returns its exit code;
// at once if it has already exited.
func (r *Runtime) Wait(ctx context.Context, id string) (int, error) {
	w := r.client.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case res := <-w.Result:
		if res.Error != nil && res.Error.Message != "" {
			return int(res.StatusCode), fmt.Errorf("wait for container %s: %s", id, res.Error.Message)
		}
		return int(res.StatusCode), nil
	case err := <-w.Error:
		return 0, fmt.Errorf("wait for container %s: %w", id, err)
	}
}

// Remove deletes the container, killing it if it runs. An absent container
// is not an error.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	r.forgetStats(id)
	_, err := r.client.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	// A removal already under way (by another client, or by a drone that
	// was stopped mid-call) ends the same way.
	if err == nil || IsNotFound(err) || errdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress") {
		return nil
	}
	return fmt.Errorf("remove container %s: %w", id, err)
}

// Inspect returns the container's state. For an absent container the error
// satisfies IsNotFound.
func (r *Runtime) Inspect(ctx context.Context, id string) (ContainerState, error) {
	res, err := r.client.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return ContainerState{}, fmt.Errorf("inspect container %s: %w", id, err)
	}
	in := res.Container
	st := ContainerState{ID: in.ID}
	if in.Config != nil {
		st.BackendID, st.Pool = in.Config.Labels[LabelBackend], in.Config.Labels[LabelPool]
	}
	if s := in.State; s != nil {
		st.Running = s.Running
		st.Paused = s.Paused
		st.ExitCode = s.ExitCode
		st.FinishedAt = parseDockerTime(s.FinishedAt)
	}
	if st.Running {
		st.Address = r.anyAddress(in.NetworkSettings)
	}
	return st, nil
}

// parseDockerTime reads the daemon's timestamps, where the zero time
// "0001-01-01T00:00:00Z" means never.
func parseDockerTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// List returns every container, running or not, labelled with droneID.
func (r *Runtime) List(ctx context.Context, droneID string) ([]ContainerState, error) {
	res, err := r.client.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", LabelDrone+"="+droneID),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers of drone %s: %w", droneID, err)
	}
	out := make([]ContainerState, 0, len(res.Items))
	for _, c := range res.Items {
		if c.State == container.StateRunning || c.State == container.StatePaused {
			st := ContainerState{ID: c.ID, BackendID: c.Labels[LabelBackend], Pool: c.Labels[LabelPool], Running: true, Paused: c.State == container.StatePaused}
			for _, p := range c.Ports {
				if p.PublicPort != 0 {
					st.Address = net.JoinHostPort(r.hostIP(p.IP).String(), fmt.Sprint(p.PublicPort))
					break
				}
			}
			out = append(out, st)
			continue
		}
		// The list has no exit code or finish time: ask for them.
		st, err := r.Inspect(ctx, c.ID)
		if IsNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Pause freezes the container's processes (the cgroup freezer): they get
// no CPU, and their memory and listening sockets stay as they are, so that
// Unpause resumes them where they were.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	if _, err := r.client.ContainerPause(ctx, id, client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("pause container %s: %w", id, err)
	}
	return nil
}

// Unpause thaws a container Pause froze.
func (r *Runtime) Unpause(ctx context.Context, id string) error {
	if _, err := r.client.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("unpause container %s: %w", id, err)
	}
	return nil
}
