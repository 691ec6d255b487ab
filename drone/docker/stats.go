package docker

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Stats is one sample of a container's resource use.
type Stats struct {
	CPUPercent  float64 // of one CPU: 200 is two CPUs busy, as `docker stats` shows
	MemoryBytes uint64  // in use, without the page cache, as `docker stats` shows
	MemoryLimit uint64  // the container's limit, or the machine's memory
}

// Stats samples the container's CPU and memory use once. The CPU percentage
// is the use since the previous call for the same container; the first call
// takes about a second, as the daemon then samples twice.
func (r *Runtime) Stats(ctx context.Context, id string) (Stats, error) {
	r.mu.Lock()
	prev, havePrev := r.prevCPU[id]
	r.mu.Unlock()
	res, err := r.client.ContainerStats(ctx, id, client.ContainerStatsOptions{IncludePreviousSample: !havePrev})
	if err != nil {
		if IsNotFound(err) {
			r.forgetStats(id)
		}
		return Stats{}, fmt.Errorf("stats of container %s: %w", id, err)
	}
	defer res.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		return Stats{}, fmt.Errorf("stats of container %s: %w", id, err)
	}
	if !havePrev {
		prev = s.PreCPUStats
	}
	r.mu.Lock()
	r.prevCPU[id] = s.CPUStats
	r.mu.Unlock()
	return Stats{
		CPUPercent:  cpuPercent(prev, s.CPUStats),
		MemoryBytes: memoryUsage(s.MemoryStats),
		MemoryLimit: s.MemoryStats.Limit,
	}, nil
}

func (r *Runtime) forgetStats(id string) {
	r.mu.Lock()
	delete(r.prevCPU, id)
	r.mu.Unlock()
}

// cpuPercent follows the docker CLI: the container's share of the host's CPU
// time between two samples, times the number of CPUs.
func cpuPercent(prev, cur container.CPUStats) float64 {
	if cur.CPUUsage.TotalUsage < prev.CPUUsage.TotalUsage || cur.SystemUsage <= prev.SystemUsage {
		return 0
	}
	cpuDelta := float64(cur.CPUUsage.TotalUsage - prev.CPUUsage.TotalUsage)
	systemDelta := float64(cur.SystemUsage - prev.SystemUsage)
	cpus := float64(cur.OnlineCPUs)
	if cpus == 0 {
		cpus = float64(len(cur.CPUUsage.PercpuUsage))
	}
	return cpuDelta / systemDelta * cpus * 100
}

// memoryUsage follows the docker CLI: usage without the inactive page cache,
// which the kernel reclaims before it would kill the container.
func memoryUsage(m container.MemoryStats) uint64 {
	for _, k := range []string{"total_inactive_file", "inactive_file"} { // cgroup v1, v2
		if v, ok := m.Stats[k]; ok {
			if v < m.Usage {
				return m.Usage - v
			}
			return m.Usage
		}
	}
	return m.Usage
}
