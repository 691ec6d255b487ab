// Package dronetest gives the drone agent's tests a scripted container
// runtime and an in-process NATS server, so that every lifecycle path runs in
// milliseconds without Docker. The real-Docker tests of cmd/plane remain the
// proof that the agent drives Docker correctly.
package dronetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"plane"
	"plane/drone/docker"
)

// Exit codes of a process killed by a signal, as Docker reports them.
const (
	ExitSIGTERM = 143
	ExitSIGKILL = 137
)

// Op names a Runtime method in a recorded Call.
type Op string

const (
	OpEnsureImage Op = "EnsureImage"
	OpStart       Op = "Start"
	OpStop        Op = "Stop"
	OpWait        Op = "Wait"
	OpRemove      Op = "Remove"
	OpList        Op = "List"
	OpLogs        Op = "Logs"
	OpStats       Op = "Stats"
	OpImages      Op = "Images"
	OpPause       Op = "Pause"
	OpUnpause     Op = "Unpause"
)

// Call is one recorded call of the Runtime.
type Call struct {
	Op        Op
	Ref       string           // EnsureImage: the image
	Policy    plane.PullPolicy // EnsureImage
	ID        string           // the container, for calls that name one
	BackendID string           // the container's backend, when known
	Grace     time.Duration    // Stop
	Spec      docker.ContainerSpec
}

// Behavior scripts the fate of a backend's container; its zero value is a
// healthy process that answers HTTP at once and exits on SIGTERM.
type Behavior struct {
	StartErr      error        // Start fails with it
	ExitOnStart   *int         // the process exits with this code before Start sees its port
	NotReady      bool         // the process does not answer HTTP until Container.Serve
	IgnoreSIGTERM bool         // a soft stop waits out the grace, then kills
	Logs          []LogLine    // output written as the process starts
	Stats         docker.Stats // what Stats reports while it runs
	Handler       http.Handler // answers its HTTP requests; "ok" by default
}

// LogLine is one line of a container's output.
type LogLine struct {
	Stream string // stdout or stderr
	Text   string
}

// Runtime is a fake container runtime, safe for concurrent use, that records
// every call. Each backend's container does what its Behavior says; tests
// make it exit, answer HTTP or log at chosen moments. Containers outlive the
// agents that started them, as Docker's do, so that one Runtime serves an
// agent and its restarted successor.
type Runtime struct {
	mu         sync.Mutex
	behaviors  map[string]Behavior    // by backend ID
	byImage    map[string]Behavior    // by image ref, for backends with none of their own
	pulls      map[string]*pullScript // by image ref
	images     []string
	containers map[string]*Container // by container ID, until removed
	all        []*Container          // every container ever created, oldest first
	calls      []Call
	peak       map[string]int // by drone ID: the most containers it had at once
	changed    chan struct{}  // closed and replaced at every call
	listErr    error
	seq        int
	closed     bool
}

type pullScript struct {
	err   error
	block chan struct{} // nil: the pull returns at once
}

// NewRuntime returns a Runtime that has images present, and stops every
// container's HTTP server when the test ends.
func NewRuntime(tb testing.TB, images ...string) *Runtime {
	r := &Runtime{
		behaviors:  map[string]Behavior{},
		byImage:    map[string]Behavior{},
		peak:       map[string]int{},
		pulls:      map[string]*pullScript{},
		images:     slices.Clone(images),
		containers: map[string]*Container{},
		changed:    make(chan struct{}),
	}
	tb.Cleanup(r.close)
	return r
}

func (r *Runtime) close() {
	r.mu.Lock()
	r.closed = true
	all := slices.Clone(r.all)
	r.mu.Unlock()
	for _, c := range all {
		c.stopServing()
	}
}

// Script sets the behaviour of the containers of backend id started from now on.
func (r *Runtime) Script(id string, b Behavior) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.behaviors[id] = b
}

// ScriptImage sets the behaviour of the containers started from now on
// from image ref whose backend has no Script of its own: warm pools'
// members, whose IDs the drone picks.
func (r *Runtime) ScriptImage(ref string, b Behavior) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byImage[ref] = b
}

// FailPull makes pulls of ref fail with err (nil: succeed again).
func (r *Runtime) FailPull(ref string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pulls[ref] = &pullScript{err: err}
}

// BlockPull makes pulls of ref wait until ReleasePull (or the end of their
// context).
func (r *Runtime) BlockPull(ref string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pulls[ref] = &pullScript{block: make(chan struct{})}
}

// ReleasePull ends the pulls of ref that BlockPull holds, with err.
func (r *Runtime) ReleasePull(ref string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ps := r.pulls[ref]
	if ps == nil || ps.block == nil {
		return
	}
	ps.err = err
	close(ps.block)
	ps.block = nil
}

// FailList makes List fail with err (nil: succeed again).
func (r *Runtime) FailList(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listErr = err
}

