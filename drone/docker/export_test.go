package docker

import "github.com/moby/moby/client"

// EngineClient lets the external tests (package docker_test) check what the
// daemon holds behind the runtime's back.
func EngineClient(r *Runtime) *client.Client { return r.client }
