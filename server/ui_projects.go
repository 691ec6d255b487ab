package server

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/web"
)

const (
	projectKey = "plane.project"
	teamKey    = "plane.team"
	roleKey    = "plane.role"
)

func (s *Server) projectRoutes(g *echo.Group) {
	g.GET("/projects", s.handleProjects)
	g.POST("/projects", s.handleCreateProject)
	g.POST("/teams", s.handleCreateTeam)
	t := g.Group("/teams/:team", s.requireTeamMember)
	t.GET("", s.handleTeam)
	t.POST("/invites", s.handleCreateInvite, s.requireOwner)
	t.POST("/members/:user/role", s.handleSetRole, s.requireOwner)
	t.POST("/members/:user/remove", s.handleRemoveMember, s.requireOwner)
}

// requireTeamMember loads the team of the path for one of its members;
// for anyone else it does not exist.
func (s *Server) requireTeamMember(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := pathID(c, "team", "team")
		if err != nil {
			return err
		}
		return s.withMembership(c, id, "team "+c.Param("team"), next)
	}
}

// requireMember loads the project of the path for a member of its team.
// Another team's project is not found, not forbidden: ids leak nothing.
func (s *Server) requireMember(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := pathID(c, "pid", "project")
		if err != nil {
			return err
		}
		p, err := s.Projects.FindProjectByID(c.Request().Context(), id)
		if err != nil {
			return err
		}
		c.Set(projectKey, p)
		return s.withMembership(c, p.TeamID, "project "+c.Param("pid"), next)
	}
}

func (s *Server) withMembership(c echo.Context, teamID int64, what string, next echo.HandlerFunc) error {
	ctx := c.Request().Context()
	m, err := s.Teams.FindMember(ctx, teamID, currentUser(c).ID)
	if plane.ErrorCodeOf(err) == plane.ENOTFOUND {
		return plane.Errorf(plane.ENOTFOUND, "%s not found", what)
	} else if err != nil {
		return err
	}
	t, err := s.Teams.FindTeamByID(ctx, teamID)
	if err != nil {
		return err
	}
	c.Set(teamKey, t)
	c.Set(roleKey, m.Role)
	return next(c)
}

// requireOwner lets only the team's owners through.
func (s *Server) requireOwner(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if role, _ := c.Get(roleKey).(plane.Role); role != plane.RoleOwner {
			return plane.Errorf(plane.EFORBIDDEN, "only an owner of the team can do this")
		}
		return next(c)
	}
}

func currentProject(c echo.Context) *plane.Project {
	p, _ := c.Get(projectKey).(*plane.Project)
	return p
}

// projectNav is the header data of the current project's pages.
func projectNav(c echo.Context, tab string) web.ProjectNav {
	t, _ := c.Get(teamKey).(*plane.Team)
	role, _ := c.Get(roleKey).(plane.Role)
	return web.ProjectNav{Project: currentProject(c), Team: t, Role: role, Tab: tab}
}

func (s *Server) handleProjects(c echo.Context) error {
	return s.renderProjects(c, http.StatusOK, web.NewForm(), web.NewForm())
}

func (s *Server) renderProjects(c echo.Context, status int, pf, tf web.Form) error {
	ctx := c.Request().Context()
	teams, err := s.Teams.FindTeamsOfUser(ctx, currentUser(c).ID)
	if err != nil {
		return err
	}
	v := web.ProjectsView{ProjectForm: pf, TeamForm: tf}
	for _, t := range teams {
		ps, err := s.Projects.FindProjectsOfTeam(ctx, t.ID)
		if err != nil {
			return err
		}
		v.Teams = append(v.Teams, web.TeamProjects{Team: t, Projects: ps})
	}
	return render(c, status, web.Projects(s.page(c, "Projects", "projects"), v))
}

func (s *Server) handleCreateProject(c echo.Context) error {
	f := formValues(c, "team_id", "name")
	f.Values["name"] = strings.TrimSpace(f.Value("name"))
	teamID, _ := strconv.ParseInt(f.Value("team_id"), 10, 64)
	p, err := s.core.CreateProject(c.Request().Context(), actor(c), teamID, f.Value("name"))
	if err != nil {
		if !formError(&f, err, "team_id", "name") {
			return err
		}
		return s.renderProjects(c, http.StatusUnprocessableEntity, f, web.NewForm())
	}
	return redirect(c, web.ProjectPath(p.ID)+"/images", "")
}

