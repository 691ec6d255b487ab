package controller

import (
	"context"
	"maps"
	"strings"
	"sync"

	"plane"
)

// RegisterImage registers an image in a project under a short name.
func (c *Core) RegisterImage(ctx context.Context, actor plane.Actor, projectID int64, in plane.ImageInput) (*plane.Image, error) {
	img, err := plane.NewImage(projectID, in)
	if err != nil {
		return nil, err
	}
	if err := c.Store.CreateImage(ctx, img); err != nil {
		return nil, err
	}
	c.Record(ctx, actor, projectID, plane.ActionImageCreate, img.Name, img.Ref)
	return img, nil
}

// UpdateImage changes the settings in of a project's image; the activity
// log says which.
func (c *Core) UpdateImage(ctx context.Context, actor plane.Actor, projectID int64, name string, in plane.ImageInput) (*plane.Image, error) {
	old, err := c.Store.FindImage(ctx, projectID, name)
	if err != nil {
		return nil, err
	}
	img, err := c.Store.UpdateImage(ctx, projectID, old.Name, in)
	if err != nil {
		return nil, err
	}
	c.Record(ctx, actor, projectID, plane.ActionImageUpdate, img.Name, imageChanges(old, img))
	return img, nil
}

// DeleteImage removes a project's image; its running backends go on.
func (c *Core) DeleteImage(ctx context.Context, actor plane.Actor, projectID int64, name string) error {
	if err := c.Store.DeleteImage(ctx, projectID, name); err != nil {
		return err
	}
	c.Record(ctx, actor, projectID, plane.ActionImageDelete, name, "")
	return nil
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
		{"suspend_seconds", old.SuspendSeconds != img.SuspendSeconds},
		{"warm_pool", old.WarmPool != img.WarmPool},
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

// Pulled is one drone's answer to a pre-pull.
type Pulled struct {
	DroneID string
	Err     error // nil: the drone took it
}

// PrePull asks every ready drone to pull the image now, all at once, so
// that the first backends started from it do not wait for the download.
// It returns each drone's answer; none when no drone is ready.
func (c *Core) PrePull(ctx context.Context, img *plane.Image) ([]Pulled, error) {
	drones, err := c.Store.FindDrones(ctx)
	if err != nil {
		return nil, err
	}
	var out []Pulled
	for _, d := range drones {
		if d.Status == plane.DroneReady {
			out = append(out, Pulled{DroneID: d.ID})
		}
	}
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			if err := c.Dispatch.Pull(ctx, out[i].DroneID, img.Ref); err != nil {
				c.logger().Warn("pull image", "drone", out[i].DroneID, "ref", img.Ref, "err", err)
				out[i].Err = err
			}
		})
	}
	wg.Wait()
	return out, nil
}
