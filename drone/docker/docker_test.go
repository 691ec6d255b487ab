package docker_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"plane"
	"plane/drone/docker"
	"plane/drone/docker/dockertest"
)

func TestNew(t *testing.T) {
	r := dockertest.Runtime(t)
	// The daemon here may be older than the client: the version must have
	// been negotiated down to one it speaks.
	ping, err := docker.EngineClient(r).Ping(context.Background(), client.PingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.APIVersion(); got != ping.APIVersion && got != client.MaxAPIVersion {
		t.Errorf("APIVersion = %s, daemon speaks %s", got, ping.APIVersion)
	}
	t.Logf("API version %s (daemon %s)", r.APIVersion(), ping.APIVersion)
}

func TestNewUnreachable(t *testing.T) {
	sock := "unix://" + t.TempDir() + "/docker.sock"
	t.Setenv("DOCKER_HOST", sock)
	_, err := docker.New(context.Background())
	if err == nil {
		t.Fatal("New with no daemon: no error")
	}
	want := "cannot reach Docker at " + sock + ": is dockerd running? (start it with: dockerd --userland-proxy=false)"
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
}

func TestEnsureImage(t *testing.T) {
	r := dockertest.Runtime(t)
	ctx := context.Background()
	// A present image that can only be pulled from a registry that is not
	// there (on loopback, so nothing leaves the machine): a pull fails, which
	// shows whether EnsureImage pulled.
	unpullable := "127.0.0.1:1/plane-test-" + randHex(4) + ":latest"
	if _, err := docker.EngineClient(r).ImageTag(ctx, client.ImageTagOptions{Source: dockertest.DemoImage, Target: unpullable}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		docker.EngineClient(r).ImageRemove(context.Background(), unpullable, client.ImageRemoveOptions{})
	})
	absent := "127.0.0.1:1/plane-absent-" + randHex(4) + ":latest"

	for _, tc := range []struct {
		ref     string
		policy  plane.PullPolicy
		wantErr string // "" for success
		code    plane.ErrorCode
	}{
		{dockertest.DemoImage, plane.PullNever, "", ""},
		{dockertest.DemoImage, plane.PullIfNotPresent, "", ""},
		{unpullable, plane.PullIfNotPresent, "", ""},
		{unpullable, plane.PullAlways, `pull image "` + unpullable + `"`, plane.EUNAVAILABLE},
		{absent, plane.PullNever, `image "` + absent + `" is not present and pull policy is never`, plane.ENOTFOUND},
		{absent, plane.PullIfNotPresent, `pull image "` + absent + `"`, plane.EUNAVAILABLE},
		{absent, plane.PullAlways, `pull image "` + absent + `"`, plane.EUNAVAILABLE},
		{dockertest.DemoImage, "sometimes", `unknown pull policy "sometimes"`, plane.EINVALID},
	} {
		t.Run(string(tc.policy)+"/"+tc.ref, func(t *testing.T) {
			err := r.EnsureImage(ctx, tc.ref, tc.policy)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
			if got := plane.ErrorCodeOf(err); got != tc.code {
				t.Errorf("code = %s, want %s", got, tc.code)
			}
		})
	}
}