func (s *Server) handleCreateTeam(c echo.Context) error {
	f := formValues(c, "team_name")
	t, err := s.core.CreateTeam(c.Request().Context(), actor(c), f.Value("team_name"))
	if err == nil {
		return redirect(c, web.TeamPath(t.ID), "team-created")
	}
	if !formError(&f, err, "team_name") {
		return err
	}
	return s.renderProjects(c, http.StatusUnprocessableEntity, web.NewForm(), f)
}

func (s *Server) handleTeam(c echo.Context) error {
	return s.renderTeam(c, http.StatusOK, "", web.NewForm())
}

func (s *Server) renderTeam(c echo.Context, status int, inviteURL string, f web.Form) error {
	ctx := c.Request().Context()
	t := c.Get(teamKey).(*plane.Team)
	members, err := s.Teams.FindMembers(ctx, t.ID)
	if err != nil {
		return err
	}
	projects, err := s.Projects.FindProjectsOfTeam(ctx, t.ID)
	if err != nil {
		return err
	}
	role, _ := c.Get(roleKey).(plane.Role)
	v := web.TeamView{Team: t, Role: role, UserID: currentUser(c).ID, Members: members, Projects: projects, InviteURL: inviteURL, InviteForm: f}
	return render(c, status, web.TeamPage(s.page(c, t.Name, "projects"), v))
}

func (s *Server) handleCreateInvite(c echo.Context) error {
	t := c.Get(teamKey).(*plane.Team)
	inv, err := s.core.InviteMember(c.Request().Context(), actor(c), t.ID, plane.Role(c.FormValue("role")))
	if err != nil {
		f := web.NewForm()
		if !formError(&f, err) {
			return err
		}
		return s.renderTeam(c, http.StatusUnprocessableEntity, "", f)
	}
	return s.renderTeam(c, http.StatusCreated, c.Scheme()+"://"+c.Request().Host+"/invites/"+inv.Secret, web.NewForm())
}

func (s *Server) handleSetRole(c echo.Context) error {
	t := c.Get(teamKey).(*plane.Team)
	uid, err := pathID(c, "user", "member")
	if err != nil {
		return err
	}
	err = s.core.SetMemberRole(c.Request().Context(), actor(c), t.ID, uid, plane.Role(c.FormValue("role")))
	if plane.ErrorCodeOf(err) == plane.EINVALID {
		return err
	} else if err != nil {
		return s.teamFormError(c, err)
	}
	return redirect(c, web.TeamPath(t.ID), "member-saved")
}

func (s *Server) handleRemoveMember(c echo.Context) error {
	t := c.Get(teamKey).(*plane.Team)
	uid, err := pathID(c, "user", "member")
	if err != nil {
		return err
	}
	if err := s.core.RemoveMember(c.Request().Context(), actor(c), t.ID, uid); err != nil {
		return s.teamFormError(c, err)
	}
	if uid == currentUser(c).ID {
		return redirect(c, "/projects", "member-gone")
	}
	return redirect(c, web.TeamPath(t.ID), "member-gone")
}

// teamFormError shows a refused member change (the last owner) on the page.
func (s *Server) teamFormError(c echo.Context, err error) error {
	f := web.NewForm()
	if !formError(&f, err) {
		return err
	}
	return s.renderTeam(c, http.StatusConflict, "", f)
}

func (s *Server) handleProjectSettings(c echo.Context) error {
	return render(c, http.StatusOK, web.ProjectSettings(s.page(c, currentProject(c).Name+" settings", "projects"), projectNav(c, "settings"), web.NewForm()))
}

func (s *Server) handleDeleteProject(c echo.Context) error {
	p := currentProject(c)
	if err := s.core.DeleteProject(c.Request().Context(), actor(c), p); err != nil {
		f := web.NewForm()
		if !formError(&f, err) {
			return err
		}
		return render(c, http.StatusConflict, web.ProjectSettings(s.page(c, p.Name+" settings", "projects"), projectNav(c, "settings"), f))
	}
	return redirect(c, "/projects", "project-gone")
}

// actorOf is who makes the request: its API token, or the signed-in user.
func actorOf(c echo.Context) plane.Actor {
	if tok := token(c); tok != nil {
		return plane.Actor{TokenID: tok.ID, Name: "token " + tok.Name}
	}
	if currentUser(c) != nil {
		return actor(c)
	}
	return plane.Actor{}
}
