package server

import (
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/server/controller"
	"plane/web"
)

// A project's webhooks in the dashboard: the list with the form to add one
// (its secret shown in that answer only), a webhook's page with its
// delivery log (polled), delete, and a retry per delivery. Everything goes
// through the core's use-cases, which keep another project's webhooks out
// of reach (not found).

func (s *Server) webhookRoutes(g *echo.Group) {
	g.GET("/webhooks", s.handleWebhooksPage)
	g.POST("/webhooks", s.handleCreateWebhookForm)
	g.GET("/webhooks/:id", s.handleWebhookPage)
	g.GET("/webhooks/:id/deliveries", s.handleDeliveriesFragment)
	g.POST("/webhooks/:id/delete", s.handleDeleteWebhookForm)
	g.POST("/webhooks/:id/deliveries/:delivery/retry", s.handleRetryDeliveryForm)
}

// deliveriesShown is how many of a webhook's latest deliveries its page
// shows.
const deliveriesShown = 50

func (s *Server) handleWebhooksPage(c echo.Context) error {
	return s.renderWebhooks(c, http.StatusOK, web.NewForm(), web.WebhooksView{})
}

// renderWebhooks shows the webhooks page; v brings a webhook just created.
func (s *Server) renderWebhooks(c echo.Context, status int, f web.Form, v web.WebhooksView) error {
	p := currentProject(c)
	ws, err := s.core.ProjectWebhooks(c.Request().Context(), p.ID)
	switch {
	case plane.ErrorCodeOf(err) == plane.EUNAVAILABLE:
		v.Unavailable = plane.ErrorMessageOf(err)
	case err != nil:
		return err
	}
	v.Nav, v.Webhooks, v.Form, v.Now = projectNav(c, "webhooks"), ws, f, time.Now()
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store") // it may show a secret
	return render(c, status, web.Webhooks(s.page(c, p.Name+" webhooks", "projects"), v))
}

func (s *Server) handleCreateWebhookForm(c echo.Context) error {
	p := currentProject(c)
	f := formValues(c, "url")
	params, err := c.FormParams()
	if err != nil {
		return plane.Errorf(plane.EINVALID, "unreadable form: %v", err)
	}
	in := plane.WebhookInput{URL: strings.TrimSpace(f.Value("url"))}
	for _, t := range params["events"] {
		in.Events = append(in.Events, plane.ProjectEventType(t))
	}
	f.Values["events"] = strings.Join(params["events"], " ")
	nw, err := s.core.CreateWebhook(c.Request().Context(), actor(c), p.ID, in)
	if err != nil {
		if !formError(&f, err, "url", "events") {
			return err
		}
		return s.renderWebhooks(c, http.StatusUnprocessableEntity, f, web.WebhooksView{})
	}
	return s.renderWebhooks(c, http.StatusCreated, web.NewForm(), web.WebhooksView{Secret: nw.Secret, Created: nw.Webhook})
}

// projectWebhook loads the webhook of the path in the current project.
func (s *Server) projectWebhook(c echo.Context) (*plane.Webhook, error) {
	id, err := pathID(c, "id", "webhook")
	if err != nil {
		return nil, err
	}
	return s.core.Webhook(c.Request().Context(), currentProject(c).ID, id)
}

// deliveries reads a webhook's latest deliveries for its page.
func (s *Server) deliveries(c echo.Context, w *plane.Webhook) ([]web.Delivery, error) {
	ds, err := s.core.WebhookDeliveries(c.Request().Context(), currentProject(c).ID, w.ID, deliveriesShown)
	if err != nil {
		return nil, err
	}
	return deliveriesView(ds), nil
}

func deliveriesView(ds []controller.WebhookDelivery) []web.Delivery {
	out := make([]web.Delivery, len(ds))
	for i, d := range ds {
		out[i] = web.Delivery{WebhookDelivery: d.WebhookDelivery, RetryUntil: d.RetryUntil}
	}
	return out
}

func (s *Server) handleWebhookPage(c echo.Context) error {
	p := currentProject(c)
	w, err := s.projectWebhook(c)
	if err != nil {
		return err
	}
	ds, err := s.deliveries(c, w)
	if err != nil {
		return err
	}
	path := web.WebhookPath(web.ProjectPath(p.ID), w.ID)
	v := web.WebhookView{Nav: projectNav(c, "webhooks"), Webhook: w, Deliveries: ds, DeliveriesURL: path + "/deliveries", Now: time.Now()}
	return render(c, http.StatusOK, web.WebhookPage(s.page(c, p.Name+" webhook", "projects"), v))
}

// handleDeliveriesFragment is the webhook page's delivery log alone, which
// the page polls: attempts are made on any controller and announced on no
// bus.
func (s *Server) handleDeliveriesFragment(c echo.Context) error {
	w, err := s.projectWebhook(c)
	if err != nil {
		return err
	}
	ds, err := s.deliveries(c, w)
	if err != nil {
		return err
	}
	csrf, _ := c.Get(csrfKey).(string)
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return render(c, http.StatusOK, web.Deliveries(csrf, web.WebhookPath(web.ProjectPath(currentProject(c).ID), w.ID), ds, time.Now()))
}

func (s *Server) handleDeleteWebhookForm(c echo.Context) error {
	p := currentProject(c)
	id, err := pathID(c, "id", "webhook")
	if err != nil {
		return err
	}
	if err := s.core.DeleteWebhook(c.Request().Context(), actor(c), p.ID, id); err != nil {
		return err
	}
	return redirect(c, web.ProjectPath(p.ID)+"/webhooks", "webhook-deleted")
}

func (s *Server) handleRetryDeliveryForm(c echo.Context) error {
	p := currentProject(c)
	id, err := pathID(c, "id", "webhook")
	if err != nil {
		return err
	}
	delivery, err := pathID(c, "delivery", "delivery")
	if err != nil {
		return err
	}
	if _, err := s.core.RetryWebhookDelivery(c.Request().Context(), actor(c), p.ID, id, delivery); err != nil {
		return err
	}
	return redirect(c, web.WebhookPath(web.ProjectPath(p.ID), id), "delivery-retried")
}