func TestImages(t *testing.T) {
	r := dockertest.Runtime(t)
	refs, err := r.Images(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(refs, dockertest.DemoImage) {
		t.Errorf("Images() = %v, want %s among them", refs, dockertest.DemoImage)
	}
	for _, ref := range refs {
		if strings.Contains(ref, "<none>") {
			t.Errorf("Images() lists %q", ref)
		}
	}
}

func TestStart(t *testing.T) {
	r := dockertest.Runtime(t)
	spec := demoSpec(map[string]string{"DEMO_GREETING": "hello world", "DEMO_EMPTY": ""})
	spec.CPUMillis = 500
	spec.MemoryMB = 64
	c := dockertest.Start(t, spec)

	host, _, err := net.SplitHostPort(c.Address)
	if err != nil || host != dockertest.PublishIP.String() {
		t.Fatalf("Address = %q, want %s:<port>", c.Address, dockertest.PublishIP)
	}
	if body := waitHTTP(t, c.Address, "/healthz"); body != "ok" {
		t.Errorf("/healthz = %q", body)
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(waitHTTP(t, c.Address, "/env")), &env); err != nil {
		t.Fatal(err)
	}
	for k, v := range spec.Env {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}

	in, err := docker.EngineClient(r).ContainerInspect(context.Background(), c.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, hc := in.Container.Config, in.Container.HostConfig
	if got := cfg.Labels[docker.LabelBackend]; got != spec.BackendID {
		t.Errorf("label %s = %q, want %q", docker.LabelBackend, got, spec.BackendID)
	}
	if got := cfg.Labels[docker.LabelDrone]; got != testDrone {
		t.Errorf("label %s = %q, want %q", docker.LabelDrone, got, testDrone)
	}
	if want := "/" + docker.ContainerNamePrefix + spec.BackendID; in.Container.Name != want {
		t.Errorf("name = %q, want %q", in.Container.Name, want)
	}
	if hc.NanoCPUs != 500_000_000 || hc.Memory != 64<<20 {
		t.Errorf("NanoCPUs, Memory = %d, %d; want 500000000, %d", hc.NanoCPUs, hc.Memory, 64<<20)
	}
	if hc.RestartPolicy.Name != "" && hc.RestartPolicy.Name != "no" {
		t.Errorf("restart policy = %q", hc.RestartPolicy.Name)
	}

	st, err := r.Inspect(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := (docker.ContainerState{ID: c.ID, BackendID: spec.BackendID, Running: true, Address: c.Address}); st != want {
		t.Errorf("Inspect = %+v\nwant      %+v", st, want)
	}
}

// TestStartPublishIP publishes on another loopback address, as a drone in a
// network namespace of its own publishes on the address it reaches its
// daemon through: the container answers there, and only there.
func TestStartPublishIP(t *testing.T) {
	dockertest.Runtime(t) // skips without Docker
	ctx := context.Background()
	ip := netip.MustParseAddr("127.0.0.2")
	r, err := docker.Open(ctx, docker.Config{PublishIP: ip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if got := r.PublishIP(); got != ip {
		t.Errorf("PublishIP() = %s, want %s", got, ip)
	}
	drone := "test-publish-" + randHex(4)
	spec := demoSpec(nil)
	spec.DroneID = drone
	c, err := r.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Remove(context.Background(), c.ID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	host, _, err := net.SplitHostPort(c.Address)
	if err != nil || host != ip.String() {
		t.Fatalf("Address = %q, want %s:<port>", c.Address, ip)
	}
	if body := waitHTTP(t, c.Address, "/healthz"); body != "ok" {
		t.Errorf("/healthz on %s = %q", c.Address, body)
	}
	// Docker publishes it on ip only. (Dialing 127.0.0.1:port would not
	// say: another test's container may have that port there.)
	in, err := docker.EngineClient(r).ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for p, bindings := range in.Container.NetworkSettings.Ports {
		for _, b := range bindings {
			if b.HostIP.String() != ip.String() {
				t.Errorf("container port %s is published on %s:%s, want only on %s", p, b.HostIP, b.HostPort, ip)
			}
		}
	}
	st, err := r.Inspect(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Address != c.Address {
		t.Errorf("Inspect().Address = %q, want %q", st.Address, c.Address)
	}
	list, err := r.List(ctx, drone)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Address != c.Address {
		t.Errorf("List = %+v, want one container at %s", list, c.Address)
	}
}

func TestOpenPublishIPUnspecified(t *testing.T) {
	for _, ip := range []string{"0.0.0.0", "::"} {
		_, err := docker.Open(context.Background(), docker.Config{PublishIP: netip.MustParseAddr(ip)})
		if err == nil || !strings.Contains(err.Error(), "want one address") {
			t.Errorf("Open(PublishIP %s) = %v, want a refusal", ip, err)
		}
	}
}

func TestStartErrors(t *testing.T) {
	r := dockertest.Runtime(t)
	ctx := context.Background()

	t.Run("absent image", func(t *testing.T) {
		spec := demoSpec(nil)
		spec.ImageRef = "127.0.0.1:1/plane-absent-" + randHex(4) + ":latest"
		if _, err := r.Start(ctx, spec); err == nil || !strings.Contains(err.Error(), spec.ImageRef) {
			t.Fatalf("err = %v, want one naming the image", err)
		}
	})

	t.Run("bad port", func(t *testing.T) {
		spec := demoSpec(nil)
		spec.Port = 70000
		if _, err := r.Start(ctx, spec); err == nil {
			t.Fatal("no error")
		}
	})

	t.Run("name taken", func(t *testing.T) {
		spec := demoSpec(nil)
		c := dockertest.Start(t, spec)
		if _, err := r.Start(ctx, spec); err == nil {
			t.Fatal("second Start of the same backend: no error")
		}
		if st, err := r.Inspect(ctx, c.ID); err != nil || !st.Running {
			t.Fatalf("first container after a second Start: %+v, %v", st, err)
		}
	})

	t.Run("exits at once", func(t *testing.T) {
		// Not a start failure: the container stays for its exit code and logs.
		c := dockertest.Start(t, demoSpec(map[string]string{"DEMO_MODE": "exit", "DEMO_EXIT_CODE": "3"}))
		if code, err := r.Wait(ctx, c.ID); err != nil || code != 3 {
			t.Fatalf("Wait = %d, %v; want 3", code, err)
		}
		var lines []string
		if err := r.Logs(ctx, c.ID, false, func(_, line string) { lines = append(lines, line) }); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(lines, "demo: exiting with code 3") {
			t.Errorf("logs = %q", lines)
		}
	})

	t.Run("start fails", func(t *testing.T) {
		// An image whose entrypoint does not exist: create succeeds, start fails.
		img := "plane-test-noentry:" + randHex(4)
		build := exec.Command("docker", "build", "-q", "-t", img, "-")
		build.Stdin = strings.NewReader("FROM " + dockertest.DemoImage + "\nENTRYPOINT [\"/nonexistent\"]\n")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("docker build: %v\n%s", err, out)
		}
		t.Cleanup(func() {
			docker.EngineClient(r).ImageRemove(context.Background(), img, client.ImageRemoveOptions{Force: true})
		})
		spec := demoSpec(nil)
		spec.ImageRef = img
		_, err := r.Start(ctx, spec)
		if err == nil {
			t.Fatal("no error")
		}
		t.Logf("error: %v", err)
		if _, err := r.Inspect(ctx, docker.ContainerNamePrefix+spec.BackendID); !docker.IsNotFound(err) {
			t.Errorf("container left behind after a failed start (Inspect err = %v)", err)
		}
	})
}

func TestStop(t *testing.T) {
	r := dockertest.Runtime(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		env      map[string]string
		grace    time.Duration
		wantCode int
		minTime  time.Duration // the stop must take at least this long
		maxTime  time.Duration // and at most this long
	}{
		{"soft", nil, 10 * time.Second, 0, 0, 5 * time.Second},
		{"ignores SIGTERM", map[string]string{"DEMO_IGNORE_SIGTERM": "1"}, time.Second, 137, time.Second, 8 * time.Second},
		{"hard", nil, 0, 137, 0, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dockertest.Start(t, demoSpec(tc.env))
			// Once it answers, its signal handlers are in place.
			waitHTTP(t, c.Address, "/healthz")
			start := time.Now()
			if err := r.Stop(ctx, c.ID, tc.grace); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if took < tc.minTime || took > tc.maxTime {
				t.Errorf("Stop took %s, want between %s and %s", took, tc.minTime, tc.maxTime)
			}
			code, err := r.Wait(ctx, c.ID)
			if err != nil || code != tc.wantCode {
				t.Errorf("Wait = %d, %v; want %d", code, err, tc.wantCode)
			}
			// Stopping a stopped container is fine.
			if err := r.Stop(ctx, c.ID, tc.grace); err != nil {
				t.Errorf("second Stop: %v", err)
			}
		})
	}
}

func TestStopAbsent(t *testing.T) {
	r := dockertest.Runtime(t)
	for _, grace := range []time.Duration{0, time.Second} {
		if err := r.Stop(context.Background(), "plane-absent-"+randHex(6), grace); err != nil {
			t.Errorf("Stop(absent, %s) = %v", grace, err)
		}
	}
}

func TestWaitExitCodes(t *testing.T) {
	r := dockertest.Runtime(t)
	ctx := context.Background()
	for _, code := range []int{0, 3} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			t.Parallel()
			c := dockertest.Start(t, demoSpec(map[string]string{"DEMO_MODE": "exit", "DEMO_EXIT_CODE": strconv.Itoa(code), "DEMO_EXIT_AFTER_MS": "300"}))
			got, err := r.Wait(ctx, c.ID)
			if err != nil || got != code {
				t.Fatalf("Wait = %d, %v; want %d", got, err, code)
			}
			// Waiting again for an exited container returns at once.
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if got, err := r.Wait(wctx, c.ID); err != nil || got != code {
				t.Errorf("second Wait = %d, %v; want %d", got, err, code)
			}
			st, err := r.Inspect(ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if st.Running || st.ExitCode != code || st.FinishedAt.IsZero() || st.Address != "" {
				t.Errorf("Inspect = %+v, want stopped with code %d, a finish time and no address", st, code)
			}
		})
	}
}

func TestWaitCancel(t *testing.T) {
	r := dockertest.Runtime(t)
	c := dockertest.Start(t, demoSpec(map[string]string{"DEMO_MODE": "hang"}))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := r.Wait(ctx, c.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait on a running container with a deadline: %v", err)
	}
}

// logLine is one call of a Logs callback.
type logLine struct{ stream, line string }

func TestLogs(t *testing.T) {
	r := dockertest.Runtime(t)
	ctx := context.Background()
	spec := demoSpec(nil)
	c := dockertest.Start(t, spec)

	var mu sync.Mutex
	var followed []logLine
	done := make(chan error, 1)
	go func() {
		done <- r.Logs(ctx, c.ID, true, func(stream, line string) {
			mu.Lock()
			followed = append(followed, logLine{stream, line})
			mu.Unlock()
		})
	}()

	waitHTTP(t, c.Address, "/healthz")
	waitHTTP(t, c.Address, "/env")
	if err := r.Stop(ctx, c.ID, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Logs(follow) = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Logs(follow) did not return after the container stopped")
	}

	var all []logLine
	if err := r.Logs(ctx, c.ID, false, func(stream, line string) { all = append(all, logLine{stream, line}) }); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(followed, all) {
		t.Errorf("followed lines differ from the lines read afterwards:\n%q\n%q", followed, all)
	}
	want := []struct{ stream, contains string }{
		{"stderr", `demo: starting backend "` + spec.BackendID + `"`},
		{"stdout", "demo: listening on"},
		{"stdout", "demo: GET /healthz 200"},
		{"stdout", "demo: GET /env 200"},
		{"stdout", "demo: got terminated, exiting"},
	}
	for _, w := range want {
		if !slices.ContainsFunc(all, func(l logLine) bool { return l.stream == w.stream && strings.Contains(l.line, w.contains) }) {
			t.Errorf("no %s line containing %q in %q", w.stream, w.contains, all)
		}
	}
	for _, l := range all {
		if strings.ContainsAny(l.line, "\r\n") {
			t.Errorf("line %q holds a line ending", l.line)
		}
	}
}

func TestLogsCancel(t *testing.T) {
	r := dockertest.Runtime(t)
	c := dockertest.Start(t, demoSpec(nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Logs(ctx, c.ID, true, func(string, string) {}) }()
	waitHTTP(t, c.Address, "/healthz")
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Logs after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Logs(follow) did not return after its context ended")
	}
}

func TestList(t *testing.T) {
	r := dockertest.Runtime(t)
	ctx := context.Background()
	// A drone of its own, so that other tests' containers do not show.
	drone := "test-list-" + randHex(4)
	running := demoSpec(nil)
	running.DroneID = drone
	// Warm pools' members carry their pool's label, running or not.
	running.Pool = "demo"
	exited := demoSpec(map[string]string{"DEMO_MODE": "exit", "DEMO_EXIT_CODE": "3"})
	exited.DroneID, exited.Pool = drone, "other-image"
	other := demoSpec(nil)
	other.DroneID = drone + "-other"

	rc := dockertest.Start(t, running)
	ec := dockertest.Start(t, exited)
	dockertest.Start(t, other)
	if _, err := r.Wait(ctx, ec.ID); err != nil {
		t.Fatal(err)
	}

	got, err := r.List(ctx, drone)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b docker.ContainerState) int { return strings.Compare(a.BackendID, b.BackendID) })
	want := []docker.ContainerState{
		{ID: rc.ID, BackendID: running.BackendID, Pool: "demo", Running: true, Address: rc.Address},
		{ID: ec.ID, BackendID: exited.BackendID, Pool: "other-image", ExitCode: 3},
	}
	slices.SortFunc(want, func(a, b docker.ContainerState) int { return strings.Compare(a.BackendID, b.BackendID) })
	if len(got) != len(want) {
		t.Fatalf("List = %+v\nwant   %+v", got, want)
	}
	for i := range want {
		if got[i].ID == ec.ID && got[i].FinishedAt.IsZero() {
			t.Errorf("exited container has no finish time")
		}
		got[i].FinishedAt = time.Time{}
		if got[i] != want[i] {
			t.Errorf("List[%d] = %+v\nwant      %+v", i, got[i], want[i])
		}
	}

	if got, err := r.List(ctx, "test-nobody-"+randHex(4)); err != nil || len(got) != 0 {
		t.Errorf("List(unknown drone) = %v, %v", got, err)
	}
}

func TestRemove(t *testing.T) {
	r := dockertest.Runtime(t)
	ctx := context.Background()
	c := dockertest.Start(t, demoSpec(nil))
	if err := r.Remove(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	_, err := r.Inspect(ctx, c.ID)
	if !docker.IsNotFound(err) {
		t.Fatalf("Inspect of a removed container: %v, want not found", err)
	}
	if err := r.Remove(ctx, c.ID); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if docker.IsNotFound(errors.New("other")) || docker.IsNotFound(nil) {
		t.Error("IsNotFound is true for other errors")
	}
}

func TestStats(t *testing.T) {
	r := dockertest.Runtime(t)
	ctx := context.Background()
	spec := demoSpec(nil)
	spec.MemoryMB = 64
	c := dockertest.Start(t, spec)
	waitHTTP(t, c.Address, "/healthz")
	for i := range 2 {
		s, err := r.Stats(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("stats %d: %+v", i, s)
		if s.MemoryBytes == 0 || s.MemoryBytes > 64<<20 {
			t.Errorf("MemoryBytes = %d", s.MemoryBytes)
		}
		if s.MemoryLimit != 64<<20 {
			t.Errorf("MemoryLimit = %d, want %d", s.MemoryLimit, 64<<20)
		}
		if s.CPUPercent < 0 || s.CPUPercent > 100*1024 {
			t.Errorf("CPUPercent = %f", s.CPUPercent)
		}
	}
	if err := r.Remove(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Stats(ctx, c.ID); !docker.IsNotFound(err) {
		t.Errorf("Stats of a removed container: %v", err)
	}
}

// Pause freezes a container without stopping it: Inspect and List say it
// runs, paused; after Unpause it answers as before.
func TestPauseUnpause(t *testing.T) {
	r := dockertest.Runtime(t)
	ctx := context.Background()
	drone := "test-pause-" + randHex(4)
	spec := demoSpec(nil)
	spec.DroneID = drone
	c := dockertest.Start(t, spec)
	if body := waitHTTP(t, c.Address, "/healthz"); body != "ok" {
		t.Fatalf("/healthz = %q", body)
	}
	if err := r.Pause(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	st, err := r.Inspect(ctx, c.ID)
	if err != nil || !st.Running || !st.Paused {
		t.Fatalf("Inspect after Pause: %+v, %v; want running and paused", st, err)
	}
	list, err := r.List(ctx, drone)
	if err != nil || len(list) != 1 || !list[0].Running || !list[0].Paused || list[0].Address != c.Address {
		t.Fatalf("List after Pause: %+v, %v; want it running, paused, at %s", list, err, c.Address)
	}
	if err := r.Pause(ctx, c.ID); err == nil {
		t.Error("pausing a paused container succeeded")
	}
	if err := r.Unpause(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if st, err := r.Inspect(ctx, c.ID); err != nil || st.Paused {
		t.Fatalf("Inspect after Unpause: %+v, %v", st, err)
	}
	if body := waitHTTP(t, c.Address, "/healthz"); body != "ok" {
		t.Errorf("/healthz after Unpause = %q", body)
	}
}
