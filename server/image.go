package server

import (
	"maps"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/api"
)

func (s *Server) handleCreateImage(c echo.Context) error {
	in, err := plane.DecodeImageInput(c.Request().Body)
	if err != nil {
		return err
	}
	img, err := plane.NewImage(token(c).ProjectID, in)
	if err != nil {
		return err
	}
	if err := s.Images.CreateImage(c.Request().Context(), img); err != nil {
		return err
	}
	s.record(c, img.ProjectID, plane.ActionImageCreate, img.Name, img.Ref)
	return c.JSON(http.StatusCreated, img)
}

func (s *Server) handleListImages(c echo.Context) error {
	imgs, err := s.Images.FindImages(c.Request().Context(), token(c).ProjectID)
	if err != nil {
		return err
	}
	if imgs == nil {
		imgs = []*plane.Image{}
	}
	return c.JSON(http.StatusOK, api.Images{Images: imgs})
}

func (s *Server) handleGetImage(c echo.Context) error {
	img, err := s.Images.FindImage(c.Request().Context(), token(c).ProjectID, c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, img)
}

func (s *Server) handleUpdateImage(c echo.Context) error {
	in, err := plane.DecodeImageInput(c.Request().Body)
	if err != nil {
		return err
	}
	ctx, pid := c.Request().Context(), token(c).ProjectID
	old, err := s.Images.FindImage(ctx, pid, c.Param("name"))
	if err != nil {
		return err
	}
	img, err := s.Images.UpdateImage(ctx, pid, old.Name, in)
	if err != nil {
		return err
	}
	s.record(c, pid, plane.ActionImageUpdate, img.Name, imageChanges(old, img))
	return c.JSON(http.StatusOK, img)
}

func (s *Server) handleDeleteImage(c echo.Context) error {
	pid := token(c).ProjectID
	if err := s.Images.DeleteImage(c.Request().Context(), pid, c.Param("name")); err != nil {
		return err
	}
	s.record(c, pid, plane.ActionImageDelete, c.Param("name"), "")
	return c.NoContent(http.StatusNoContent)
}

// imageChanges names what an update changed, for the activity log.
func imageChanges(old, img *plane.Image) string {
	var changed []string
	for _, f := range []struct {
		name string
		diff bool
	}{
		{"name (was " + old.Name + ")", old.Name != img.Name},
		{"ref " + img.Ref, old.Ref != img.Ref},
		{"port", old.Port != img.Port},
		{"pull_policy", old.PullPolicy != img.PullPolicy},
		{"public", old.Public != img.Public},
		{"allow_bearer", old.AllowBearer != img.AllowBearer},
		{"env", !maps.Equal(old.Env, img.Env)},
		{"max_idle_seconds", old.MaxIdleSeconds != img.MaxIdleSeconds},
		{"lifetime_seconds", old.LifetimeSeconds != img.LifetimeSeconds},
		{"cpu_millis", old.CPUMillis != img.CPUMillis},
		{"memory_mb", old.MemoryMB != img.MemoryMB},
	} {
		if f.diff {
			changed = append(changed, f.name)
		}
	}
	if len(changed) == 0 {
		return "no change"
	}
	return "changed " + strings.Join(changed, ", ")
}
