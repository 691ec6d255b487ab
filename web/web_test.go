package web

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/a-h/templ"

	"plane"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden renders c and compares it with testdata/<name>.html.
func golden(t *testing.T, name string, c templ.Component) {
	t.Helper()
	var buf bytes.Buffer
	if err := c.Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", name+".html")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./web -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("%s differs from its golden file:\n got: %s\nwant: %s", name, buf.Bytes(), want)
	}
}

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func backendAt(status plane.BackendStatus) *plane.Backend {
	b := &plane.Backend{ID: "abc123def456gh", ProjectID: 7, Image: "demo", ImageRef: "plane-demo:latest", Key: "doc-1", DroneID: "d1", Status: status, CreatedAt: t0}
	for i, s := range plane.Statuses {
		if s.Rank() > status.Rank() {
			break
		}
		if s == plane.StatusTerminating && status == plane.StatusTerminated {
			continue
		}
		b.StatusHistory = append(b.StatusHistory, plane.StatusChange{Status: s, Time: t0.Add(time.Duration(i) * 250 * time.Millisecond)})
	}
	if status == plane.StatusTerminated {
		code := 137
		b.TerminationReason, b.ExitCode = plane.ReasonIdle, &code
	}
	return b
}

// suspendedAt is a ready backend suspended at t0+suspended and resumed
// at t0+resumed (seconds; 0: never).
func suspendedAt(status plane.BackendStatus, suspended, resumed int) *plane.Backend {
	b := backendAt(status)
	b.Limits = plane.Limits{MaxIdleSeconds: 30, SuspendSeconds: 600}
	if suspended > 0 {
		b.SuspendedAt = ptr(t0.Add(time.Duration(suspended) * time.Second))
	}
	if resumed > 0 {
		b.ResumedAt = ptr(t0.Add(time.Duration(resumed) * time.Second))
	}
	return b
}

func TestViewsGolden(t *testing.T) {
	tests := []struct {
		name string
		c    templ.Component
	}{
		{"rows-empty", BackendRows("/projects/7", nil, t0)},
		{"rows", BackendRows("/projects/7", []*plane.Backend{backendAt(plane.StatusReady), backendAt(plane.StatusTerminated)}, t0.Add(90*time.Second))},
		{"status-ready", StatusPanel("tok", "/projects/7/backends/abc123def456gh", backendAt(plane.StatusReady))},
		{"status-unreachable", StatusBadge(func() *plane.Backend { b := backendAt(plane.StatusReady); b.DroneUnreachable = true; return b }())},
		{"status-terminated", StatusPanel("tok", "/projects/7/backends/abc123def456gh", backendAt(plane.StatusTerminated))},
		{"status-suspended", StatusPanel("tok", "/projects/7/backends/abc123def456gh", suspendedAt(plane.StatusReady, 20, 10))},
		{"rows-suspended", BackendRows("/projects/7", []*plane.Backend{suspendedAt(plane.StatusReady, 20, 0), suspendedAt(plane.StatusReady, 20, 30)}, t0.Add(90*time.Second))},
		{"stats-suspended", StatsPanel(StatsView{Live: true, Known: true, MaxIdle: 30, SuspendFor: 600, Suspended: true, IdleDeadline: ptr(t0.Add(10 * time.Minute)), Now: t0})},
		{"stats-idle-suspend", StatsPanel(StatsView{Live: true, Known: true, Connections: 2, MaxIdle: 30, SuspendFor: 600, Now: t0})},
		{"stats-idle", StatsPanel(StatsView{Live: true, Known: true, Connections: 0, MaxIdle: 30, IdleDeadline: ptr(t0.Add(time.Hour)), Now: t0, CPUPercent: 1.5, MemoryBytes: 3 << 20, MemoryLimit: 256 << 20, CPUHistory: []float64{0, 1.5, 3}, MemHistory: []float64{1, 2}})},
		{"stats-ended", StatsPanel(StatsView{})},
		{"log-line", LogLine(plane.LogLine{Stream: "stderr", Text: "<b>boom</b>"})},
		{"field-error", Field(Form{Values: map[string]string{"name": `x"y`}, Errors: map[string]string{"name": "is taken"}}, "name", "Name", "text", nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { golden(t, tt.name, tt.c) })
	}
}

func ptr[T any](v T) *T { return &v }

func TestFormat(t *testing.T) {
	tests := []struct{ got, want string }{
		{Ago(t0, t0.Add(5*time.Second)), "5 s ago"},
		{Ago(t0, t0.Add(3*time.Minute)), "3 min ago"},
		{Ago(t0, t0.Add(5*time.Hour)), "5 h ago"},
		{Ago(t0, t0.Add(72*time.Hour)), "3 days ago"},
		{Ago(t0, t0.Add(-time.Second)), "just now"},
		{Duration(250 * time.Millisecond), "250 ms"},
		{Duration(1500 * time.Millisecond), "1.5 s"},
		{Duration(61 * time.Second), "1 min 1 s"},
		{Duration(90 * time.Minute), "1 h 30 min"},
		{Bytes(512), "512 B"},
		{Bytes(1536), "1.5 KiB"},
		{Bytes(3 << 30), "3.0 GiB"},
		{sparkPoints([]float64{0, 5, 10}, 240, 48), "0.0,47.0 120.0,24.0 240.0,1.0"},
		{sparkPoints([]float64{0, 0}, 240, 48), "0.0,47.0 240.0,47.0"},
		{withNext("/login", "/projects/1?a=b"), "/login?next=%2Fprojects%2F1%3Fa%3Db"},
		{withNext("/login", ""), "/login"},
		{StatusText(backendAt(plane.StatusTerminated)), "terminated (idle)"},
		{StatusText(backendAt(plane.StatusReady)), "ready"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestPhases(t *testing.T) {
	ph := Phases(backendAt(plane.StatusReady))
	if len(ph) != 5 || !ph[4].Ongoing || ph[0].Length != 250*time.Millisecond || ph[3].Ongoing {
		t.Fatalf("phases %+v", ph)
	}
	ph = Phases(backendAt(plane.StatusTerminated))
	if last := ph[len(ph)-1]; last.Status != plane.StatusTerminated || last.Ongoing {
		t.Fatalf("last phase %+v", last)
	}

	// The last suspension and resume take their places in time among the
	// statuses; a suspension lasts until the resume after it, or until the
	// backend left ready, or is ongoing.
	marks := func(ph []Phase) (out []string) {
		for _, p := range ph {
			s := string(p.Status) + p.Mark
			if p.Ongoing {
				s += " ongoing"
			} else if p.Mark == "suspended" {
				s += " " + Duration(p.Length)
			}
			out = append(out, s)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		b    *plane.Backend
		want []string
	}{
		{"suspended now", suspendedAt(plane.StatusReady, 20, 10),
			[]string{"scheduled", "loading", "starting", "waiting", "ready ongoing", "resumed", "suspended ongoing"}},
		{"resumed", suspendedAt(plane.StatusReady, 20, 30),
			[]string{"scheduled", "loading", "starting", "waiting", "ready ongoing", "suspended 10.0 s", "resumed"}},
		{"terminated while suspended", func() *plane.Backend {
			b := suspendedAt(plane.StatusTerminated, 0, 0)
			b.SuspendedAt = ptr(t0.Add(1200 * time.Millisecond)) // ready at 1 s, terminated at 1.5 s
			return b
		}(), []string{"scheduled", "loading", "starting", "waiting", "ready", "suspended 300 ms", "terminated"}},
	} {
		if got := marks(Phases(tc.b)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: timeline %q, want %q", tc.name, got, tc.want)
		}
	}
}
