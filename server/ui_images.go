package server

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/web"
)

func (s *Server) imageRoutes(g *echo.Group) {
	g.GET("/images", s.handleImagesPage)
	g.POST("/images", s.handleCreateImageForm)
	g.GET("/images/:name/edit", s.handleEditImagePage)
	g.POST("/images/:name", s.handleUpdateImageForm)
	g.POST("/images/:name/delete", s.handleDeleteImageForm)
	g.POST("/images/:name/pull", s.handlePullImage)
}

// imageFields are the inputs of the image forms.
var imageFields = []string{"name", "ref", "port", "pull_policy", "env", "public", "allow_bearer",
	"max_idle_seconds", "suspend_seconds", "lifetime_seconds", "cpu_millis", "memory_mb", "warm_pool"}

func imagesPath(c echo.Context) string { return web.ProjectPath(currentProject(c).ID) + "/images" }

func (s *Server) handleImagesPage(c echo.Context) error {
	return s.renderImages(c, http.StatusOK, newImageForm(), web.ImagesView{})
}

// newImageForm is the register form with the defaults filled in.
func newImageForm() web.Form {
	f := web.NewForm()
	f.Values["port"] = strconv.Itoa(plane.DefaultImagePort)
	f.Values["pull_policy"] = string(plane.PullIfNotPresent)
	return f
}

// renderImages shows the images page; v brings the outcome of a pull, if any.
func (s *Server) renderImages(c echo.Context, status int, f web.Form, v web.ImagesView) error {
	ctx := c.Request().Context()
	p := currentProject(c)
	imgs, err := s.Images.FindImages(ctx, p.ID)
	if err != nil {
		return err
	}
	drones, err := s.servingDrones(ctx)
	if err != nil {
		return err
	}
	v.Nav, v.Form = projectNav(c, "images"), f
	for _, d := range drones {
		v.Drones = append(v.Drones, d.ID)
	}
	for _, img := range imgs {
		row := web.ImageRow{Image: img, Pools: s.imagePools(img)}
		for _, d := range drones {
			row.Pulled = append(row.Pulled, web.DronePull{Drone: d.ID, Pulled: plane.HasImageRef(d.Images, img.Ref)})
		}
		v.Images = append(v.Images, row)
	}
	return render(c, status, web.Images(s.page(c, p.Name+" images", "projects"), v))
}

// imagePools is img's warm pool on each drone that reports it. A drone
// may still report the pool of an image whose warm_pool was just set to 0:
// that pool is on its way out and not shown.
func (s *Server) imagePools(img *plane.Image) []web.DronePool {
	if img.WarmPool == 0 {
		return nil
	}
	var out []web.DronePool
	for _, p := range s.core.ImagePools(img) {
		out = append(out, web.DronePool{Drone: p.Drone, Wanted: p.Size, Ready: p.Ready, Starting: p.Starting, Stale: p.Stale, Refill: p.Refill})
	}
	return out
}

// servingDrones are the drones that run backends: ready or draining.
func (s *Server) servingDrones(ctx context.Context) ([]*plane.Drone, error) {
	all, err := s.Drones.FindDrones(ctx)
	if err != nil {
		return nil, err
	}
	var out []*plane.Drone
	for _, d := range all {
		if d.Status == plane.DroneReady || d.Status == plane.DroneDraining {
			out = append(out, d)
		}
	}
	return out, nil
}

// imageInput reads an image form. Empty fields are absent on register
// (defaults); on edit, an empty limit or warm pool is none and the
// checkboxes and the environment are always set.
func imageInput(f web.Form, edit bool) (plane.ImageInput, error) {
	name, ref := strings.TrimSpace(f.Value("name")), strings.TrimSpace(f.Value("ref"))
	policy := plane.PullPolicy(f.Value("pull_policy"))
	public, bearer := f.Checked("public"), f.Checked("allow_bearer")
	in := plane.ImageInput{Name: &name, Ref: &ref, PullPolicy: &policy, Public: &public, AllowBearer: &bearer}
	env, err := parseEnv(f.Value("env"))
	if err != nil {
		return in, err
	}
	in.Env = &env
	if in.Port, err = optionalInt(f, "port"); err != nil {
		return in, err
	}
	// Like a limit: empty is the default (none) on register, none on edit.
	if in.WarmPool, err = optionalInt(f, "warm_pool"); err != nil {
		return in, err
	}
	if in.WarmPool == nil && edit {
		in.WarmPool = new(int)
	}
	return in, limitsInput(f, &in.LimitsInput, edit)
}

