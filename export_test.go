package hotkernel

// SetFault installs a fault hook for tests: f is called as each reload
// phase starts, and a non-nil error fails that phase.
func (m *Manager) SetFault(f func(kernel string, phase State) error) { m.fault = f }
