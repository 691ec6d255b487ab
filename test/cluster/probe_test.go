package cluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// probeEnv, when set, makes this test binary a client instead: a user of a
// drone's backends that runs in the drone's own namespace, so that it still
// reaches the proxy while the host is cut off. Its value is a probeConfig.
const probeEnv = "PLANE_CLUSTER_PROBE"

type probeConfig struct {
	Proxy    string        `json:"proxy"` // host:port of the drone's proxy
	Hosts    []string      `json:"hosts"` // Host headers, taken in turn
	Interval time.Duration `json:"interval"`
}

// probeMain GETs /healthz of each host in turn, every interval, until
// SIGTERM, and prints one line per request:
//
//	ok <unix ms> <host> <ms taken>
//	fail <unix ms> <host> <what went wrong>
func probeMain() int {
	var cfg probeConfig
	if err := json.Unmarshal([]byte(os.Getenv(probeEnv)), &cfg); err != nil || len(cfg.Hosts) == 0 || cfg.Interval <= 0 {
		fmt.Fprintf(os.Stderr, "probe: bad %s %q: %v\n", probeEnv, os.Getenv(probeEnv), err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	hc := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", cfg.Proxy)
		}},
	}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		host := cfg.Hosts[i%len(cfg.Hosts)]
		start := time.Now()
		msg, err := probeOnce(ctx, hc, host)
		switch {
		case ctx.Err() != nil:
			return 0
		case err != nil:
			fmt.Printf("fail %d %s %s\n", start.UnixMilli(), host, strings.ReplaceAll(err.Error(), "\n", " "))
		default:
			fmt.Printf("ok %d %s %s\n", start.UnixMilli(), host, msg)
		}
		select {
		case <-ctx.Done():
			return 0
		case <-tick.C:
		}
	}
}

func probeOnce(ctx context.Context, hc *http.Client, host string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/healthz", nil)
	if err != nil {
		return "", err
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return strconv.FormatInt(time.Since(start).Milliseconds(), 10), nil
}

// probeResult is one line of a probe's output.
type probeResult struct {
	ok   bool
	at   time.Time
	host string
	what string
}

// startProbe runs a probe in drone d's namespace against the backends of
// ids through d's proxy.
func (c *cluster) startProbe(d *droneNode, ids []string) *proc {
	c.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := probeConfig{Proxy: net.JoinHostPort(d.host.ip.String(), proxyPort), Interval: 200 * time.Millisecond}
	for _, id := range ids {
		cfg.Hosts = append(cfg.Hosts, id+"."+domain)
	}
	data, _ := json.Marshal(cfg)
	return c.net.run(d.host, "probe-"+d.host.name, []string{probeEnv + "=" + string(data)}, exe)
}

// probeResults reads what a probe has printed so far.
func probeResults(t *T, p *proc) []probeResult {
	t.Helper()
	var out []probeResult
	sc := bufio.NewScanner(strings.NewReader(p.output()))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) < 3 || f[0] != "ok" && f[0] != "fail" {
			continue
		}
		ms, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		r := probeResult{ok: f[0] == "ok", at: time.UnixMilli(ms), host: f[2]}
		if len(f) == 4 {
			r.what = f[3]
		}
		out = append(out, r)
	}
	return out
}
