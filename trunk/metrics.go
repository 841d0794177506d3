package trunk

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the trunks' Prometheus metrics.
type metrics struct {
	registered   *prometheus.GaugeVec
	expires      *prometheus.GaugeVec
	regFailures  *prometheus.CounterVec
	calls        *prometheus.GaugeVec
	callsTotal   *prometheus.CounterVec
	limitRefusal *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, p *plan) (*metrics, error) {
	m := &metrics{
		registered: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "switchboard_trunk_registered",
			Help: "1 while the trunk's outbound registration is in force, else 0."}, []string{"trunk"}),
		expires: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "switchboard_trunk_registration_expires_timestamp_seconds",
			Help: "When the trunk's registration expires (Unix time; 0 when not registered)."}, []string{"trunk"}),
		regFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_trunk_registration_failures_total",
			Help: "Outbound registrations that failed (timeout, refusal), each retried with backoff."}, []string{"trunk"}),
		calls: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "switchboard_trunk_calls",
			Help: "Calls in progress over the trunk, both ways (max_calls counts these)."}, []string{"trunk"}),
		callsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_trunk_calls_total",
			Help: "Calls tried over the trunk (direction out) or received from it (in)."}, []string{"trunk", "direction"}),
		limitRefusal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_trunk_limit_refusals_total",
			Help: "Calls refused by a limit: blocked, class, calls_per_user, external_calls_per_hour, max_calls, no_route."}, []string{"limit"}),
	}
	for _, t := range p.trunks {
		m.registered.WithLabelValues(t.cfg.Name)
		m.calls.WithLabelValues(t.cfg.Name)
	}
	for _, l := range []string{limitBlocked, limitClass, limitPerUser, limitPerHour, limitMaxCalls, limitNoRoute} {
		m.limitRefusal.WithLabelValues(l)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.registered, m.expires, m.regFailures, m.calls, m.callsTotal, m.limitRefusal} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("trunk metrics: %w", err)
		}
	}
	return m, nil
}
