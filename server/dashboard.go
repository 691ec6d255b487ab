package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/a-h/templ"
	"github.com/labstack/echo/v4"

	"plane"
	"plane/assets"
	"plane/web"
)

// The session cookie holds a secret whose hash is the stored session id.
const (
	sessionCookie = "plane_session"

	userKey = "plane.user"
)

// dashboardRoutes registers the pages. Every dashboard request loads the
// session and passes the CSRF check (unsafe methods need the token).
func (s *Server) dashboardRoutes() {
	e := s.echo
	e.GET("/assets/*", echo.WrapHandler(assets.Handler()))
	d := e.Group("", s.loadSession, s.checkCSRF)

	d.GET("/", s.handleHome)
	s.authRoutes(d)
	u := d.Group("", s.requireUser)
	s.projectRoutes(u)
	p := u.Group("/projects/:pid", s.requireMember)
	s.backendRoutes(p)
	s.projectTabRoutes(p)
	s.adminRoutes(u)
}

// loadSession sets the signed-in user and their session, if any, from the
// session cookie.
func (s *Server) loadSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if ck, err := c.Cookie(sessionCookie); err == nil && ck.Value != "" {
			u, sess, err := s.Sessions.Lookup(c.Request().Context(), ck.Value)
			switch {
			case err == nil:
				c.Set(userKey, u)
				c.Set(sessionKey, sess)
			case plane.ErrorCodeOf(err) == plane.EUNAUTHORIZED:
				s.clearSessionCookie(c)
			default:
				return err
			}
		}
		return next(c)
	}
}

// requireUser sends the signed-out to the login page, and back afterwards.
func (s *Server) requireUser(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if currentUser(c) != nil {
			return next(c)
		}
		r := c.Request()
		if r.Method == http.MethodGet && r.Header.Get("HX-Request") == "" && r.Header.Get("Accept") != "text/event-stream" {
			return c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(r.URL.RequestURI()))
		}
		return plane.Errorf(plane.EUNAUTHORIZED, "you are signed out: log in again")
	}
}

// requireAdmin refuses the pages of instance admins to everyone else.
func (s *Server) requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if u := currentUser(c); u == nil || !u.Admin {
			return plane.Errorf(plane.EFORBIDDEN, "these pages are for the admins of this Plane; ask one of them if you need access")
		}
		return next(c)
	}
}

func currentUser(c echo.Context) *plane.User {
	u, _ := c.Get(userKey).(*plane.User)
	return u
}

// actor is the signed-in user as the activity log names them.
func actor(c echo.Context) plane.Actor {
	u := currentUser(c)
	return plane.Actor{UserID: u.ID, Name: u.Email}
}

func (s *Server) setSessionCookie(c echo.Context, secret string) {
	c.SetCookie(&http.Cookie{
		Name: sessionCookie, Value: secret, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: c.Scheme() == "https", MaxAge: int(plane.SessionTTL.Seconds()),
	})
}

