package plane

import (
	"context"
	"time"
)

// DroneStatus is a drone's health as the controller sees it.
type DroneStatus string

const (
	DroneReady    DroneStatus = "ready"    // heartbeat fresh, accepts backends
	DroneDraining DroneStatus = "draining" // heartbeat fresh, accepts no new backends
	// DroneUnreachable: silent for the unreachable limit. It takes no new
	// backends; its backends keep their status and their names, as the
	// drone may well serve them still (a network blip, a restart).
	DroneUnreachable DroneStatus = "unreachable"
	DroneLost        DroneStatus = "lost"    // silent for the lost limit: its backends are terminated
	DroneStopped     DroneStatus = "stopped" // said goodbye
)

// Valid reports whether s is a known drone status.
func (s DroneStatus) Valid() bool {
	switch s {
	case DroneReady, DroneDraining, DroneUnreachable, DroneLost, DroneStopped:
		return true
	}
	return false
}

// Drone is one machine's agent as last reported by its heartbeat.
type Drone struct {
	ID              string      `json:"id"`
	Address         string      `json:"address"` // IP that backend hostnames resolve to
	ProxyAddress    string      `json:"proxy_address"`
	Version         string      `json:"version"`
	ProtocolVersion int         `json:"protocol_version"`
	Status          DroneStatus `json:"status"`
	Draining        bool        `json:"draining"`
	Capacity        int         `json:"capacity"`
	Backends        int         `json:"backends"`
	CPUPercent      float64     `json:"cpu_percent"`
	MemoryBytes     uint64      `json:"memory_bytes"`
	Images          []string    `json:"images"`
	CertNotAfter    *time.Time  `json:"cert_not_after"` // the HTTPS certificate's expiry; nil: none yet
	CertError       string      `json:"cert_error"`     // the last failed certificate order, if any
	ProxyError      string      `json:"proxy_error"`    // why its proxy cannot accept connections; "": it can
	LastHeartbeat   time.Time   `json:"last_heartbeat"`
	CreatedAt       time.Time   `json:"created_at"`
}

// Heartbeat timing: drones beat every HeartbeatInterval; a drone whose last
// beat is older than DroneStaleAfter gets no new backends. One silent for
// the unreachable limit (DefaultDroneUnreachableAfter, a controller flag)
// is shown unreachable; only one silent for the lost limit
// (DefaultDroneLostAfter) is lost, with its backends: unreachable is not
// dead, and a drone back before then finds every backend as it was.
const (
	HeartbeatInterval            = 2 * time.Second
	DroneStaleAfter              = 3 * HeartbeatInterval
	DefaultDroneUnreachableAfter = 15 * time.Second
	DefaultDroneLostAfter        = 2 * time.Minute
)

// DroneService stores drones.
type DroneService interface {
	// UpsertDrone records a heartbeat: it creates or updates the drone.
	UpsertDrone(ctx context.Context, d *Drone) error
	FindDroneByID(ctx context.Context, id string) (*Drone, error)
	FindDrones(ctx context.Context) ([]*Drone, error)
	// SetDroneStatus marks a drone lost or stopped.
	SetDroneStatus(ctx context.Context, id string, status DroneStatus) error
	// SetDroneDraining records a drain the drone acknowledged, so that
	// placement and pages follow before its next heartbeat.
	SetDroneDraining(ctx context.Context, id string, draining bool) error
}
