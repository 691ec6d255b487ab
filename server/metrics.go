package server

import (
	"context"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"plane"
)

// metrics holds the controller's Prometheus metrics, in a registry of its
// own so that several servers in one test process do not collide.
type metrics struct {
	reg      *prometheus.Registry
	spawns   *prometheus.CounterVec
	phase    *prometheus.HistogramVec
	ready    prometheus.Histogram
	suspends *prometheus.CounterVec
	claims   prometheus.Counter
	misses   *prometheus.CounterVec
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	handler  echo.HandlerFunc
}

var latencyBuckets = []float64{.005, .01, .025, .05, .1, .2, .3, .5, .75, 1, 2, 5, 10, 30, 60}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		spawns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plane_spawns_total", Help: "Spawn requests that started a backend (spawned) or found no drone (unavailable).",
		}, []string{"result"}),
		phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "plane_backend_phase_seconds", Help: "Time from the previous status to this one, by status reached.", Buckets: latencyBuckets,
		}, []string{"status"}),
		ready: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "plane_backend_spawn_to_ready_seconds", Help: "Time from scheduled to ready.", Buckets: latencyBuckets,
		}),
		suspends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plane_backend_suspensions_total", Help: "Ready backends suspended when idle (suspended) and resumed by a request (resumed), by their drones.",
		}, []string{"event"}),
		claims: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "plane_pool_claims_total", Help: "Spawns that claimed a warm pool's member (warm).",
		}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plane_pool_misses_total", Help: "Spawns that started their backend cold, by why no warm pool's member could serve them.",
		}, []string{"reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plane_api_requests_total", Help: "HTTP requests by method, route and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "plane_api_request_seconds", Help: "HTTP request duration by route.", Buckets: latencyBuckets,
		}, []string{"route"}),
	}
	m.reg.MustRegister(m.spawns, m.phase, m.ready, m.suspends, m.claims, m.misses, m.requests, m.duration, &stateCollector{s: s},
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	for _, r := range plane.ColdReasons {
		m.misses.WithLabelValues(string(r)) // every reason shows, from 0
	}
	m.handler = echo.WrapHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return m
}

func (m *metrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // write the error now, so that its status is counted
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(c.Request().Method, route, strconv.Itoa(c.Response().Status)).Inc()
		m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		return nil
	}
}

// Spawned counts a spawn's outcome (controller.Metrics).
func (m *metrics) Spawned(outcome string) { m.spawns.WithLabelValues(outcome).Inc() }

// BackendChanged records the latency of the phase b just completed
// (controller.Metrics).
func (m *metrics) BackendChanged(b *plane.Backend) {
	h := b.StatusHistory
	if len(h) < 2 {
		return
	}
	last, prev := h[len(h)-1], h[len(h)-2]
	if last.Status != b.Status {
		return
	}
	m.phase.WithLabelValues(string(last.Status)).Observe(last.Time.Sub(prev.Time).Seconds())
	if last.Status == plane.StatusReady {
		m.ready.Observe(last.Time.Sub(h[0].Time).Seconds())
	}
}

// BackendSuspended counts a suspension or a resume (controller.Metrics).
func (m *metrics) BackendSuspended(suspended bool) {
	event := "resumed"
	if suspended {
		event = "suspended"
	}
	m.suspends.WithLabelValues(event).Inc()
}

// PoolClaim counts a warm or a cold spawn (controller.Metrics).
func (m *metrics) PoolClaim(warm bool, reason plane.ColdReason) {
	if warm {
		m.claims.Inc()
		return
	}
	m.misses.WithLabelValues(string(reason)).Inc()
}

// stateCollector reports live backends by status and drones by status, read
// from the store at scrape time so that they are never out of step.
type stateCollector struct{ s *Server }

var (
	backendsDesc  = prometheus.NewDesc("plane_backends", "Live backends by status.", []string{"status"}, nil)
	suspendedDesc = prometheus.NewDesc("plane_backends_suspended", "Ready backends that are suspended.", nil, nil)
	dronesDesc    = prometheus.NewDesc("plane_drones", "Drones by status.", []string{"status"}, nil)
	poolDesc      = prometheus.NewDesc("plane_pool_members", "Warm pools' unclaimed members by pool (plane.PoolID of the image), drone and state (ready, starting), as the drones' heartbeats report them.", []string{"pool", "drone", "state"}, nil)
	refillDesc    = prometheus.NewDesc("plane_pool_refill_seconds", "How long a warm pool's last new member took from its start to ready, by pool and drone.", []string{"pool", "drone"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- backendsDesc
	ch <- suspendedDesc
	ch <- dronesDesc
	ch <- poolDesc
	ch <- refillDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	live := true
	if bs, err := c.s.Backends.FindBackends(ctx, plane.BackendFilter{Live: &live, Limit: 1000}); err == nil {
		counts := map[plane.BackendStatus]int{}
		suspended := 0
		for _, b := range bs {
			counts[b.Status]++
			if b.Suspended() {
				suspended++
			}
		}
		for _, st := range plane.Statuses {
			if st.Live() {
				ch <- prometheus.MustNewConstMetric(backendsDesc, prometheus.GaugeValue, float64(counts[st]), string(st))
			}
		}
		ch <- prometheus.MustNewConstMetric(suspendedDesc, prometheus.GaugeValue, float64(suspended))
	}
	if ds, err := c.s.Drones.FindDrones(ctx); err == nil {
		counts := map[plane.DroneStatus]int{}
		for _, d := range ds {
			counts[d.Status]++
		}
		for _, st := range []plane.DroneStatus{plane.DroneReady, plane.DroneDraining, plane.DroneUnreachable, plane.DroneLost, plane.DroneStopped} {
			ch <- prometheus.MustNewConstMetric(dronesDesc, prometheus.GaugeValue, float64(counts[st]), string(st))
		}
	}
	if c.s.Dispatch == nil {
		return
	}
	for drone, pools := range c.s.Dispatch.Pools() {
		for _, p := range pools {
			ch <- prometheus.MustNewConstMetric(poolDesc, prometheus.GaugeValue, float64(len(p.Ready)), p.ID, drone, "ready")
			ch <- prometheus.MustNewConstMetric(poolDesc, prometheus.GaugeValue, float64(p.Starting), p.ID, drone, "starting")
			if p.RefillMillis > 0 {
				ch <- prometheus.MustNewConstMetric(refillDesc, prometheus.GaugeValue, float64(p.RefillMillis)/1000, p.ID, drone)
			}
		}
	}
}
