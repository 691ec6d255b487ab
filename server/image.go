package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/api"
)

func (s *Server) handleCreateImage(c echo.Context) error {
	in, err := plane.DecodeImageInput(c.Request().Body)
	if err != nil {
		return err
	}
	img, err := s.core.RegisterImage(c.Request().Context(), actorOf(c), token(c).ProjectID, in)
	if err != nil {
		return err
	}
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
	img, err := s.core.UpdateImage(c.Request().Context(), actorOf(c), token(c).ProjectID, c.Param("name"), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, img)
}

func (s *Server) handleDeleteImage(c echo.Context) error {
	if err := s.core.DeleteImage(c.Request().Context(), actorOf(c), token(c).ProjectID, c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
