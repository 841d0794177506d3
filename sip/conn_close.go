package sip

import "time"

// closeFlows works around the reference counting of sipgo v1.7.2's stream
// connections (docs/upstream/sipgo-tcp-ref.md). Its transport layer's Close
// closes every pooled connection "hard", setting its count to zero, and the
// connection's read loop then gives back its own reference and takes the
// count to -1: "TCP ref went negative" (or "WS ref ...") for every TCP, TLS
// and WebSocket connection open at shutdown. sipgo's order is right when
// the peer hangs up: the read loop ends first, releases its reference and
// closes the connection (TLS with its close_notify). So before the user
// agent is closed, the transactions are terminated (releasing theirs), the
// reading side of every accepted connection is shut, as if its peer had
// hung up, and each read loop gets up to timeout to close its connection.
func (s *Server) closeFlows(timeout time.Duration) {
	s.ua.TransactionLayer().Close()
	s.conns.mu.RLock()
	flows := make([]*flowConn, 0, len(s.conns.conns))
	for fc := range s.conns.conns {
		flows = append(flows, fc)
	}
	s.conns.mu.RUnlock()
	for _, fc := range flows {
		if cr, ok := fc.Conn.(interface{ CloseRead() error }); !ok || cr.CloseRead() != nil {
			_ = fc.Close()
		}
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, fc := range flows {
		select {
		case <-fc.closed:
		case <-deadline.C:
			return
		}
	}
}
