package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"plane"
)

// Client calls a controller's API with a project's token.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client of the controller at baseURL; hc nil is
// http.DefaultClient.
func NewClient(baseURL, token string, hc *http.Client) (*Client, error) {
	if token == "" {
		return nil, errors.New("no API token")
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("controller URL %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("controller URL %q: want http:// or https:// and a host", baseURL)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: hc}, nil
}

// BackendFilter selects backends: Status is live (the default),
// terminated or all; Key, when set, only the backends with that key.
type BackendFilter struct {
	Status string
	Key    string
}

// Spawn spawns a backend, or returns the live one that holds req.Key.
func (c *Client) Spawn(ctx context.Context, req plane.SpawnRequest) (Backend, error) {
	var b Backend
	return b, c.Do(ctx, http.MethodPost, "/api/v1/backends", req, &b)
}

// Backends lists the project's backends.
func (c *Client) Backends(ctx context.Context, f BackendFilter) ([]Backend, error) {
	q := url.Values{}
	if f.Status != "" {
		q.Set("status", f.Status)
	}
	if f.Key != "" {
		q.Set("key", f.Key)
	}
	var out Backends
	err := c.Do(ctx, http.MethodGet, "/api/v1/backends?"+q.Encode(), nil, &out)
	return out.Backends, err
}

// Backend returns one backend.
func (c *Client) Backend(ctx context.Context, id string) (Backend, error) {
	var b Backend
	return b, c.Do(ctx, http.MethodGet, "/api/v1/backends/"+url.PathEscape(id), nil, &b)
}

// Terminate asks for a backend's end: soft (SIGTERM, grace, SIGKILL) or hard.
func (c *Client) Terminate(ctx context.Context, id string, hard bool) (Backend, error) {
	var b Backend
	return b, c.Do(ctx, http.MethodPost, "/api/v1/backends/"+url.PathEscape(id)+"/terminate", TerminateRequest{Hard: hard}, &b)
}

// Images lists the project's images.
func (c *Client) Images(ctx context.Context) ([]*plane.Image, error) {
	var out Images
	err := c.Do(ctx, http.MethodGet, "/api/v1/images", nil, &out)
	return out.Images, err
}

// UpdateImage changes the fields of the named image that in sets.
func (c *Client) UpdateImage(ctx context.Context, name string, in plane.ImageInput) (*plane.Image, error) {
	var img plane.Image
	return &img, c.Do(ctx, http.MethodPatch, "/api/v1/images/"+url.PathEscape(name), in, &img)
}

// Drones lists every drone; it takes a token with the admin scope.
func (c *Client) Drones(ctx context.Context) ([]plane.Drone, error) {
	var out Drones
	err := c.Do(ctx, http.MethodGet, "/api/v1/drones", nil, &out)
	return out.Drones, err
}

// Drain stops new placements on a drone or, with draining false, resumes
// them, and returns the drone as the drain left it; it takes a token with
// the admin scope.
func (c *Client) Drain(ctx context.Context, id string, draining bool) (plane.Drone, error) {
	verb := "/undrain"
	if draining {
		verb = "/drain"
	}
	var d plane.Drone
	return d, c.Do(ctx, http.MethodPost, "/api/v1/drones/"+url.PathEscape(id)+verb, nil, &d)
}

// Logs calls fn with each of a backend's log lines; with follow, until the
// backend terminates or ctx ends.
func (c *Client) Logs(ctx context.Context, id string, follow bool, fn func(plane.LogLine)) error {
	resp, err := c.Send(ctx, http.MethodGet, fmt.Sprintf("/api/v1/backends/%s/logs?follow=%t", url.PathEscape(id), follow), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l plane.LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("decode log line: %w", err)
		}
		fn(l)
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// Connections returns the users connected to a backend now, in the order
// they joined.
func (c *Client) Connections(ctx context.Context, id string) ([]Connection, error) {
	var out Connections
	err := c.Do(ctx, http.MethodGet, "/api/v1/backends/"+url.PathEscape(id)+"/connections", nil, &out)
	return out.Connections, err
}

// Disconnect closes user's connections to a backend ("" is the connections
// that name no user), or every user's with all, and refuses the connect
// tokens issued to them before.
func (c *Client) Disconnect(ctx context.Context, id, user string, all bool) error {
	var req DisconnectRequest
	if !all {
		req.User = &user
	}
	return c.Do(ctx, http.MethodPost, "/api/v1/backends/"+url.PathEscape(id)+"/disconnect", req, nil)
}

// KeepAlive holds off a backend's idle stop for seconds from now (1 to
// 86400, bounded by its lifetime) and returns the backend.
func (c *Client) KeepAlive(ctx context.Context, id string, seconds int) (Backend, error) {
	var b Backend
	return b, c.Do(ctx, http.MethodPost, "/api/v1/backends/"+url.PathEscape(id)+"/keepalive", KeepAliveRequest{Seconds: seconds}, &b)
}

// CreateWebhook creates a webhook of the project that gets the events of
// the given types (none: every type). The answer holds its Secret, which
// is never shown again.
func (c *Client) CreateWebhook(ctx context.Context, endpoint string, events []plane.ProjectEventType) (Webhook, error) {
	var w Webhook
	return w, c.Do(ctx, http.MethodPost, "/api/v1/webhooks", plane.WebhookInput{URL: endpoint, Events: events}, &w)
}

// Webhooks lists the project's webhooks, oldest first.
func (c *Client) Webhooks(ctx context.Context) ([]Webhook, error) {
	var out Webhooks
	err := c.Do(ctx, http.MethodGet, "/api/v1/webhooks", nil, &out)
	return out.Webhooks, err
}

// Webhook returns one webhook of the project.
func (c *Client) Webhook(ctx context.Context, id int64) (Webhook, error) {
	var w Webhook
	return w, c.Do(ctx, http.MethodGet, "/api/v1/webhooks/"+strconv.FormatInt(id, 10), nil, &w)
}

// DeleteWebhook deletes a webhook of the project; its pending deliveries
// are dropped.
func (c *Client) DeleteWebhook(ctx context.Context, id int64) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/webhooks/"+strconv.FormatInt(id, 10), nil, nil)
}

// Deliveries returns a webhook's latest deliveries, newest first, each
// with its attempts: at most limit (1 to 500; 0: the server's default).
func (c *Client) Deliveries(ctx context.Context, id int64, limit int) ([]Delivery, error) {
	path := "/api/v1/webhooks/" + strconv.FormatInt(id, 10) + "/deliveries"
	if limit != 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var out Deliveries
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out.Deliveries, err
}

// RetryDelivery sends a delivery of a webhook again now, with a new round
// of tries (a disabled webhook is enabled again), and returns it.
func (c *Client) RetryDelivery(ctx context.Context, id, delivery int64) (Delivery, error) {
	var d Delivery
	path := fmt.Sprintf("/api/v1/webhooks/%d/deliveries/%d/retry", id, delivery)
	return d, c.Do(ctx, http.MethodPost, path, nil, &d)
}

// Do sends a request with body as JSON (when not nil) and decodes a JSON
// answer into out (when not nil). An API error comes back as a
// *plane.Error with the server's code, message and field.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.Send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// Send sends a request and returns a successful response, whose body the
// caller closes.
func (c *Client) Send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	return c.send(ctx, method, path, body, nil)
}

// send is Send with extra request headers.
func (c *Client) send(ctx context.Context, method, path string, body any, header http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach controller: %w", err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		var e ErrorResponse
		if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e) != nil || e.Error.Message == "" {
			return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		return nil, &plane.Error{Code: e.Error.Code, Message: e.Error.Message, Field: e.Error.Field}
	}
	return resp, nil
}
