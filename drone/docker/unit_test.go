package docker

import (
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
)

func TestLineWriter(t *testing.T) {
	long := strings.Repeat("x", maxLineBytes+10)
	for _, tc := range []struct {
		name   string
		writes []string
		want   []string
	}{
		{"one line", []string{"hello\n"}, []string{"hello"}},
		{"split writes", []string{"hel", "lo\nwor", "ld\n"}, []string{"hello", "world"}},
		{"crlf", []string{"a\r\nb\r\n"}, []string{"a", "b"}},
		{"empty lines", []string{"\n\n"}, []string{"", ""}},
		{"no final newline", []string{"a\nb"}, []string{"a", "b"}},
		{"long line", []string{long, "\n"}, []string{long[:maxLineBytes], "xxxxxxxxxx"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			w := &lineWriter{stream: "stdout", fn: func(stream, line string) {
				if stream != "stdout" {
					t.Errorf("stream = %q", stream)
				}
				got = append(got, line)
			}}
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			w.flush()
			if !slices.Equal(got, tc.want) {
				t.Errorf("lines = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCPUPercent(t *testing.T) {
	sample := func(total, system uint64, cpus uint32) container.CPUStats {
		return container.CPUStats{CPUUsage: container.CPUUsage{TotalUsage: total}, SystemUsage: system, OnlineCPUs: cpus}
	}
	for _, tc := range []struct {
		name      string
		prev, cur container.CPUStats
		want      float64
	}{
		{"half of one of four cpus", sample(0, 0, 4), sample(50, 400, 4), 50},
		{"two of four cpus busy", sample(100, 1000, 4), sample(300, 1400, 4), 200},
		{"no previous sample", container.CPUStats{}, sample(0, 0, 4), 0},
		{"counter went back", sample(100, 1000, 4), sample(50, 1400, 4), 0},
		{"percpu fallback", sample(0, 0, 0), container.CPUStats{CPUUsage: container.CPUUsage{TotalUsage: 100, PercpuUsage: []uint64{50, 50}}, SystemUsage: 200}, 100},
	} {
		if got := cpuPercent(tc.prev, tc.cur); got != tc.want {
			t.Errorf("%s: cpuPercent = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMemoryUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    container.MemoryStats
		want uint64
	}{
		{"cgroup v1", container.MemoryStats{Usage: 100, Stats: map[string]uint64{"total_inactive_file": 30, "inactive_file": 10}}, 70},
		{"cgroup v2", container.MemoryStats{Usage: 100, Stats: map[string]uint64{"inactive_file": 10}}, 90},
		{"cache above usage", container.MemoryStats{Usage: 100, Stats: map[string]uint64{"inactive_file": 200}}, 100},
		{"no stats", container.MemoryStats{Usage: 100}, 100},
	} {
		if got := memoryUsage(tc.m); got != tc.want {
			t.Errorf("%s: memoryUsage = %d, want %d", tc.name, got, tc.want)
		}
	}
}
