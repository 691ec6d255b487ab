package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/api"
)

// The drones API lets operators script what the admin pages do. Drones
// belong to the instance, not to a project, so these routes take a token
// with the admin scope, which only the controller's machine makes.

// handleListDrones answers every drone the controller has heard of:
// GET /api/v1/drones.
func (s *Server) handleListDrones(c echo.Context) error {
	ds, err := s.Drones.FindDrones(c.Request().Context())
	if err != nil {
		return err
	}
	out := api.Drones{Drones: make([]plane.Drone, 0, len(ds))}
	for _, d := range ds {
		out.Drones = append(out.Drones, droneOut(d))
	}
	return c.JSON(http.StatusOK, out)
}

// handleDrain drains a drone (it takes no new backends) or undrains it,
// through the same use-case as the admin page's buttons:
// POST /api/v1/drones/:id/drain and /undrain.
func (s *Server) handleDrain(draining bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		d, err := s.core.Drain(ctx, actorOf(c), c.Param("id"), draining)
		if err != nil {
			return err
		}
		// Drain returns the drone as it found it; answer what it left.
		if d, err = s.Drones.FindDroneByID(ctx, d.ID); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, droneOut(d))
	}
}

// droneOut is a drone as the API answers it: images is an array, never null.
func droneOut(d *plane.Drone) plane.Drone {
	out := *d
	if out.Images == nil {
		out.Images = []string{}
	}
	return out
}
