package main

import (
	"net/http"
	"net/netip"
)

// metricsAccess guards /metrics as http.metrics says: "open" serves
// everyone, "loopback" only clients connecting from 127.0.0.0/8 or ::1
// (others get 403), "off" answers 404. The metrics tell a stranger how busy
// the switch is and how many phones it has, so loopback is the default; a
// Prometheus elsewhere scrapes through an SSH tunnel or a reverse proxy on
// the host (which then decides who may see them).
func metricsAccess(mode string, h http.Handler) http.Handler {
	switch mode {
	case metricsOpen:
		return h
	case metricsOff:
		return http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !ap.Addr().Unmap().IsLoopback() {
			http.Error(w, "forbidden: /metrics is served to loopback clients only (http.metrics)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
