package proxy

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"plane"
	"plane/drone/proxy/proxytest"
)

// Running out of file descriptors once stopped the proxy for good: Serve
// returned on EMFILE while the drone went on reporting healthy. These tests
// run the proxy in a child process whose descriptor limit they lower, flood
// it with connections, close them, and check that the next request is
// served.

// fdChildEnv carries the child's MaxConns; its presence makes
// TestFDChild the child.
const fdChildEnv = "PLANE_PROXY_FD_CHILD"

// fdLimit is the child's RLIMIT_NOFILE; flood is more connections than that.
const (
	fdLimit = 200
	flood   = 300
)

// TestFDChild is the child: a proxy and a recording backend in one process
// limited to fdLimit descriptors. It prints "addr <proxy address>", then a
// "health <state>" line whenever Health changes, and exits when its input
// ends.
func TestFDChild(t *testing.T) {
	arg, ok := os.LookupEnv(fdChildEnv)
	if !ok {
		t.Skip("run by TestProxyFDExhaustion")
	}
	maxConns, err := strconv.Atoi(arg)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: fdLimit, Max: fdLimit}); err != nil {
		t.Fatal(err)
	}
	rec := proxytest.NewRecorder()
	bln := listenLoopback(t)
	go rec.Serve(bln)
	p := New(Config{Domain: testDomain, MaxConns: maxConns, Logger: slog.New(slog.DiscardHandler)})
	p.SetRoute(Route{BackendID: "b1", Address: bln.Addr().String(), Status: plane.StatusReady, Public: true})
	pln := listenLoopback(t)
	go p.Serve(pln, false)
	fmt.Printf("addr %s maxconns %d\n", pln.Addr(), p.maxConns)
	go func() {
		last := "-"
		for {
			if h := p.Health(); h != last {
				fmt.Printf("health %s\n", h)
				last = h
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// fdChild is the parent's handle on a child proxy.
type fdChild struct {
	addr   string
	health chan string
}

func startFDChild(t *testing.T, maxConns int) *fdChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFDChild$", "-test.v")
	cmd.Env = append(os.Environ(), fdChildEnv+"="+strconv.Itoa(maxConns))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	c := &fdChild{health: make(chan string, 100)}
	lines := bufio.NewScanner(stdout)
	addr := make(chan string, 1)
	go func() {
		for lines.Scan() {
			switch l := lines.Text(); {
			case strings.HasPrefix(l, "addr "):
				addr <- strings.Fields(l)[1]
				t.Log("child: " + l)
			case strings.HasPrefix(l, "health "):
				c.health <- strings.TrimPrefix(l, "health ")
			}
		}
		close(c.health)
	}()
	select {
	case c.addr = <-addr:
	case <-time.After(20 * time.Second):
		t.Fatal("the child proxy did not start")
	}
	return c
}

// waitHealth waits for a health line that satisfies ok.
func (c *fdChild) waitHealth(t *testing.T, what string, ok func(string) bool) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case h, open := <-c.health:
			if !open {
				t.Fatalf("the child exited before %s", what)
			}
			if ok(h) {
				return
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// get sends one request on a new connection and returns the status, or 0
// when the connection fails.
func (c *fdChild) get() int {
	conn, err := net.DialTimeout("tcp", c.addr, 2*time.Second)
	if err != nil {
		return 0
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	io.WriteString(conn, "GET /after HTTP/1.1\r\nHost: b1.plane.localhost\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// floodConns opens n connections to addr and holds them.
func floodConns(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("flood: %v after %d connections", err, len(conns))
		}
		conns = append(conns, c)
	}
	return conns
}

func TestProxyFDExhaustion(t *testing.T) {
	t.Parallel() // it waits more than it works
	t.Run("no cap: accept fails, backs off, recovers", func(t *testing.T) {
		c := startFDChild(t, -1)
		c.waitHealth(t, "the first health report", func(h string) bool { return h == "" })
		conns := floodConns(t, c.addr, flood)
		c.waitHealth(t, "the proxy to report that it cannot accept", func(h string) bool {
			return strings.Contains(h, "cannot accept") && strings.Contains(h, "too many open files")
		})
		for _, conn := range conns {
			conn.Close()
		}
		waitFor(t, "the proxy to serve again", func() bool { return c.get() == 200 })
		c.waitHealth(t, "the proxy to report healthy again", func(h string) bool { return h == "" })
	})
	t.Run("default cap: 503 past it, never out of descriptors", func(t *testing.T) {
		c := startFDChild(t, 0)
		c.waitHealth(t, "the first health report", func(h string) bool { return h == "" })
		conns := floodConns(t, c.addr, flood)
		if got := c.get(); got != 503 {
			t.Fatalf("a request past the cap got %d, want 503", got)
		}
		for _, conn := range conns {
			conn.Close()
		}
		waitFor(t, "the proxy to serve again", func() bool { return c.get() == 200 })
		select {
		case h := <-c.health:
			t.Fatalf("health changed to %q under a capped flood", h)
		default:
		}
	})
}
