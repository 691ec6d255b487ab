package server

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/auth"
	"plane/server/controller"
	"plane/web"
)

func (s *Server) authRoutes(g *echo.Group) {
	g.GET("/signup", s.handleSignupPage)
	g.POST("/signup", s.handleSignup)
	g.GET("/login", s.handleLoginPage)
	g.POST("/login", s.handleLogin)
	g.POST("/logout", s.handleLogout)
	g.GET("/invites/:secret", s.handleInvitePage)
	g.POST("/invites/:secret", s.handleAcceptInvite, s.requireUser)
}

// safeNext keeps a post-login redirect on this site: a path, never a URL;
// anything else sends the user to their projects.
func safeNext(next string) string {
	if !localPath(next) {
		return "/projects"
	}
	return next
}

// localPath reports whether p is a path on this site, and nothing a browser
// could read as another site's address. Browsers drop tabs and line breaks
// from URLs ("/\t/evil.example" becomes "//evil.example", a host) and read a
// backslash as a slash ("/\\evil.example"), so those are refused wherever
// they are, as is every other control character.
func localPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	u, err := url.Parse(p)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil
}

func (s *Server) isFirstUser(ctx context.Context) (bool, error) {
	users, err := s.Users.FindUsers(ctx)
	return len(users) == 0, err
}

func (s *Server) handleSignupPage(c echo.Context) error {
	first, err := s.isFirstUser(c.Request().Context())
	if err != nil {
		return err
	}
	return render(c, http.StatusOK, web.Signup(s.page(c, "Sign up", ""), web.NewForm(), c.QueryParam("next"), first))
}

func (s *Server) handleSignup(c echo.Context) error {
	ctx := c.Request().Context()
	f := formValues(c, "name", "email")
	next := c.FormValue("next")
	u, err := s.core.SignUp(ctx, controller.SignUp{Name: f.Value("name"), Email: f.Value("email"), Password: c.FormValue("password")})
	if err != nil {
		if !formError(&f, err, "name", "email", "password") {
			return err
		}
		first, ferr := s.isFirstUser(ctx)
		if ferr != nil {
			return ferr
		}
		return render(c, http.StatusUnprocessableEntity, web.Signup(s.page(c, "Sign up", ""), f, next, first))
	}
	if err := s.signIn(c, u); err != nil {
		return err
	}
	return redirect(c, safeNext(next), "welcome")
}

// signIn starts a new session for u, ending the one the browser had, so
// that a session id planted before login is worth nothing after it.
func (s *Server) signIn(c echo.Context, u *plane.User) error {
	old := ""
	if ck, err := c.Cookie(sessionCookie); err == nil {
		old = ck.Value
	}
	secret, sess, err := s.Sessions.Rotate(c.Request().Context(), old, u.ID)
	if err != nil {
		return err
	}
	s.setSessionCookie(c, secret)
	c.Set(userKey, u)
	// Tokens of the browser before sign-in are worth nothing after it.
	s.setCSRFToken(c, sess)
	return nil
}

func (s *Server) handleLoginPage(c echo.Context) error {
	if currentUser(c) != nil {
		return c.Redirect(http.StatusSeeOther, safeNext(c.QueryParam("next")))
	}
	return render(c, http.StatusOK, web.Login(s.page(c, "Log in", ""), web.NewForm(), c.QueryParam("next")))
}

func (s *Server) handleLogin(c echo.Context) error {
	f := formValues(c, "email")
	next := c.FormValue("next")
	u, err := s.core.LogIn(c.Request().Context(), f.Value("email"), c.FormValue("password"), c.RealIP())
	var many controller.TooManyAttempts
	switch {
	case errors.As(err, &many):
		f.Errors[""] = "Too many failed attempts. Try again in " + web.Duration(many.Wait.Round(time.Second)) + "."
		c.Response().Header().Set("Retry-After", itoaDur(many.Wait))
		return render(c, http.StatusTooManyRequests, web.Login(s.page(c, "Log in", ""), f, next))
	case plane.ErrorCodeOf(err) == plane.EUNAUTHORIZED:
		f.Errors[""] = "Wrong email or password."
		return render(c, http.StatusUnauthorized, web.Login(s.page(c, "Log in", ""), f, next))
	case err != nil:
		return err
	}
	if err := s.signIn(c, u); err != nil {
		return err
	}
	return redirect(c, safeNext(next), "")
}

// itoaDur is a Retry-After value: whole seconds, rounded up.
func itoaDur(d time.Duration) string { return strconv.Itoa(int(math.Ceil(d.Seconds()))) }

func (s *Server) handleLogout(c echo.Context) error {
	if ck, err := c.Cookie(sessionCookie); err == nil {
		if err := s.Sessions.Delete(c.Request().Context(), ck.Value); err != nil {
			return err
		}
	}
	s.clearSessionCookie(c)
	return c.Redirect(http.StatusSeeOther, "/login")
}

func (s *Server) handleInvitePage(c echo.Context) error {
	secret := c.Param("secret")
	if currentUser(c) == nil {
		return c.Redirect(http.StatusSeeOther, "/signup?next="+url.QueryEscape("/invites/"+secret))
	}
	v := web.InviteView{Secret: secret, Role: "member", TeamName: "a team"}
	inv, team, err := s.findInvite(c.Request().Context(), secret)
	switch {
	case err != nil && plane.ErrorCodeOf(err) != plane.ENOTFOUND:
		return err
	case err != nil:
		v.Problem = "This invite link is not valid: ask for a new one."
	default:
		v.TeamName, v.Role = team.Name, string(inv.Role)
		if inv.UsedAt != nil {
			v.Problem = "This invite link was used already: ask for a new one."
		} else if time.Now().After(inv.ExpiresAt) {
			v.Problem = "This invite link has expired: ask for a new one."
		}
	}
	status := http.StatusOK
	if v.Problem != "" {
		status = http.StatusGone
	}
	return render(c, status, web.InvitePage(s.page(c, "Join a team", ""), v))
}

func (s *Server) findInvite(ctx context.Context, secret string) (*plane.Invite, *plane.Team, error) {
	inv, err := s.Teams.FindInvite(ctx, auth.HashSecret(secret))
	if err != nil {
		return nil, nil, err
	}
	team, err := s.Teams.FindTeamByID(ctx, inv.TeamID)
	return inv, team, err
}

func (s *Server) handleAcceptInvite(c echo.Context) error {
	m, err := s.core.AcceptInvite(c.Request().Context(), actor(c), c.Param("secret"))
	if err != nil {
		if code := plane.ErrorCodeOf(err); code == plane.ENOTFOUND || code == plane.ECONFLICT {
			return render(c, http.StatusGone, web.InvitePage(s.page(c, "Join a team", ""),
				web.InviteView{TeamName: "a team", Problem: "This invite link cannot be used: " + plane.ErrorMessageOf(err)}))
		}
		return err
	}
	return redirect(c, web.TeamPath(m.TeamID), "joined")
}