// record appends a call and wakes WaitCall.
func (r *Runtime) record(c Call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recordLocked(c)
}

func (r *Runtime) recordLocked(c Call) {
	r.calls = append(r.calls, c)
	close(r.changed)
	r.changed = make(chan struct{})
}

// Calls returns the recorded calls of the ops given (all when none).
func (r *Runtime) Calls(ops ...Op) []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Call
	for _, c := range r.calls {
		if len(ops) == 0 || slices.Contains(ops, c.Op) {
			out = append(out, c)
		}
	}
	return out
}

// CallsFor returns the recorded calls of the ops given about backend id.
func (r *Runtime) CallsFor(id string, ops ...Op) []Call {
	var out []Call
	for _, c := range r.Calls(ops...) {
		if c.BackendID == id {
			out = append(out, c)
		}
	}
	return out
}

// WaitTimeout bounds WaitCall: far beyond what a healthy test waits.
const WaitTimeout = 10 * time.Second

// WaitCall waits up to WaitTimeout for a call that match accepts, made at
// any time since the Runtime was created, and returns the first such call.
func (r *Runtime) WaitCall(tb testing.TB, match func(Call) bool) Call {
	tb.Helper()
	deadline := time.After(WaitTimeout)
	seen := 0
	for {
		r.mu.Lock()
		calls := r.calls[seen:]
		seen = len(r.calls)
		changed := r.changed
		r.mu.Unlock()
		for _, c := range calls {
			if match(c) {
				return c
			}
		}
		select {
		case <-changed:
		case <-deadline:
			tb.Fatalf("no matching runtime call within %s; calls: %+v", WaitTimeout, r.Calls())
			return Call{}
		}
	}
}

// Container returns the latest container of backend id, or nil.
func (r *Runtime) Container(id string) *Container {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range slices.Backward(r.all) {
		if c.BackendID == id {
			return c
		}
	}
	return nil
}

// Live returns droneID's containers that were not removed, running or
// not, oldest first.
func (r *Runtime) Live(droneID string) []*Container {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*Container
	for _, c := range r.all {
		if _, ok := r.containers[c.ID]; ok && c.DroneID == droneID {
			out = append(out, c)
		}
	}
	return out
}

// Peak is the most containers, running or not, that droneID had at once:
// created and not yet removed.
func (r *Runtime) Peak(droneID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peak[droneID]
}

// AddContainer creates a container as if a drone had started it before:
// running (answering HTTP) or already exited with exitCode.
func (r *Runtime) AddContainer(tb testing.TB, droneID, backendID string, running bool, exitCode int) *Container {
	tb.Helper()
	r.mu.Lock()
	c, err := r.create(docker.ContainerSpec{BackendID: backendID, DroneID: droneID, ImageRef: "stray:latest", Port: 8080}, Behavior{})
	r.mu.Unlock()
	if err != nil {
		tb.Fatal(err)
	}
	if !running {
		c.Exit(exitCode)
	}
	return c
}

// Vanish deletes backend id's container behind the agent's back, as
// `docker rm -f` would.
func (r *Runtime) Vanish(id string) {
	c := r.Container(id)
	if c == nil {
		return
	}
	c.exit(ExitSIGKILL)
	r.mu.Lock()
	delete(r.containers, c.ID)
	r.mu.Unlock()
	c.markRemoved()
}

// lookup returns the container id, or a not-found error as Docker gives.
func (r *Runtime) lookup(id string) (*Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return nil, fmt.Errorf("no such container: %s", id)
	}
	return c, nil
}

func (r *Runtime) backendOf(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.all {
		if c.ID == id {
			return c.BackendID
		}
	}
	return ""
}

