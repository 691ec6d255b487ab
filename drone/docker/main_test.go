package docker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"plane/drone/docker"
	"plane/drone/docker/dockertest"
)

// testDrone labels the containers of this run, so that List sees only them.
var testDrone = "test-" + randHex(6)

func TestMain(m *testing.M) {
	if err := dockertest.Setup(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// demoSpec is the spec of a demo backend of this run's drone.
func demoSpec(env map[string]string) docker.ContainerSpec {
	return dockertest.DemoSpec(testDrone, env)
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
