package turn

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus collectors, registered on the
// Registerer given to New (nothing is exported when it is nil).
type metrics struct {
	allocations       prometheus.Counter
	allocationsActive prometheus.Gauge
	permissions       prometheus.Counter
	permissionsDenied prometheus.Counter
	channels          prometheus.Counter
	authFailures      prometheus.Counter
	quotaRejections   prometheus.Counter
	droppedMalformed  prometheus.Counter
	droppedRateLimit  prometheus.Counter
	bytesToPeer       prometheus.Counter
	bytesFromPeer     prometheus.Counter
	packetsToPeer     prometheus.Counter
	packetsFromPeer   prometheus.Counter

	reg        prometheus.Registerer
	collectors []prometheus.Collector
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "turn", Name: name, Help: help,
		})
	}
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "turn", Name: "dropped_total",
		Help: "Datagrams dropped before pion/turn saw them, by reason (malformed, rate_limited).",
	}, []string{"reason"})
	relayedBytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "turn", Name: "relayed_bytes_total",
		Help: "Payload bytes sent from relay sockets to peers (to_peer) and received on relay sockets from peers (from_peer, before the permission check).",
	}, []string{"direction"})
	relayedPackets := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "turn", Name: "relayed_packets_total",
		Help: "Datagrams sent from relay sockets to peers (to_peer) and received on relay sockets from peers (from_peer).",
	}, []string{"direction"})
	m := &metrics{
		allocations: counter("allocations_total", "Allocations created."),
		allocationsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "switchboard", Subsystem: "turn", Name: "allocations_active",
			Help: "Allocations currently held.",
		}),
		permissions:       counter("permissions_total", "Permissions installed (CreatePermission and ChannelBind)."),
		permissionsDenied: counter("permissions_denied_total", "Peer addresses refused by the peer policy."),
		channels:          counter("channels_total", "Channel bindings created."),
		authFailures:      counter("auth_failures_total", "Requests whose credentials were refused."),
		quotaRejections:   counter("quota_rejections_total", "Allocate requests refused with 486 Allocation Quota Reached."),
		droppedMalformed:  dropped.WithLabelValues("malformed"),
		droppedRateLimit:  dropped.WithLabelValues("rate_limited"),
		bytesToPeer:       relayedBytes.WithLabelValues("to_peer"),
		bytesFromPeer:     relayedBytes.WithLabelValues("from_peer"),
		packetsToPeer:     relayedPackets.WithLabelValues("to_peer"),
		packetsFromPeer:   relayedPackets.WithLabelValues("from_peer"),
	}
	if reg == nil {
		return m, nil
	}
	collectors := []prometheus.Collector{
		m.allocations, m.allocationsActive, m.permissions, m.permissionsDenied, m.channels,
		m.authFailures, m.quotaRejections, dropped, relayedBytes, relayedPackets,
	}
	for i, c := range collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range collectors[:i] {
				reg.Unregister(done)
			}

			return nil, fmt.Errorf("register turn metrics: %w", err)
		}
	}
	m.reg, m.collectors = reg, collectors

	return m, nil
}

// unregister removes the collectors from the Registerer, so that a new Server
// can register on it after Close.
func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
