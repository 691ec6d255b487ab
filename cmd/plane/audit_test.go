package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"plane/drone/proxy/proxytest"
)

// nginxAuditConf is what a production nginx in front of HTTP/1.1 backends
// adds to startNginx's keep-alive and Upgrade settings. The timeouts are
// short so that a vector whose body or head never ends costs seconds, not
// a minute; nginx's defaults for header names are spelled out because the
// audit relies on them (a name with '_' is dropped, never forwarded).
const nginxAuditConf = `	client_header_timeout 2s;
	client_body_timeout 2s;
	underscores_in_headers off;
	ignore_invalid_headers on;`

// TestNginxAudit sends the corpus of attack vectors (proxytest.Vectors)
// through nginx and through the drone's proxy, each in front of a backend
// that records what it reads, and compares what became of them. Where
// nginx refuses a vector that the proxy forwards, nginx saw a danger the
// proxy missed, unless the vector's Nginx note says why forwarding is safe:
// such a difference without a note fails the test. Every difference is
// logged as a table.
//
// Only refused and forwarded are compared: nginx sets no X-Plane-* headers
// and answers with its own statuses, so Vector.Check does not apply to it.
func TestNginxAudit(t *testing.T) {
	if _, err := os.Stat(nginxBin); err != nil {
		t.Skip(nginxBin + " is not installed: apt-get install nginx-light")
	}
	c := newCluster(t, clusterOpts{})
	_, proxyTarget := c.spawnRecorder(t, nil)
	nginxTarget := startNginxRecorder(t)

	var diffs []auditDiff
	for _, v := range proxytest.Vectors {
		// The two targets share nothing, so each vector goes to both at
		// once: the audit takes the time of one run through the corpus.
		var ng, px proxytest.Outcome
		var ngErr, pxErr error
		var wg sync.WaitGroup
		wg.Go(func() { ng, ngErr = proxytest.Send(nginxTarget, v) })
		wg.Go(func() { px, pxErr = proxytest.Send(proxyTarget, v) })
		wg.Wait()
		if ngErr != nil || pxErr != nil {
			t.Errorf("%s: nginx: %v; proxy: %v", v.Name, ngErr, pxErr)
			continue
		}
		if ng.Refused() == px.Refused() && ng.Forwarded() == px.Forwarded() {
			if v.Nginx != "" {
				t.Logf("%s: nginx and the proxy agree (%s); the vector's Nginx note may be stale: %s", v.Name, outcomeSummary(px), v.Nginx)
			}
			continue
		}
		d := auditDiff{v: v, nginx: ng, proxy: px}
		if ng.Refused() && px.Forwarded() && v.Nginx == "" {
			d.unexplained = true
			t.Errorf("%s: nginx refuses it (%s), the proxy forwards it (%s), and the vector has no Nginx note saying why that is safe",
				v.Name, outcomeSummary(ng), outcomeSummary(px))
		}
		diffs = append(diffs, d)
	}
	t.Logf("%d of %d vectors differ between nginx %s and the drone proxy:\n%s", len(diffs), len(proxytest.Vectors), nginxVersion(), auditTable(diffs))
}

// startNginxRecorder runs nginx, configured as in production, in front of
// an in-process recorder, and returns it as a proxytest.Target. The
// recorder is the one the demo image serves in DEMO_MODE=record, so both
// sides of the audit are read by the same parser.
func startNginxRecorder(t *testing.T) proxytest.Target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := proxytest.NewRecorder()
	go func() { _ = rec.Serve(ln) }()
	t.Cleanup(func() {
		ln.Close()
		rec.Close()
	})
	ng := startNginx(t, ln.Addr().String(), nginxAuditConf)
	var mu sync.Mutex // Requests then Clear must not lose a request between them
	tg := proxytest.Target{
		Addr: ng.addr, Host: ng.addr, Token: "not-a-token",
		Recorded: func() ([]proxytest.Request, error) {
			mu.Lock()
			defer mu.Unlock()
			reqs := rec.Requests()
			rec.Clear()
			return reqs, nil
		},
	}
	_, _ = tg.Recorded() // forget startNginx's readiness check
	return tg
}

type auditDiff struct {
	v            proxytest.Vector
	nginx, proxy proxytest.Outcome
	unexplained  bool // nginx refuses, the proxy forwards, no note
}

// auditTable renders the differences as a Markdown table.
func auditTable(diffs []auditDiff) string {
	var sb strings.Builder
	sb.WriteString("| vector | nginx: statuses / forwarded | proxy: statuses / forwarded | note |\n| --- | --- | --- | --- |\n")
	for _, d := range diffs {
		note := d.v.Nginx
		if d.unexplained {
			note = "**none: nginx refuses what the proxy forwards**"
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s |\n", d.v.Name, outcomeSummary(d.nginx), outcomeSummary(d.proxy), note)
	}
	return sb.String()
}

// outcomeSummary is an outcome in short: the statuses answered (and
// whether the connection was closed), then the requests the backend read
// whole.
func outcomeSummary(o proxytest.Outcome) string {
	var st []string
	for _, s := range o.Statuses {
		st = append(st, strconv.Itoa(s))
	}
	s := strings.Join(st, " ")
	if s == "" {
		s = "no answer"
	}
	if o.Closed {
		s += " (closed)"
	}
	var fw []string
	for _, r := range o.Requests {
		if r.Err == "" {
			fw = append(fw, r.String())
		}
	}
	if len(fw) == 0 {
		return s + " / no"
	}
	return s + " / " + strings.ReplaceAll(strings.Join(fw, "; "), "|", `\|`)
}
