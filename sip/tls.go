package sip

import (
	"crypto/tls"
	"net"
)

// tlsListener serves TLS on the connections fl admits. The TLS layer goes
// over each admitted connection inside fl, so that the idle sweep closes a
// TLS connection as TLS (close_notify, then the TCP under it) rather than
// pulling the TCP connection from under sipgo's TLS reader.
func tlsListener(fl *flowListener, cfg *tls.Config) net.Listener {
	fl.wrap = func(c net.Conn) net.Conn { return tls.Server(c, cfg) }
	return fl
}
