package server

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPIDoc is the OpenAPI 3.0.3 description of the controller's API. A
// test keeps it in step with the routes and the JSON shapes.
//
//go:embed openapi.json
var openAPIDoc []byte

// handleOpenAPI serves the OpenAPI document: GET /api/v1/openapi.json.
func (s *Server) handleOpenAPI(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "no-cache")
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPIDoc)
}
