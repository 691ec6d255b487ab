package server

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"plane/web"
)

// activityLimit is how many entries of the log the page shows.
const activityLimit = 200

// projectTabRoutes registers a project's images, API tokens, webhooks and
// activity tabs in g, the group of the project's pages.
func (s *Server) projectTabRoutes(g *echo.Group) {
	s.imageRoutes(g)
	s.tokenRoutes(g)
	s.webhookRoutes(g)
	g.GET("/activity", s.handleActivityPage)
}

func (s *Server) handleActivityPage(c echo.Context) error {
	p := currentProject(c)
	entries, err := s.Activity.FindActivity(c.Request().Context(), p.ID, activityLimit)
	if err != nil {
		return err
	}
	v := web.ActivityView{Nav: projectNav(c, "activity"), Entries: entries, Now: time.Now()}
	return render(c, http.StatusOK, web.ActivityLog(s.page(c, p.Name+" activity", "projects"), v))
}
