package controller

import "time"

// SetGhostTimes shortens ReconcileConnections' waits for a test, and puts
// them back when it ends.
func SetGhostTimes(after, every time.Duration) (restore func()) {
	oldAfter, oldEvery := ghostAfter, ghostCheckEvery
	ghostAfter, ghostCheckEvery = after, every
	return func() { ghostAfter, ghostCheckEvery = oldAfter, oldEvery }
}
