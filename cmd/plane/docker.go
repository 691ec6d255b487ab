package main

import (
	"context"

	"plane/drone/docker"
)

// checkDocker fails with docker.New's one-line explanation when no Docker
// daemon answers.
func checkDocker(ctx context.Context) error {
	rt, err := docker.New(ctx)
	if err != nil {
		return err
	}
	return rt.Close()
}
