// Package dockertest gives tests a real Docker runtime and the demo image
// (plane-demo:latest, built FROM scratch from testdata/demo), like httptest
// gives them a server.
package dockertest

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"plane"
	"plane/drone/docker"
)

// DemoImage is the image of testdata/demo.
const DemoImage = "plane-demo:latest"

// DemoPort is the container port the demo backend listens on (its PORT).
const DemoPort = 8080

// buildDemo is the Makefile's test-images line, run from the module root.
const buildDemo = `CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o testdata/demo/demo ./testdata/demo && docker build -q -t plane-demo:latest testdata/demo`

var (
	runtime   *docker.Runtime
	dockerErr error
)

// PublishIP is where the tests' containers publish their ports. Not
// 127.0.0.1: with Docker's userland proxy off, a published port is a NAT
// rule for that address, and the kernel may give the same port number on
// 127.0.0.1 to a test server of another package running at the same time,
// whose clients would then reach the container.
var PublishIP = netip.MustParseAddr("127.0.0.3")

// Setup connects to Docker and builds the demo image when it is missing, so
// that tests work from a clean clone. Call it from TestMain. An unreachable
// Docker is not an error here: Runtime then skips (or fails under CI).
func Setup(ctx context.Context) error {
	runtime, dockerErr = docker.Open(ctx, docker.Config{PublishIP: PublishIP})
	if dockerErr != nil {
		return nil
	}
	if err := exec.CommandContext(ctx, "docker", "image", "inspect", DemoImage).Run(); err == nil {
		return nil
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("find the module root: %w", err)
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", buildDemo)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", DemoImage, err, out)
	}
	return nil
}

// Runtime returns the shared runtime, or skips the test when Docker is
// unreachable; under CI=true a missing Docker fails it instead.
func Runtime(tb testing.TB) *docker.Runtime {
	tb.Helper()
	if runtime == nil && dockerErr == nil {
		tb.Fatal("dockertest.Setup was not called from TestMain")
	}
	if dockerErr != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("Docker is required under CI=true: %v", dockerErr)
		}
		tb.Skipf("skipping: %v", dockerErr)
	}
	return runtime
}

// RemoveDroneContainers force-removes every container labelled with the drone.
func RemoveDroneContainers(tb testing.TB, droneID string) {
	tb.Helper()
	if runtime == nil {
		return
	}
	ctx := context.Background()
	cs, err := runtime.List(ctx, droneID)
	if err != nil {
		tb.Errorf("list containers of drone %s: %v", droneID, err)
		return
	}
	for _, c := range cs {
		if err := runtime.Remove(ctx, c.ID); err != nil {
			tb.Errorf("remove container %s: %v", c.ID, err)
		}
	}
}

// DemoSpec is the spec of a demo backend of drone droneID, under a fresh
// backend ID, with the env a drone would give it (PORT, PLANE_BACKEND_ID,
// PLANE_BACKEND_KEY) and then env, which may override it.
func DemoSpec(droneID string, env map[string]string) docker.ContainerSpec {
	id := plane.NewBackendID()
	e := map[string]string{"PORT": fmt.Sprint(DemoPort), "PLANE_BACKEND_ID": id, "PLANE_BACKEND_KEY": "key-" + id}
	maps.Copy(e, env)
	return docker.ContainerSpec{BackendID: id, DroneID: droneID, ImageRef: DemoImage, Port: DemoPort, Env: e}
}

// Start starts spec on the shared runtime (skipping the test as Runtime
// does) and removes the container when the test ends.
func Start(tb testing.TB, spec docker.ContainerSpec) docker.Container {
	tb.Helper()
	r := Runtime(tb)
	c, err := r.Start(context.Background(), spec)
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Cleanup(func() {
		if err := r.Remove(context.Background(), c.ID); err != nil {
			tb.Errorf("cleanup: %v", err)
		}
	})
	return c
}