func (s *Server) clearSessionCookie(c echo.Context) {
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

// page is the frame data of a page for the request.
func (s *Server) page(c echo.Context, title, nav string) web.Page {
	csrf, _ := c.Get(csrfKey).(string)
	p := web.Page{Title: title, User: currentUser(c), CSRF: csrf, Nav: nav, AssetPath: assets.Path}
	if msg := flashes[c.QueryParam("flash")]; msg != "" {
		p.Flash = &web.Flash{Kind: "success", Message: msg}
	}
	return p
}

// flashes are the messages a redirect may ask the next page to show. Only
// these codes are accepted, so a link cannot put words on our pages.
var flashes = map[string]string{
	"spawned":          "The backend was spawned.",
	"terminating":      "The backend is terminating.",
	"image-created":    "The image was registered.",
	"image-saved":      "The image was saved.",
	"image-deleted":    "The image was deleted.",
	"image-pulling":    "The drones are pulling the image.",
	"token-revoked":    "The token was revoked: it no longer works.",
	"webhook-deleted":  "The webhook was deleted: it gets no more events.",
	"delivery-retried": "The delivery is being sent again.",
	"joined":           "You joined the team.",
	"member-saved":     "The member's role was changed.",
	"member-gone":      "The member was removed from the team.",
	"project-gone":     "The project was deleted.",
	"team-created":     "The team was created.",
	"drained":          "The drone is draining: it takes no new backends.",
	"undrained":        "The drone takes new backends again.",
	"welcome":          "Welcome to Plane.",
}

// render writes a page or fragment.
func render(c echo.Context, status int, comp templ.Component) error {
	var buf bytes.Buffer
	if err := comp.Render(c.Request().Context(), &buf); err != nil {
		return err
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// renderString renders a fragment for an event stream.
func renderString(ctx context.Context, comp templ.Component) (string, error) {
	var b strings.Builder
	err := comp.Render(ctx, &b)
	return b.String(), err
}

// formError puts err on its field in f (or on the whole form); it returns
// false for errors that are not the user's to fix.
func formError(f *web.Form, err error, fields ...string) bool {
	code := plane.ErrorCodeOf(err)
	if code != plane.EINVALID && code != plane.ECONFLICT && code != plane.EUNAVAILABLE && code != plane.ENOTFOUND {
		return false
	}
	msg := plane.ErrorMessageOf(err)
	field := ""
	var pe *plane.Error
	if errors.As(err, &pe) {
		for _, f := range fields {
			if pe.Field == f {
				field = f
				msg = strings.TrimPrefix(msg, f+": ")
			}
		}
	}
	f.Errors[field] = msg
	return true
}

// formValues copies the named fields of the request into a form.
func formValues(c echo.Context, names ...string) web.Form {
	f := web.NewForm()
	for _, n := range names {
		f.Values[n] = c.FormValue(n)
	}
	return f
}

// redirect answers a form post with the page to show next.
func redirect(c echo.Context, path, flash string) error {
	if flash != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "flash=" + flash
	}
	return c.Redirect(http.StatusSeeOther, path)
}

func (s *Server) handleHome(c echo.Context) error {
	if currentUser(c) == nil {
		return c.Redirect(http.StatusSeeOther, "/login")
	}
	return c.Redirect(http.StatusSeeOther, "/projects")
}

// pathID parses a numeric path parameter; anything else is not found.
func pathID(c echo.Context, name, what string) (int64, error) {
	id, err := strconv.ParseInt(c.Param(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, plane.Errorf(plane.ENOTFOUND, "%s %q not found", what, c.Param(name))
	}
	return id, nil
}

// wantsPage reports whether an error should be shown as a page: a browser
// navigating the dashboard, not an API client, a stream or an htmx swap.
func wantsPage(c echo.Context) bool {
	r := c.Request()
	p := r.URL.Path
	if strings.HasPrefix(p, "/api/") || p == "/healthz" || p == "/readyz" || p == "/metrics" {
		return false
	}
	return r.Header.Get("HX-Request") == "" && strings.Contains(r.Header.Get("Accept"), "text/html") ||
		r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get(echo.HeaderContentType), echo.MIMEApplicationForm)
}

// errorTitles name the error pages.
var errorTitles = map[int]string{
	http.StatusBadRequest:          "That did not work",
	http.StatusUnauthorized:        "Please log in",
	http.StatusForbidden:           "Not allowed",
	http.StatusNotFound:            "Not found",
	http.StatusConflict:            "That did not work",
	http.StatusServiceUnavailable:  "Unavailable",
	http.StatusInternalServerError: "Something went wrong",
}

func (s *Server) renderErrorPage(c echo.Context, status int, msg string) {
	title := errorTitles[status]
	if title == "" {
		title = http.StatusText(status)
	}
	if err := render(c, status, web.ErrorPage(s.page(c, title, ""), status, title, msg)); err != nil {
		s.Logger.Error("render error page", "err", err)
	}
}
