package main

import (
	"flag"

	"plane"
)

// faultFlags adds the controller's settings for faults: the limits of a
// drone's silence (unreachable is not dead) and the copies JetStream keeps.
func faultFlags(fs *flag.FlagSet, cfg *ControllerConfig) {
	fs.DurationVar(&cfg.DroneUnreachableAfter, "drone-unreachable-after", plane.DefaultDroneUnreachableAfter,
		"how long a drone may be silent before it takes no new backends; its backends keep their status and names")
	fs.DurationVar(&cfg.DroneLostAfter, "drone-lost-after", plane.DefaultDroneLostAfter,
		"how long a drone may be silent before its backends are terminated as lost and their keys freed")
	fs.IntVar(&cfg.NATSReplicas, "nats-replicas", 0,
		"copies JetStream keeps of each stream and bucket (0: the number of NATS servers known, at most 3); never lowered")
}
