package controller

import (
	"context"
	"sync"

	"plane"
)

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
