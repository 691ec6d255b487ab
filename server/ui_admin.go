package server

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/web"
)

// adminRoutes registers the pages of the instance's admins in g, the
// group of signed-in users.
func (s *Server) adminRoutes(g *echo.Group) {
	a := g.Group("/admin", s.requireAdmin)
	a.GET("", func(c echo.Context) error { return redirect(c, "/admin/drones", "") })
	a.GET("/drones", s.handleDronesPage)
	a.GET("/drones/stream", s.handleDronesStream)
	a.POST("/drones/:id/drain", s.handleDrainForm(true))
	a.POST("/drones/:id/undrain", s.handleDrainForm(false))
	a.GET("/backends", s.handleAdminBackendsPage)
	a.GET("/backends/stream", s.handleAdminBackendsStream)
	a.GET("/users", s.handleAdminUsersPage)
}

func (s *Server) handleDronesPage(c echo.Context) error {
	return s.renderDrones(c, http.StatusOK, "")
}

func (s *Server) renderDrones(c echo.Context, status int, problem string) error {
	ds, err := s.Drones.FindDrones(c.Request().Context())
	if err != nil {
		return err
	}
	v := web.DronesView{Drones: ds, Error: problem, StreamURL: "/admin/drones/stream", Now: time.Now()}
	return render(c, status, web.AdminDrones(s.page(c, "Drones", "admin"), v))
}

// dronesEvery is how often the drones table is sent again besides after
// each change on the bus: a drone that stops sending heartbeats turns
// stale on the clock alone.
const dronesEvery = plane.HeartbeatInterval

// handleDronesStream sends the drones table's rows now, after each drone
// change, and every dronesEvery.
func (s *Server) handleDronesStream(c echo.Context) error {
	csrf, _ := c.Get(csrfKey).(string)
	ch, cancel := s.Bus.Subscribe(plane.TopicDrones)
	defer cancel()
	return s.streamRows(c, ch, dronesEvery, func(ctx context.Context) (string, error) {
		ds, err := s.Drones.FindDrones(ctx)
		if err != nil {
			return "", err
		}
		return renderString(ctx, web.DroneRows(csrf, ds, time.Now()))
	})
}

// handleDrainForm drains a drone (it takes no new backends) or undrains it.
// The drone must acknowledge; the store then follows at once rather than at
// its next heartbeat.
func (s *Server) handleDrainForm(draining bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		d, err := s.core.Drain(c.Request().Context(), actorOf(c), c.Param("id"), draining)
		if err != nil {
			// The drone did not take it: say so on the drones page.
			if f := web.NewForm(); d != nil && formError(&f, err) {
				return s.renderDrones(c, http.StatusServiceUnavailable, "Drone "+d.ID+": "+f.Error(""))
			}
			return err
		}
		if draining {
			return redirect(c, "/admin/drones", "drained")
		}
		return redirect(c, "/admin/drones", "undrained")
	}
}

// adminBackendsFilter reads the all-backends table's filter.
func adminBackendsFilter(c echo.Context) (string, plane.BackendFilter) {
	status := c.QueryParam("status")
	f := plane.BackendFilter{Limit: backendsListLimit}
	switch status {
	case "live", "terminated":
		live := status == "live"
		f.Live = &live
	default:
		status = ""
	}
	return status, f
}

// adminBackendRows renders the all-backends table's rows.
func (s *Server) adminBackendRows(ctx context.Context, f plane.BackendFilter) (web.AdminBackendsView, error) {
	bs, err := s.Backends.FindBackends(ctx, f)
	if err != nil {
		return web.AdminBackendsView{}, err
	}
	s.core.MarkUnreachable(ctx, bs...)
	ps, err := s.Projects.FindProjects(ctx)
	if err != nil {
		return web.AdminBackendsView{}, err
	}
	names := make(map[int64]string, len(ps))
	for _, p := range ps {
		names[p.ID] = p.Name
	}
	return web.AdminBackendsView{Backends: bs, Projects: names, Now: time.Now()}, nil
}

func (s *Server) handleAdminBackendsPage(c echo.Context) error {
	status, f := adminBackendsFilter(c)
	v, err := s.adminBackendRows(c.Request().Context(), f)
	if err != nil {
		return err
	}
	v.Status, v.StreamURL = status, "/admin/backends/stream"
	if q := c.QueryString(); q != "" {
		v.StreamURL += "?" + q
	}
	return render(c, http.StatusOK, web.AdminBackends(s.page(c, "All backends", "admin"), v))
}

// handleAdminBackendsStream sends the all-backends rows now and after each
// change of any backend.
func (s *Server) handleAdminBackendsStream(c echo.Context) error {
	_, f := adminBackendsFilter(c)
	ch, cancel := s.Bus.Subscribe(plane.TopicBackends)
	defer cancel()
	return s.streamRows(c, ch, 0, func(ctx context.Context) (string, error) {
		v, err := s.adminBackendRows(ctx, f)
		if err != nil {
			return "", err
		}
		return renderString(ctx, web.AdminBackendRows(v.Backends, v.Projects, v.Now))
	})
}

func (s *Server) handleAdminUsersPage(c echo.Context) error {
	us, err := s.Users.FindUsers(c.Request().Context())
	if err != nil {
		return err
	}
	return render(c, http.StatusOK, web.AdminUsers(s.page(c, "Users", "admin"), web.AdminUsersView{Users: us}))
}
