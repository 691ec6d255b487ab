package server

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/web"
)

func (s *Server) backendRoutes(g *echo.Group) {
	g.GET("", func(c echo.Context) error { return redirect(c, web.ProjectPath(currentProject(c).ID)+"/backends", "") })
	g.GET("/backends", s.handleBackendsPage)
	g.POST("/backends", s.handleSpawnForm)
	g.GET("/backends/stream", s.handleBackendsStream)
	b := g.Group("/backends/:id", s.loadProjectBackend)
	b.GET("", s.handleBackendPage)
	b.GET("/stream", s.handleBackendStream)
	b.GET("/open", s.handleOpenBackend)
	b.POST("/terminate", s.handleTerminateForm)
	g.GET("/settings", s.handleProjectSettings)
	g.POST("/delete", s.handleDeleteProject, s.requireOwner)
}

const backendKey = "plane.backend"

// loadProjectBackend loads a backend of the current project.
func (s *Server) loadProjectBackend(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("id")
		notFound := plane.Errorf(plane.ENOTFOUND, "backend %q not found", id)
		if plane.ValidateBackendID(id) != nil {
			return notFound
		}
		b, err := s.Backends.FindBackendByID(c.Request().Context(), id)
		if err != nil {
			return err
		}
		if b.ProjectID != currentProject(c).ID {
			return notFound
		}
		s.core.MarkUnreachable(c.Request().Context(), b)
		c.Set(backendKey, b)
		return next(c)
	}
}

// backendsListLimit bounds the dashboard's table.
const backendsListLimit = 100

// backendFilter reads the table's filter from the query.
func backendFilter(c echo.Context) (web.BackendFilter, plane.BackendFilter) {
	v := web.BackendFilter{Status: c.QueryParam("status"), Key: strings.TrimSpace(c.QueryParam("key")), Image: c.QueryParam("image")}
	pid := currentProject(c).ID
	f := plane.BackendFilter{ProjectID: &pid, Limit: backendsListLimit}
	switch v.Status {
	case "live", "terminated":
		live := v.Status == "live"
		f.Live = &live
	default:
		v.Status = ""
	}
	if v.Key != "" {
		f.Key = &v.Key
	}
	if v.Image != "" {
		f.Image = &v.Image
	}
	return v, f
}

func (s *Server) handleBackendsPage(c echo.Context) error {
	return s.renderBackends(c, http.StatusOK, web.NewForm())
}

func (s *Server) renderBackends(c echo.Context, status int, form web.Form) error {
	ctx := c.Request().Context()
	p := currentProject(c)
	vf, f := backendFilter(c)
	bs, err := s.Backends.FindBackends(ctx, f)
	if err != nil {
		return err
	}
	s.core.MarkUnreachable(ctx, bs...)
	imgs, err := s.Images.FindImages(ctx, p.ID)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(imgs))
	for _, img := range imgs {
		names = append(names, img.Name)
	}
	stream := web.ProjectPath(p.ID) + "/backends/stream"
	if q := c.QueryString(); q != "" {
		stream += "?" + q
	}
	v := web.BackendsView{Nav: projectNav(c, "backends"), Backends: bs, Filter: vf, Images: names, SpawnForm: form, StreamURL: stream, Now: time.Now()}
	return render(c, status, web.Backends(s.page(c, p.Name+" backends", "projects"), v))
}

// handleBackendsStream sends the table's rows at once and again after each
// change of the project's backends (changes close together are sent once).
func (s *Server) handleBackendsStream(c echo.Context) error {
	p := currentProject(c)
	_, f := backendFilter(c)
	ch, cancel := s.Bus.Subscribe(plane.TopicProject(p.ID))
	defer cancel()
	base := web.ProjectPath(p.ID)
	return s.streamRows(c, ch, 0, func(ctx context.Context) (string, error) {
		bs, err := s.Backends.FindBackends(ctx, f)
		if err != nil {
			return "", err
		}
		s.core.MarkUnreachable(ctx, bs...)
		return renderString(ctx, web.BackendRows(base, bs, time.Now()))
	})
}

// rowsCoalesce is how long a table stream waits for more changes before it
// renders, so that a burst of status changes costs one query.
const rowsCoalesce = 100 * time.Millisecond

// streamRows sends "rows" events rendered by rows: one now, then one after
// each burst of changes on ch, and (every > 0) one every so often.
func (s *Server) streamRows(c echo.Context, ch <-chan plane.Event, every time.Duration, rows func(context.Context) (string, error)) error {
	ctx := c.Request().Context()
	out := openSSE(c)
	send := func() error {
		html, err := rows(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.Logger.Error("stream a table's rows", "path", c.Path(), "err", err)
			}
			return err
		}
		return out.send("rows", html)
	}
	if err := send(); err != nil {
		return nil
	}
	out.follow(ctx, ch, every, func(plane.Event) (bool, error) {
		// Let the rest of a burst come, then render once.
		t := time.NewTimer(rowsCoalesce)
		defer t.Stop()
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					return true, nil
				}
			case <-t.C:
				return false, send()
			case <-ctx.Done():
				return true, nil
			}
		}
	})
	return nil
}

