package docker

import (
	"context"
	"fmt"
	"slices"

	"github.com/moby/moby/client"

	"plane"
)

// EnsureImage makes sure ref is present locally, pulling it as policy says:
// PullNever fails when it is absent, PullIfNotPresent pulls only when it is
// absent, PullAlways pulls every time. Errors are *plane.Error values whose
// message names the image, so that they can be shown to users as they are.
func (r *Runtime) EnsureImage(ctx context.Context, ref string, policy plane.PullPolicy) error {
	switch policy {
	case plane.PullNever, plane.PullIfNotPresent:
		_, err := r.client.ImageInspect(ctx, ref)
		if err == nil {
			return nil
		}
		if !IsNotFound(err) {
			return plane.Errorf(plane.EUNAVAILABLE, "check image %q: %v", ref, err)
		}
		if policy == plane.PullNever {
			return plane.Errorf(plane.ENOTFOUND, "image %q is not present and pull policy is never", ref)
		}
	case plane.PullAlways:
	default:
		return plane.Errorf(plane.EINVALID, "image %q: unknown pull policy %q", ref, policy)
	}
	return r.pull(ctx, ref)
}

func (r *Runtime) pull(ctx context.Context, ref string) error {
	resp, err := r.client.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err == nil {
		// The daemon reports pull failures inside the progress stream.
		err = resp.Wait(ctx)
		resp.Close()
	}
	if err != nil {
		return plane.Errorf(plane.EUNAVAILABLE, "pull image %q: %v", ref, err)
	}
	return nil
}

// Images returns the repo:tag references of the images present locally, sorted.
func (r *Runtime) Images(ctx context.Context) ([]string, error) {
	res, err := r.client.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	refs := []string{}
	for _, img := range res.Items {
		for _, tag := range img.RepoTags {
			if tag != "" && tag != "<none>:<none>" {
				refs = append(refs, tag)
			}
		}
	}
	slices.Sort(refs)
	return slices.Compact(refs), nil
}