func (s *Server) handleCreateImageForm(c echo.Context) error {
	p := currentProject(c)
	f := formValues(c, imageFields...)
	in, err := imageInput(f, false)
	if err == nil {
		_, err = s.core.RegisterImage(c.Request().Context(), actorOf(c), p.ID, in)
	}
	if err != nil {
		if !formError(&f, err, imageFields...) {
			return err
		}
		return s.renderImages(c, http.StatusUnprocessableEntity, f, web.ImagesView{})
	}
	return redirect(c, imagesPath(c), "image-created")
}

func (s *Server) handleEditImagePage(c echo.Context) error {
	img, err := s.Images.FindImage(c.Request().Context(), currentProject(c).ID, c.Param("name"))
	if err != nil {
		return err
	}
	return s.renderImageEdit(c, http.StatusOK, img.Name, imageForm(img))
}

func (s *Server) renderImageEdit(c echo.Context, status int, name string, f web.Form) error {
	v := web.ImageEditView{Nav: projectNav(c, "images"), Name: name, Form: f}
	return render(c, status, web.ImageEdit(s.page(c, "Edit image "+name, "projects"), v))
}

// imageForm fills the edit form with an image's settings.
func imageForm(img *plane.Image) web.Form {
	f := web.NewForm()
	num := func(name string, n int) {
		if n != 0 {
			f.Values[name] = strconv.Itoa(n)
		}
	}
	check := func(name string, on bool) {
		if on {
			f.Values[name] = "on"
		}
	}
	f.Values["name"], f.Values["ref"], f.Values["pull_policy"] = img.Name, img.Ref, string(img.PullPolicy)
	num("port", img.Port)
	num("max_idle_seconds", img.MaxIdleSeconds)
	num("suspend_seconds", img.SuspendSeconds)
	num("lifetime_seconds", img.LifetimeSeconds)
	num("cpu_millis", img.CPUMillis)
	num("memory_mb", img.MemoryMB)
	num("warm_pool", img.WarmPool)
	check("public", img.Public)
	check("allow_bearer", img.AllowBearer)
	var env strings.Builder
	for _, k := range slices.Sorted(maps.Keys(img.Env)) {
		env.WriteString(k + "=" + img.Env[k] + "\n")
	}
	f.Values["env"] = env.String()
	return f
}

func (s *Server) handleUpdateImageForm(c echo.Context) error {
	ctx := c.Request().Context()
	p := currentProject(c)
	old, err := s.Images.FindImage(ctx, p.ID, c.Param("name"))
	if err != nil {
		return err
	}
	f := formValues(c, imageFields...)
	in, err := imageInput(f, true)
	if err == nil {
		_, err = s.core.UpdateImage(ctx, actorOf(c), p.ID, old.Name, in)
	}
	if err != nil {
		if !formError(&f, err, imageFields...) {
			return err
		}
		return s.renderImageEdit(c, http.StatusUnprocessableEntity, old.Name, f)
	}
	return redirect(c, imagesPath(c), "image-saved")
}

func (s *Server) handleDeleteImageForm(c echo.Context) error {
	p := currentProject(c)
	name := c.Param("name")
	if err := s.core.DeleteImage(c.Request().Context(), actorOf(c), p.ID, name); err != nil {
		return err
	}
	return redirect(c, imagesPath(c), "image-deleted")
}

// handlePullImage asks every ready drone to pull the image now, so that
// its first backends start without waiting for the download.
func (s *Server) handlePullImage(c echo.Context) error {
	ctx := c.Request().Context()
	img, err := s.Images.FindImage(ctx, currentProject(c).ID, c.Param("name"))
	if err != nil {
		return err
	}
	pulls, err := s.core.PrePull(ctx, img)
	if err != nil {
		return err
	}
	if len(pulls) == 0 {
		return s.renderImages(c, http.StatusServiceUnavailable, newImageForm(), web.ImagesView{PullError: "No drone is ready to pull " + img.Ref + "."})
	}
	results := make([]web.PullResult, len(pulls))
	failed := false
	for i, p := range pulls {
		results[i] = web.PullResult{Drone: p.DroneID}
		if p.Err != nil {
			results[i].Error, failed = plane.ErrorMessageOf(p.Err), true
		}
	}
	if failed {
		return s.renderImages(c, http.StatusServiceUnavailable, newImageForm(), web.ImagesView{Pulls: results})
	}
	return redirect(c, imagesPath(c), "image-pulling")
}
