// Package ops is what an operator asks of nicmux's state: nicmux gc, which
// releases the containers whose namespace is gone, and nicmux forget, the
// last resort for a record nothing releases, with their reports. They act
// through mux's Op, as verbs do (the log, the container locks, the one
// teardown), so that they are safe beside a running runtime; nicmux show
// only reads (package inspect).
package ops

// Request is what an operator's command runs with: nicmux's entry as the
// runtime hands it over (the conflist's name and cniVersion in it) and the
// folders that hold the plugin binaries.
type Request struct {
	Entry   []byte
	CNIPath []string
}
