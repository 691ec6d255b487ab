package server

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"

	"github.com/labstack/echo/v4"

	"plane"
)

// The dashboard's CSRF protection. Every unsafe request carries a token in
// the _csrf form field or the X-CSRF-Token header (htmx), and the token is
// an HMAC, under a key only the controller holds, of what identifies the
// browser: its session, or before sign-in a random pre-session cookie.
//
// A plain double-submit cookie is not enough here: a backend on a sibling
// host under the same registrable domain can set cookies for the dashboard's
// host, and so choose the token it then submits. It can still plant a
// pre-session cookie, but it cannot compute the token of a cookie, and the
// token of a signed-in browser depends on a session id it never sees.
const (
	csrfCookie = "plane_csrf" // the pre-session value, before sign-in
	csrfField  = "_csrf"
	csrfHeader = "X-CSRF-Token"

	csrfKey    = "csrf"          // the context's token, for forms
	sessionKey = "plane.session" // the context's *plane.Session
)

// csrfValueBytes is the entropy of a pre-session cookie (256 bits).
const csrfValueBytes = 32

var csrfEncoding = base64.RawURLEncoding.Strict()

const msgCSRF = "this form has expired or did not come from Plane: reload the page and try again"

// csrfKeyFrom derives the key of CSRF tokens from the controller's signing
// key, so that open forms survive a restart and work on every controller of
// a cluster (they share that key). Without one, a random key does for the
// life of the process.
func csrfKeyFrom(signing ed25519.PrivateKey) []byte {
	if len(signing) != ed25519.PrivateKeySize {
		key := make([]byte, sha256.Size)
		_, _ = rand.Read(key) // never fails: see crypto/rand.Read
		return key
	}
	m := hmac.New(sha256.New, signing.Seed())
	m.Write([]byte("plane csrf token key"))
	return m.Sum(nil)
}

// csrfMAC is the token's MAC for a binding ("session:<id>" or "pre:<cookie>").
func (s *Server) csrfMAC(binding string) []byte {
	m := hmac.New(sha256.New, s.csrfSecret)
	m.Write([]byte(binding))
	return m.Sum(nil)
}

// checkCSRF refuses an unsafe request without the token of its browser, and
// gives every request the token for the forms it renders. It runs after
// loadSession, which puts the session in the context.
func (s *Server) checkCSRF(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// The page depends on the cookies: caches must not share it.
		c.Response().Header().Add(echo.HeaderVary, echo.HeaderCookie)
		binding := csrfBinding(c)
		if binding == "" && safeMethod(c.Request().Method) {
			v := make([]byte, csrfValueBytes)
			_, _ = rand.Read(v) // never fails: see crypto/rand.Read
			value := csrfEncoding.EncodeToString(v)
			s.setCSRFCookie(c, value)
			binding = "pre:" + value
		}
		if binding != "" {
			// The browser's own token, also for the forms of an error page.
			c.Set(csrfKey, csrfEncoding.EncodeToString(s.csrfMAC(binding)))
		}
		if !safeMethod(c.Request().Method) &&
			(binding == "" || !crossSiteAllowed(c.Request()) || !s.validCSRF(binding, csrfTokenOf(c))) {
			return plane.Errorf(plane.EFORBIDDEN, msgCSRF)
		}
		return next(c)
	}
}

// csrfBinding is what the request's token must be bound to: the signed-in
// session, else a well-formed pre-session cookie, else nothing.
func csrfBinding(c echo.Context) string {
	if sess, ok := c.Get(sessionKey).(*plane.Session); ok && sess != nil {
		return "session:" + sess.ID
	}
	if ck, err := c.Cookie(csrfCookie); err == nil {
		if b, err := csrfEncoding.DecodeString(ck.Value); err == nil && len(b) == csrfValueBytes {
			return "pre:" + ck.Value
		}
	}
	return ""
}

// setCSRFToken gives the rest of the request the token of a new session,
// started by sign-in.
func (s *Server) setCSRFToken(c echo.Context, sess *plane.Session) {
	c.Set(sessionKey, sess)
	c.Set(csrfKey, csrfEncoding.EncodeToString(s.csrfMAC("session:"+sess.ID)))
}

func (s *Server) validCSRF(binding, token string) bool {
	got, err := csrfEncoding.DecodeString(token)
	return err == nil && hmac.Equal(got, s.csrfMAC(binding))
}

// csrfTokenOf is the token a request carries: the form field, or the header
// htmx sends.
func csrfTokenOf(c echo.Context) string {
	if t := c.FormValue(csrfField); t != "" {
		return t
	}
	return c.Request().Header.Get(csrfHeader)
}

// crossSiteAllowed refuses unsafe requests that the browser says come from
// another site, sibling hosts of the same domain included, whatever token
// they carry. Browsers without Sec-Fetch-Site rely on the token alone.
func crossSiteAllowed(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return false
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

func (s *Server) setCSRFCookie(c echo.Context, value string) {
	c.SetCookie(&http.Cookie{
		Name: csrfCookie, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: c.Scheme() == "https", MaxAge: int(plane.SessionTTL.Seconds()),
	})
}
