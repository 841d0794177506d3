package sip

import (
	"crypto/tls"
	"net"
)

func tlsListener(l net.Listener, cfg *tls.Config) net.Listener { return tls.NewListener(l, cfg) }
