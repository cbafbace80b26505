package httpserver

import "time"

// SetReadyTimeout shortens /readyz's deadline so tests need not wait 2 s.
func SetReadyTimeout(h *Health, d time.Duration) { h.timeout = d }
