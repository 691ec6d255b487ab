// Package plane holds the shared vocabulary of Plane: the domain types
// (backends, images, projects, drones, tokens), their validation, the error
// codes, and the NATS wire contract between the controller and the drones.
//
// It imports nothing of the repository: the controller (package server and
// its subpackages) and the drones (package drone and its subpackages) meet
// only here.
package plane
