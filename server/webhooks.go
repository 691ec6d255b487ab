package server

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/api"
	"plane/server/controller"
)

// The API's webhooks: create (the secret is in that answer only), list,
// read, delete, and the delivery log with a retry by hand. A webhook of
// another project is not found.

// maxWebhookBody bounds a webhook's JSON: a URL and a few event types.
const maxWebhookBody = 8 << 10

// webhookOut is a webhook as the API shows it (without its secret).
func webhookOut(w *plane.Webhook) api.Webhook {
	events := w.Events
	if events == nil {
		events = []plane.ProjectEventType{}
	}
	return api.Webhook{ID: w.ID, URL: w.URL, Events: events, CreatedAt: w.CreatedAt,
		FailingSince: w.FailingSince, DisabledAt: w.DisabledAt, DisabledReason: w.DisabledReason}
}

// deliveryOut is a delivery with its attempts, as the API shows it.
func deliveryOut(d controller.WebhookDelivery) api.Delivery {
	out := api.Delivery{ID: d.ID, WebhookID: d.WebhookID, EventID: d.EventID, EventType: d.EventType, Status: d.Status,
		CreatedAt: d.CreatedAt, NextAttemptAt: d.NextAttemptAt, RetryUntil: d.RetryUntil, Attempts: []api.DeliveryAttempt{}}
	for _, a := range d.Attempts {
		out.Attempts = append(out.Attempts, api.DeliveryAttempt{Time: a.Time, StatusCode: a.StatusCode, Error: a.Error, DurationMS: a.Duration.Milliseconds()})
	}
	return out
}

func (s *Server) handleCreateWebhook(c echo.Context) error {
	var in plane.WebhookInput
	if err := plane.DecodeJSON(c.Request().Body, maxWebhookBody, &in); err != nil {
		return err
	}
	nw, err := s.core.CreateWebhook(c.Request().Context(), actorOf(c), token(c).ProjectID, in)
	if err != nil {
		return err
	}
	out := webhookOut(nw.Webhook)
	out.Secret = nw.Secret
	return c.JSON(http.StatusCreated, out)
}

func (s *Server) handleListWebhooks(c echo.Context) error {
	ws, err := s.core.ProjectWebhooks(c.Request().Context(), token(c).ProjectID)
	if err != nil {
		return err
	}
	out := api.Webhooks{Webhooks: make([]api.Webhook, 0, len(ws))}
	for _, w := range ws {
		out.Webhooks = append(out.Webhooks, webhookOut(w))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) handleGetWebhook(c echo.Context) error {
	id, err := pathID(c, "id", "webhook")
	if err != nil {
		return err
	}
	w, err := s.core.Webhook(c.Request().Context(), token(c).ProjectID, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, webhookOut(w))
}

func (s *Server) handleDeleteWebhook(c echo.Context) error {
	id, err := pathID(c, "id", "webhook")
	if err != nil {
		return err
	}
	if err := s.core.DeleteWebhook(c.Request().Context(), actorOf(c), token(c).ProjectID, id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) handleWebhookDeliveries(c echo.Context) error {
	id, err := pathID(c, "id", "webhook")
	if err != nil {
		return err
	}
	limit := 0
	if v := c.QueryParam("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 500 {
			return plane.FieldErrorf("limit", "must be a number from 1 to 500 (got %q)", v)
		}
	}
	ds, err := s.core.WebhookDeliveries(c.Request().Context(), token(c).ProjectID, id, limit)
	if err != nil {
		return err
	}
	out := api.Deliveries{Deliveries: make([]api.Delivery, 0, len(ds))}
	for _, d := range ds {
		out.Deliveries = append(out.Deliveries, deliveryOut(d))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) handleRetryDelivery(c echo.Context) error {
	id, err := pathID(c, "id", "webhook")
	if err != nil {
		return err
	}
	delivery, err := pathID(c, "delivery", "delivery")
	if err != nil {
		return err
	}
	d, err := s.core.RetryWebhookDelivery(c.Request().Context(), actorOf(c), token(c).ProjectID, id, delivery)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, deliveryOut(d))
}