// parseEnv reads KEY=value lines.
func parseEnv(text string) (map[string]string, error) {
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, plane.FieldErrorf("env", "line %d: write KEY=value", n)
		}
		env[strings.TrimSpace(k)] = v
	}
	if err := sc.Err(); err != nil {
		return nil, plane.FieldErrorf("env", "%v", err)
	}
	return env, nil
}

// optionalInt reads a number field that may be left empty.
func optionalInt(f web.Form, name string) (*int, error) {
	v := strings.TrimSpace(f.Value(name))
	if v == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return nil, plane.FieldErrorf(name, "%q is not a whole number", v)
	}
	return &n, nil
}

// spawnFields are the inputs of the spawn form.
var spawnFields = []string{"image", "key", "env", "max_idle_seconds", "suspend_seconds", "lifetime_seconds"}

// limitsInput reads a form's limit fields into in: an empty one is absent
// (nil), or, with orNone, 0 (no limit). A form without a field leaves it
// empty.
func limitsInput(f web.Form, in *plane.LimitsInput, orNone bool) error {
	for _, l := range []struct {
		name string
		dst  **int
	}{
		{"max_idle_seconds", &in.MaxIdleSeconds},
		{"suspend_seconds", &in.SuspendSeconds},
		{"lifetime_seconds", &in.LifetimeSeconds},
		{"cpu_millis", &in.CPUMillis},
		{"memory_mb", &in.MemoryMB},
	} {
		v, err := optionalInt(f, l.name)
		if err != nil {
			return err
		}
		if v == nil && orNone {
			v = new(int)
		}
		*l.dst = v
	}
	return nil
}

func (s *Server) handleSpawnForm(c echo.Context) error {
	p := currentProject(c)
	f := formValues(c, spawnFields...)
	req := plane.SpawnRequest{Image: f.Value("image"), Key: strings.TrimSpace(f.Value("key")), User: currentUser(c).Email}
	var err error
	if req.Env, err = parseEnv(f.Value("env")); err == nil {
		if err = limitsInput(f, &req.LimitsInput, false); err == nil {
			err = req.Validate()
		}
	}
	if err == nil {
		_, err = s.core.Spawn(c.Request().Context(), actorOf(c), p.ID, req)
	}
	if err != nil {
		if !formError(&f, err, append(spawnFields, "user")...) {
			return err
		}
		return s.renderBackends(c, http.StatusUnprocessableEntity, f)
	}
	return redirect(c, web.ProjectPath(p.ID)+"/backends", "spawned")
}

func currentBackend(c echo.Context) *plane.Backend {
	b, _ := c.Get(backendKey).(*plane.Backend)
	return b
}

func backendPath(b *plane.Backend) string {
	return web.ProjectPath(b.ProjectID) + "/backends/" + b.ID
}

func (s *Server) handleBackendPage(c echo.Context) error {
	b := currentBackend(c)
	v := web.BackendView{Nav: projectNav(c, "backends"), Backend: b, Stats: s.statsView(b), Connections: s.connectionsView(c.Request().Context(), b),
		StreamURL: backendPath(b) + "/stream", Path: backendPath(b)}
	return render(c, http.StatusOK, web.BackendPage(s.page(c, "Backend "+b.ID, "projects"), v))
}

// connectionsView gathers who is connected to b now, from the core (the
// store's joins and leaves, the drone's counts).
func (s *Server) connectionsView(ctx context.Context, b *plane.Backend) web.ConnectionsView {
	v := web.ConnectionsView{Live: b.Status.Live(), Now: time.Now()}
	if !v.Live {
		return v
	}
	conns, err := s.core.Connections(ctx, b)
	if err != nil {
		if plane.ErrorCodeOf(err) != plane.EUNAVAILABLE && ctx.Err() == nil {
			s.Logger.Warn("read a backend's connections", "backend", b.ID, "err", err)
		}
		v.Unknown = true
		return v
	}
	for _, cn := range conns {
		v.Users = append(v.Users, web.ConnectedUser{User: cn.User, Connections: cn.Connections, Since: cn.Since})
	}
	return v
}

// connectionsKey is what the connections panel shows, for a stream to
// send it only when it changed.
func connectionsKey(v web.ConnectionsView) string {
	var k strings.Builder
	fmt.Fprintf(&k, "%t %t", v.Live, v.Unknown)
	for _, u := range v.Users {
		fmt.Fprintf(&k, "\n%q %d %d", u.User, u.Connections, u.Since.UnixMilli())
	}
	return k.String()
}

