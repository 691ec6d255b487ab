package server

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/auth"
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
	f.Values["scopes"] = scopeNames(plane.AllScopes)
	f.Values["expires"] = "never"
	return f
}

// scopeNames lists scopes the way the form and the activity log show them.
func scopeNames(scopes []plane.Scope) string {
	names := make([]string, len(scopes))
	for i, sc := range scopes {
		names[i] = string(sc)
	}
	return strings.Join(names, " ")
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

// tokenForm reads the create form into a token record.
func tokenForm(f web.Form, scopes []string, now time.Time) (*plane.Token, error) {
	tok := &plane.Token{ID: auth.NewTokenID(), Name: strings.TrimSpace(f.Value("name")), CreatedAt: now.UTC()}
	switch {
	case tok.Name == "":
		return nil, plane.FieldErrorf("name", "give the token a name, such as the app that uses it")
	case len(tok.Name) > maxTokenName:
		return nil, plane.FieldErrorf("name", "use at most %d characters", maxTokenName)
	}
	for _, v := range scopes {
		sc := plane.Scope(v)
		if !sc.Valid() {
			return nil, plane.FieldErrorf("scopes", "unknown scope %q", v)
		}
		tok.Scopes = append(tok.Scopes, sc)
	}
	if len(tok.Scopes) == 0 {
		return nil, plane.FieldErrorf("scopes", "tick at least one scope")
	}
	if exp := f.Value("expires"); exp != "never" {
		if !slices.ContainsFunc(web.TokenExpiries, func(o web.Option) bool { return o.Value == exp }) {
			return nil, plane.FieldErrorf("expires", "choose one of the offered lifetimes")
		}
		days, _ := strconv.Atoi(exp)
		t := tok.CreatedAt.Add(time.Duration(days) * 24 * time.Hour)
		tok.ExpiresAt = &t
	}
	return tok, nil
}

func (s *Server) handleCreateTokenForm(c echo.Context) error {
	p := currentProject(c)
	f := formValues(c, "name", "expires")
	params, err := c.FormParams()
	if err != nil {
		return plane.Errorf(plane.EINVALID, "unreadable form: %v", err)
	}
	scopes := params["scopes"]
	f.Values["scopes"] = strings.Join(scopes, " ")
	tok, err := tokenForm(f, scopes, time.Now())
	var signed string
	if err == nil {
		tok.ProjectID = p.ID
		signed, err = s.issueToken(tok)
	}
	if err == nil {
		err = s.Tokens.CreateToken(c.Request().Context(), tok)
	}
	if err != nil {
		if !formError(&f, err, "name", "scopes", "expires") {
			return err
		}
		return s.renderTokens(c, http.StatusUnprocessableEntity, f, web.TokensView{})
	}
	s.record(c, p.ID, plane.ActionTokenCreate, tok.Name, tokenDetail(tok))
	return s.renderTokens(c, http.StatusCreated, newTokenForm(), web.TokensView{Signed: signed, SignedName: tok.Name})
}

// issueToken signs tok with the controller's key: the one key signs API
// tokens and connect tokens, and the Authenticator holds its public half.
func (s *Server) issueToken(tok *plane.Token) (string, error) {
	if s.ConnectKey == nil {
		return "", plane.Errorf(plane.EUNAVAILABLE, "this controller has no key to sign API tokens with")
	}
	return (&auth.Issuer{Key: s.ConnectKey}).IssueAPIToken(tok)
}

// tokenDetail describes a new token for the activity log.
func tokenDetail(tok *plane.Token) string {
	d := scopeNames(tok.Scopes)
	if tok.ExpiresAt != nil {
		d += ", expires " + web.Time(*tok.ExpiresAt)
	}
	return d
}

func (s *Server) handleRevokeTokenForm(c echo.Context) error {
	ctx := c.Request().Context()
	p := currentProject(c)
	id := c.Param("id")
	tok, err := s.Tokens.FindTokenByID(ctx, id)
	if err == nil && tok.ProjectID != p.ID {
		err = plane.Errorf(plane.ENOTFOUND, "token %q not found", id)
	}
	if err == nil {
		err = s.Tokens.RevokeToken(ctx, tok.ID)
	}
	if err != nil {
		return err
	}
	s.record(c, p.ID, plane.ActionTokenRevoke, tok.Name, "")
	return redirect(c, web.ProjectPath(p.ID)+"/tokens", "token-revoked")
}