// EnsureImage succeeds unless the image's pull is scripted to fail or
// block; PullNever fails for an image not present, as Docker's does.
func (r *Runtime) EnsureImage(ctx context.Context, ref string, policy plane.PullPolicy) error {
	r.mu.Lock()
	r.recordLocked(Call{Op: OpEnsureImage, Ref: ref, Policy: policy})
	ps := r.pulls[ref]
	var block chan struct{}
	if ps != nil {
		block = ps.block
	}
	present := slices.Contains(r.images, ref)
	r.mu.Unlock()
	if policy == plane.PullNever && !present {
		return plane.Errorf(plane.ENOTFOUND, "image %q is not present and pull policy is never", ref)
	}
	if ps != nil {
		if block != nil {
			select {
			case <-block:
			case <-ctx.Done():
				return plane.Errorf(plane.EUNAVAILABLE, "pull image %q: %v", ref, ctx.Err())
			}
		}
		r.mu.Lock()
		err := ps.err
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
	r.mu.Lock()
	if !slices.Contains(r.images, ref) {
		r.images = append(r.images, ref)
	}
	r.mu.Unlock()
	return nil
}

// Start creates and starts a container as its backend's Behavior says.
func (r *Runtime) Start(ctx context.Context, spec docker.ContainerSpec) (docker.Container, error) {
	r.mu.Lock()
	r.recordLocked(Call{Op: OpStart, BackendID: spec.BackendID, Spec: spec})
	b, ok := r.behaviors[spec.BackendID]
	if !ok {
		b = r.byImage[spec.ImageRef]
	}
	r.mu.Unlock()
	if b.StartErr != nil {
		return docker.Container{}, b.StartErr
	}
	if err := ctx.Err(); err != nil {
		return docker.Container{}, err
	}
	r.mu.Lock()
	c, err := r.create(spec, b)
	r.mu.Unlock()
	if err != nil {
		return docker.Container{}, err
	}
	if b.ExitOnStart != nil {
		// As Docker's runtime does, keep the container for its exit code and
		// logs, with no address.
		c.exit(*b.ExitOnStart)
		return docker.Container{ID: c.ID}, nil
	}
	return docker.Container{ID: c.ID, Address: c.addr}, nil
}

// create makes a running container; r.mu is held.
func (r *Runtime) create(spec docker.ContainerSpec, b Behavior) (*Container, error) {
	if r.closed {
		return nil, errors.New("runtime closed")
	}
	for _, c := range r.containers {
		if c.BackendID == spec.BackendID {
			return nil, fmt.Errorf("conflict: the container name %q is already in use by container %s", docker.ContainerNamePrefix+spec.BackendID, c.ID)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.seq++
	c := &Container{
		ID:        fmt.Sprintf("fake%06d", r.seq),
		BackendID: spec.BackendID,
		DroneID:   spec.DroneID,
		Spec:      spec,
		behavior:  b,
		addr:      ln.Addr().String(),
		done:      make(chan struct{}),
		logged:    make(chan struct{}),
		logs:      slices.Clone(b.Logs),
		running:   true,
	}
	c.gate = &gateListener{Listener: ln}
	c.gate.ready.Store(!b.NotReady)
	h := b.Handler
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	}
	c.srv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go c.srv.Serve(c.gate) //nolint:errcheck // ends with Close
	r.containers[c.ID] = c
	r.all = append(r.all, c)
	n := 0
	for _, o := range r.containers {
		if o.DroneID == c.DroneID {
			n++
		}
	}
	r.peak[c.DroneID] = max(r.peak[c.DroneID], n)
	return c, nil
}

// Stop kills the container at once when grace is 0; otherwise it sends
// SIGTERM, which ends the process unless its Behavior ignores it, in which
// case it is killed when grace ends. Like Docker's, it returns once the
// process is gone, and stopping an absent or stopped container is no error.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	r.record(Call{Op: OpStop, ID: id, BackendID: r.backendOf(id), Grace: grace})
	c, err := r.lookup(id)
	if err != nil || !c.Running() {
		return nil
	}
	if grace <= 0 {
		c.exit(ExitSIGKILL)
		return nil
	}
	if !c.behavior.IgnoreSIGTERM {
		c.exit(ExitSIGTERM)
		return nil
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-t.C:
		c.exit(ExitSIGKILL)
		return nil
	case <-c.done: // killed meanwhile
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait returns the container's exit code once it has exited.
func (r *Runtime) Wait(ctx context.Context, id string) (int, error) {
	r.record(Call{Op: OpWait, ID: id, BackendID: r.backendOf(id)})
	c, err := r.lookup(id)
	if err != nil {
		return 0, err
	}
	select {
	case <-c.done:
		return c.ExitCode(), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Remove deletes the container, killing it if it runs; an absent one is no error.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	r.record(Call{Op: OpRemove, ID: id, BackendID: r.backendOf(id)})
	c, err := r.lookup(id)
	if err != nil {
		return nil
	}
	c.exit(ExitSIGKILL)
	r.mu.Lock()
	delete(r.containers, id)
	r.mu.Unlock()
	c.markRemoved()
	return nil
}

// List returns droneID's containers, oldest first.
func (r *Runtime) List(ctx context.Context, droneID string) ([]docker.ContainerState, error) {
	r.record(Call{Op: OpList})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.listErr != nil {
		return nil, r.listErr
	}
	var out []docker.ContainerState
	for _, c := range r.all {
		if _, ok := r.containers[c.ID]; !ok || c.DroneID != droneID {
			continue
		}
		out = append(out, c.state())
	}
	return out, nil
}

// Logs calls fn for each line of the container's output from its start;
// with follow, until the process has exited and its output is read.
func (r *Runtime) Logs(ctx context.Context, id string, follow bool, fn func(stream, line string)) error {
	r.record(Call{Op: OpLogs, ID: id, BackendID: r.backendOf(id)})
	c, err := r.lookup(id)
	if err != nil {
		return err
	}
	next := 0
	for {
		c.mu.Lock()
		lines := c.logs[next:]
		next = len(c.logs)
		logged, exited := c.logged, !c.running
		c.mu.Unlock()
		for _, l := range lines {
			fn(l.Stream, l.Text)
		}
		if len(lines) > 0 {
			continue // more may have come meanwhile
		}
		if !follow || exited {
			return nil
		}
		select {
		case <-logged:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Stats returns the Behavior's stats while the container runs.
func (r *Runtime) Stats(ctx context.Context, id string) (docker.Stats, error) {
	r.record(Call{Op: OpStats, ID: id, BackendID: r.backendOf(id)})
	c, err := r.lookup(id)
	if err != nil {
		return docker.Stats{}, err
	}
	if !c.Running() {
		return docker.Stats{}, fmt.Errorf("container %s is not running", id)
	}
	return c.behavior.Stats, nil
}

// Images returns the images present, unsorted as Docker's may be.
func (r *Runtime) Images(ctx context.Context) ([]string, error) {
	r.record(Call{Op: OpImages})
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.images), nil
}

// Container is one fake container: a process that answers HTTP on a
// loopback port once ready, logs, and exits when told to.
type Container struct {
	ID        string
	BackendID string
	DroneID   string
	Spec      docker.ContainerSpec

	behavior Behavior
	addr     string
	gate     *gateListener
	srv      *http.Server
	done     chan struct{} // closed when the process exits

	mu       sync.Mutex
	running  bool
	paused   bool
	removed  bool
	exitCode int
	finished time.Time
	logs     []LogLine
	logged   chan struct{} // closed and replaced at every new line and at exit
}

// Address is where the container's port is published.
func (c *Container) Address() string { return c.addr }

// Serve makes the process answer HTTP from now on.
func (c *Container) Serve() { c.gate.ready.Store(true) }

// Exit makes the process exit by itself with code.
func (c *Container) Exit(code int) { c.exit(code) }

// Log writes a line to the container's output.
func (c *Container) Log(stream, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logs = append(c.logs, LogLine{Stream: stream, Text: text})
	close(c.logged)
	c.logged = make(chan struct{})
}

// Running reports whether the process runs.
func (c *Container) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
}

// Removed reports whether the container was removed.
func (c *Container) Removed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removed
}

// Done is closed when the process has exited.
func (c *Container) Done() <-chan struct{} { return c.done }

// ExitCode is the process's exit code, once it has exited.
func (c *Container) ExitCode() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exitCode
}

// NeverStarted puts the container in Docker's state of one created but not
// started: not running, exit code 0, never finished. A drone killed between
// create and start leaves such a container.
func (c *Container) NeverStarted() {
	c.exit(0)
	c.mu.Lock()
	c.finished = time.Time{}
	c.mu.Unlock()
}

func (c *Container) exit(code int) {
	c.mu.Lock()
	if !c.running {
		c.mu.Unlock()
		return
	}
	c.running, c.exitCode, c.finished = false, code, time.Now()
	close(c.logged)
	c.logged = make(chan struct{})
	c.mu.Unlock()
	c.stopServing()
	close(c.done)
}

func (c *Container) markRemoved() {
	c.mu.Lock()
	c.removed = true
	c.mu.Unlock()
}

// stopServing closes the port: connections are refused from now on.
func (c *Container) stopServing() {
	c.gate.ready.Store(false)
	c.srv.Close()
}

func (c *Container) state() docker.ContainerState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := docker.ContainerState{ID: c.ID, BackendID: c.BackendID, Pool: c.Spec.Pool, Running: c.running, Paused: c.running && c.paused, ExitCode: c.exitCode, FinishedAt: c.finished}
	if c.running {
		st.Address = c.addr
	}
	return st
}

// gateListener accepts connections and, until the process is ready, closes
// them at once: a probe fails fast, as against a port nobody listens on yet,
// and the address stays the container's.
type gateListener struct {
	net.Listener
	ready atomic.Bool
}

func (l *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.ready.Load() {
			return c, nil
		}
		c.Close()
	}
}

// Pause freezes a running container: Paused reports it until Unpause.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	r.record(Call{Op: OpPause, ID: id, BackendID: r.backendOf(id)})
	c, err := r.lookup(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return fmt.Errorf("container %s is not running", id)
	}
	c.paused = true
	return nil
}

// Unpause thaws a paused container.
func (r *Runtime) Unpause(ctx context.Context, id string) error {
	r.record(Call{Op: OpUnpause, ID: id, BackendID: r.backendOf(id)})
	c, err := r.lookup(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.paused {
		return fmt.Errorf("container %s is not paused", id)
	}
	c.paused = false
	return nil
}

// Paused reports whether the container is paused.
func (c *Container) Paused() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paused
}
