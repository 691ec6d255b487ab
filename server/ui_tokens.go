package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/server/controller"
	"plane/web"
)

func (s *Server) tokenRoutes(g *echo.Group) {
	g.GET("/tokens", s.handleTokensPage)
	g.POST("/tokens", s.handleCreateTokenForm)
	g.POST("/tokens/:id/revoke", s.handleRevokeTokenForm)
}

// maxTokenName bounds a token's name.
const maxTokenName = 100

func (s *Server) handleTokensPage(c echo.Context) error {
	return s.renderTokens(c, http.StatusOK, newTokenForm(), web.TokensView{})
}

// newTokenForm is the create form: every scope, no expiry.
func newTokenForm() web.Form {
	f := web.NewForm()
	f.Values["scopes"] = controller.ScopeNames(plane.AllScopes)
	f.Values["expires"] = "never"
	return f
}

// renderTokens shows the tokens page; v brings a token just created.
func (s *Server) renderTokens(c echo.Context, status int, f web.Form, v web.TokensView) error {
	p := currentProject(c)
	toks, err := s.Tokens.FindTokens(c.Request().Context(), p.ID)
	if err != nil {
		return err
	}
	v.Nav, v.Tokens, v.Form, v.Now = projectNav(c, "tokens"), toks, f, time.Now()
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store") // it may show a token
	return render(c, status, web.Tokens(s.page(c, p.Name+" API tokens", "projects"), v))
}

func (s *Server) handleCreateTokenForm(c echo.Context) error {
	p := currentProject(c)
	f := formValues(c, "name", "expires")
	params, err := c.FormParams()
	if err != nil {
		return plane.Errorf(plane.EINVALID, "unreadable form: %v", err)
	}
	in := controller.TokenInput{Name: f.Value("name"), Scopes: params["scopes"]}
	f.Values["scopes"] = strings.Join(in.Scopes, " ")
	if exp := f.Value("expires"); exp != "never" {
		days, err := strconv.Atoi(exp)
		if err != nil || days == 0 {
			days = -1 // not one of the offered lifetimes
		}
		in.LifetimeDays = days
	}
	tok, err := s.core.CreateToken(c.Request().Context(), actor(c), p.ID, in)
	if err != nil {
		if !formError(&f, err, "name", "scopes", "expires") {
			return err
		}
		return s.renderTokens(c, http.StatusUnprocessableEntity, f, web.TokensView{})
	}
	return s.renderTokens(c, http.StatusCreated, newTokenForm(), web.TokensView{Signed: tok.Signed, SignedName: tok.Token.Name})
}

func (s *Server) handleRevokeTokenForm(c echo.Context) error {
	p := currentProject(c)
	if _, err := s.core.RevokeToken(c.Request().Context(), actor(c), p.ID, c.Param("id")); err != nil {
		return err
	}
	return redirect(c, web.ProjectPath(p.ID)+"/tokens", "token-revoked")
}
