package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"plane"
)

// demoImage is the test backend built from testdata/demo.
const demoImage = "plane-demo:latest"

// buildDemo is the build line of the Makefile, run from the module root.
const buildDemo = `CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o testdata/demo/demo ./testdata/demo && docker build -q -t plane-demo:latest testdata/demo`

var (
	// testRuntime is shared by the tests; nil when Docker is unreachable,
	// and then dockerErr says why.
	testRuntime *Runtime
	dockerErr   error
	// testDrone labels the containers of this run, so that List sees only them.
	testDrone = "test-" + randHex(6)
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	ctx := context.Background()
	testRuntime, dockerErr = New(ctx)
	if dockerErr == nil {
		defer testRuntime.Close()
		if err := ensureDemoImage(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// ensureDemoImage builds plane-demo:latest when it is missing, so that the
// tests work from a clean clone.
func ensureDemoImage(ctx context.Context) error {
	if _, err := testRuntime.client.ImageInspect(ctx, demoImage); err == nil {
		return nil
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("find the module root: %w", err)
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", buildDemo)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", demoImage, err, out)
	}
	return nil
}

// mustRuntime returns the shared runtime, or skips the test when Docker is
// unreachable; under CI=true a missing Docker fails it.
func mustRuntime(tb testing.TB) *Runtime {
	tb.Helper()
	if dockerErr != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("Docker is required under CI=true: %v", dockerErr)
		}
		tb.Skipf("skipping: %v", dockerErr)
	}
	return testRuntime
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// demoSpec is the spec of a demo backend with the env a drone would give it.
func demoSpec(env map[string]string) ContainerSpec {
	id := plane.NewBackendID()
	e := map[string]string{"PORT": "8080", "PLANE_BACKEND_ID": id, "PLANE_BACKEND_KEY": "key-" + id}
	for k, v := range env {
		e[k] = v
	}
	return ContainerSpec{BackendID: id, DroneID: testDrone, ImageRef: demoImage, Port: 8080, Env: e}
}

// mustStart starts spec and removes the container when the test ends.
func mustStart(tb testing.TB, r *Runtime, spec ContainerSpec) Container {
	tb.Helper()
	c, err := r.Start(context.Background(), spec)
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	removeAtEnd(tb, r, c.ID)
	return c
}

func removeAtEnd(tb testing.TB, r *Runtime, id string) {
	tb.Cleanup(func() {
		if err := r.Remove(context.Background(), id); err != nil {
			tb.Errorf("cleanup: %v", err)
		}
	})
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// waitHTTP polls http://addr+path until it answers 200 and returns the body.
func waitHTTP(tb testing.TB, addr, path string) string {
	tb.Helper()
	body, err := pollHTTP(addr, path, 15*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

func pollHTTP(addr, path string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		resp, err := httpClient.Get("http://" + addr + path)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return string(body), nil
			}
			last = fmt.Errorf("status %s", resp.Status)
		} else {
			last = err
		}
		time.Sleep(2 * time.Millisecond)
	}
	return "", fmt.Errorf("GET http://%s%s: no 200 within %s: %v", addr, path, timeout, last)
}