// statsView gathers a backend's live numbers from the drone's recent stats.
func (s *Server) statsView(b *plane.Backend) web.StatsView {
	v := web.StatsView{Live: b.Status.Live(), MaxIdle: b.MaxIdleSeconds, SuspendFor: b.SuspendSeconds, Suspended: b.Suspended(), Now: time.Now()}
	if !v.Live {
		return v
	}
	resp := s.BackendResponse(b, false)
	v.Connections, v.IdleDeadline, v.CPUPercent, v.MemoryBytes = resp.Connections, resp.IdleDeadline, resp.CPUPercent, resp.MemoryBytes
	v.UpBecause = resp.UpBecause
	for _, st := range s.core.StatsHistory(b.ID) {
		v.Known = true
		v.MemoryLimit = st.MemoryLimit
		v.CPUHistory = append(v.CPUHistory, st.CPUPercent)
		v.MemHistory = append(v.MemHistory, float64(st.MemoryBytes))
	}
	return v
}

// backendStatsEvery is how often a backend's page gets fresh numbers: the
// drones' stats period.
const backendStatsEvery = 2 * time.Second

// handleBackendStream feeds a backend's page: "status" after each status
// change, "stats" every two seconds while it is live, "connections" when
// its users join or leave (its event log grew) or their counts change,
// "log" per line.
func (s *Server) handleBackendStream(c echo.Context) error {
	ctx, cancel := context.WithCancel(c.Request().Context())
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: nothing writes once the handler returned
	defer cancel()
	b := currentBackend(c)
	csrf, _ := c.Get(csrfKey).(string)
	ch, unsub := s.subscribe(b.ID, plane.TopicBackendLog(b.ID))
	defer unsub()
	out := openSSE(c)
	// send writes one rendered event; a failure ends the whole stream.
	send := func(event string, html string, err error) error {
		if err == nil {
			err = out.send(event, html)
		}
		if err != nil {
			cancel()
		}
		return err
	}
	var cur *plane.Backend // what the status panel shows
	// sendConnections sends the connections panel when what it shows
	// changed: the stats' ticks and the log's announcements both ask.
	lastConns := ""
	sendConnections := func(b *plane.Backend) error {
		v := s.connectionsView(ctx, b)
		key := connectionsKey(v)
		if key == lastConns {
			return nil
		}
		html, err := renderString(ctx, web.ConnectionsPanel(v))
		if err = send("connections", html, err); err == nil {
			lastConns = key
		}
		return err
	}
	sendPanels := func(b *plane.Backend) error {
		cur = b
		html, err := renderString(ctx, web.StatusPanel(csrf, backendPath(b), b))
		if err = send("status", html, err); err != nil {
			return err
		}
		html, err = renderString(ctx, web.StatsPanel(s.statsView(b)))
		if err = send("stats", html, err); err != nil {
			return err
		}
		return sendConnections(b)
	}
	// Read again now that changes are subscribed to, so none falls between.
	b, err := s.Backends.FindBackendByID(ctx, b.ID)
	if err == nil {
		s.core.MarkUnreachable(ctx, b)
	}
	if err != nil || sendPanels(b) != nil {
		return nil
	}
	// Log lines come on a goroutine of their own.
	wg.Go(func() {
		err := s.core.Logs(ctx, b.ID, b.Status.Live(), func(l plane.LogLine) error {
			html, err := renderString(ctx, web.LogLine(l))
			return send("log", html, err)
		})
		if err != nil && ctx.Err() == nil {
			s.Logger.Warn("stream logs", "backend", b.ID, "err", err)
		}
	})
	out.follow(ctx, ch, backendStatsEvery, func(e plane.Event) (bool, error) {
		switch e.Kind {
		case plane.EventBackend:
			return false, sendPanels(e.Backend)
		case plane.EventProjectLog:
			// A join or a leave grew the backend's event log: show who is
			// connected now.
			return false, sendConnections(cur)
		}
		// The live stats panel, every backendStatsEvery.
		if cur.Status.Live() {
			html, err := renderString(ctx, web.StatsPanel(s.statsView(cur)))
			if err = send("stats", html, err); err != nil {
				return true, err
			}
			return false, sendConnections(cur)
		}
		return false, nil
	})
	return nil
}

// handleOpenBackend sends the signed-in user to the backend with a fresh
// connect token in its URL.
func (s *Server) handleOpenBackend(c echo.Context) error {
	b := currentBackend(c)
	if !b.Status.Live() {
		return plane.Errorf(plane.ECONFLICT, "backend %s is terminated (%s): spawn a new one to open", b.ID, b.TerminationReason)
	}
	conn, err := s.core.Connect(b, currentUser(c).Email)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.Redirect(http.StatusSeeOther, conn.URL)
}

func (s *Server) handleTerminateForm(c echo.Context) error {
	b := currentBackend(c)
	if err := s.core.Terminate(c.Request().Context(), actorOf(c), b, c.FormValue("mode") == "hard"); err != nil {
		return err
	}
	return redirect(c, backendPath(b), "terminating")
}
