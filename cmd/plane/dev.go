package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"

	"plane"
)

// imageFlags collects repeated --image name=ref flags.
type imageFlags []string

func (f *imageFlags) String() string     { return strings.Join(*f, ",") }
func (f *imageFlags) Set(v string) error { *f = append(*f, v); return nil }

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cc ControllerConfig
	var dc DroneConfig
	fs := newFlagSet("dev", "Run a controller, an embedded NATS server and one drone in one process, with local Docker.", stderr)
	fs.StringVar(&cc.DataDir, "data", "./.plane", "data folder for the controller, the drone and NATS")
	fs.StringVar(&cc.HTTPAddr, "http", "127.0.0.1:8080", "address of the API and dashboard")
	fs.StringVar(&cc.NATSListen, "nats-listen", "127.0.0.1:0", "where the embedded NATS server listens (port 0: any free port)")
	fs.StringVar(&dc.ProxyAddr, "proxy", "127.0.0.1:9090", "address of the drone's HTTP proxy")
	fs.StringVar(&cc.Domain, "domain", "plane.localhost", "backends are at http://<id>.<domain>:<proxy port>/")
	domain := &cc.Domain
	dnsFlags(fs, &cc, "127.0.0.1:8053")
	trustedProxiesFlag(fs, &cc)
	faultFlags(fs, &cc)
	webhookFlags(fs, &cc)
	fs.DurationVar(&dc.StartTimeout, "start-timeout", 0, "how long a started backend may take to answer HTTP (default 30s)")
	fs.StringVar(&dc.ID, "id", "dev", "the drone's id; its containers carry it as a label")
	var images imageFlags
	fs.Var(&images, "image", "register image NAME=REF in project default when absent (repeatable)")
	log, err := parseWithLogger(fs, args, stderr)
	if err != nil {
		return err
	}
	_, proxyPort, err := net.SplitHostPort(dc.ProxyAddr)
	if err != nil {
		return usageError{fmt.Sprintf("--proxy %q: %v", dc.ProxyAddr, err)}
	}
	cc.BackendURL = "http://{id}." + *domain + ":" + proxyPort + "/"
	dc.Domain = *domain
	cc.Logger = log

	// Docker first: without it nothing else is worth starting, and the
	// error says in one line how to fix it.
	dc.DataDir = filepath.Join(cc.DataDir, "drone")
	dc.IP = "127.0.0.1"
	dc.Logger = log
	if err := checkDocker(ctx); err != nil {
		return err
	}

	c, err := OpenController(ctx, cc)
	if err != nil {
		return err
	}
	defer c.Close()
	proj, err := c.EnsureProject(ctx, plane.DefaultProject)
	if err != nil {
		return fmt.Errorf("create project %s: %w", plane.DefaultProject, err)
	}
	for _, spec := range images {
		if err := ensureImage(ctx, c, proj.ID, spec); err != nil {
			return err
		}
	}

	dc.NATSURL = c.NATS.ClientURL()
	d, err := OpenDrone(ctx, dc)
	if err != nil {
		return err
	}
	defer d.Close()

	printWelcome(stdout, c.Server.Addr(), cc.DataDir, *domain, proxyPort, images)
	select {
	case <-ctx.Done():
		log.Info("shutting down; backends keep running until the next start")
		return nil
	case err := <-d.Done():
		d.done <- err
		return err
	}
}

// ensureImage registers NAME=REF in the project unless NAME exists.
func ensureImage(ctx context.Context, c *Controller, projectID int64, spec string) error {
	name, ref, ok := strings.Cut(spec, "=")
	if !ok {
		return usageError{fmt.Sprintf("--image %q: want NAME=REF", spec)}
	}
	if _, err := c.DB.FindImage(ctx, projectID, name); err == nil {
		return nil
	} else if plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		return err
	}
	public := false
	img, err := plane.NewImage(projectID, plane.ImageInput{Name: &name, Ref: &ref, Public: &public})
	if err != nil {
		return fmt.Errorf("--image %q: %w", spec, err)
	}
	return c.DB.CreateImage(ctx, img)
}

func printWelcome(w io.Writer, httpAddr, dataDir, domain, proxyPort string, images imageFlags) {
	base := "http://" + httpAddr
	img := "demo"
	if len(images) > 0 {
		img, _, _ = strings.Cut(images[0], "=")
	}
	fmt.Fprintf(w, `
Plane dev is running (controller, embedded NATS, one drone, local Docker).

  Dashboard: %[1]s/   (sign up: the first account is this Plane's admin)
  API:       %[1]s/api/v1   (OpenAPI: %[1]s/api/v1/openapi.json)
  Health:    %[1]s/healthz, %[1]s/readyz, %[1]s/metrics
  Backends:  http://<backend-id>.%[2]s:%[3]s/

Get an API token for project "default":
  TOKEN=$(bin/plane admin token create --data %[4]s --project default --name me)
Spawn a backend of image %[5]q and wait until it is ready:
  curl -s -H "Authorization: Bearer $TOKEN" -d '{"image":"%[5]s","wait":true}' %[1]s/api/v1/backends

Stop with Ctrl-C (backends keep running and are adopted at the next start).
`, base, domain, proxyPort, dataDir, img)
}

var _ flag.Value = (*imageFlags)(nil)
