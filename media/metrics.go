package media

import "github.com/prometheus/client_golang/prometheus"

// counters are the per-stream figures summed into the relay's metrics.
type counters struct {
	relayed, relayedBytes uint64
	dropped               [numDropReasons]uint64
}

func (c *counters) add(o counters) {
	c.relayed += o.relayed
	c.relayedBytes += o.relayedBytes
	for i := range c.dropped {
		c.dropped[i] += o.dropped[i]
	}
}

// countersLocked sums both legs; the caller holds s.mu.
func (s *Stream) countersLocked() counters {
	var c counters
	for i := range s.legs {
		l := &s.legs[i]
		c.relayed += l.relayed
		c.relayedBytes += l.relayedBytes
		for j := range c.dropped {
			c.dropped[j] += l.dropped[j]
		}
	}
	return c
}

// collector turns the relay's counters into Prometheus metrics at scrape
// time, so that the packet path only bumps plain integers under the lock it
// already holds.
type collector struct {
	r *Relay

	relayed, relayedBytes, dropped *prometheus.Desc
	streams, streamsTotal, pairs   *prometheus.Desc
	exhausted, timeouts            *prometheus.Desc
	webrtcLegs, webrtcFailures     *prometheus.Desc
}

func newCollector(r *Relay) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("switchboard_media_"+name, help, labels, nil)
	}
	return &collector{
		r:            r,
		relayed:      d("packets_relayed_total", "RTP and RTCP packets relayed from one party to the other."),
		relayedBytes: d("bytes_relayed_total", "UDP payload bytes relayed from one party to the other."),
		dropped:      d("packets_dropped_total", "Datagrams received on media ports and not relayed, by reason.", "reason"),
		streams:      d("streams", "Media streams being relayed now."),
		streamsTotal: d("streams_total", "Media streams created."),
		pairs:        d("port_pairs", "RTP/RTCP port pairs, by state.", "state"),
		exhausted:    d("port_exhausted_total", "Streams refused because no port pair was free."),
		timeouts:     d("timeouts_total", "Streams whose parties both stopped sending for the configured timeout."),
		webrtcLegs:   d("webrtc_legs", "Sides of live streams that are WebRTC legs (ICE and DTLS-SRTP terminated by the relay)."),
		webrtcFailures: d("webrtc_failures_total",
			"WebRTC legs that failed: no ICE check or DTLS handshake within the ICE timeout, or a failed handshake."),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.relayed, c.relayedBytes, c.dropped, c.streams,
		c.streamsTotal, c.pairs, c.exhausted, c.timeouts, c.webrtcLegs, c.webrtcFailures} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	r := c.r
	r.mu.Lock()
	total := r.done
	live := make([]*Stream, 0, len(r.streams))
	for s := range r.streams {
		live = append(live, s)
	}
	r.mu.Unlock()
	legs := 0
	for _, s := range live {
		s.mu.Lock()
		total.add(s.countersLocked())
		for i := range s.legs {
			if s.legs[i].rtc != nil {
				legs++
			}
		}
		s.mu.Unlock()
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter(c.relayed, total.relayed)
	counter(c.relayedBytes, total.relayedBytes)
	for i, n := range total.dropped {
		counter(c.dropped, n, dropReason(i).String())
	}
	gauge(c.streams, len(live))
	counter(c.streamsTotal, r.streamsTotal.Load())
	free, quar, used := r.pool.counts()
	gauge(c.pairs, free, "free")
	gauge(c.pairs, quar, "quarantined")
	gauge(c.pairs, used, "used")
	counter(c.exhausted, r.exhausted.Load())
	counter(c.timeouts, r.timeouts.Load())
	gauge(c.webrtcLegs, legs)
	counter(c.webrtcFailures, r.rtcFailures.Load())
}
