package sip

import (
	"net/netip"
	"strings"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/siphdr"
)

// isLocalHost reports whether host names this switch: the domain or one of
// the addresses it listens on.
func (s *Server) isLocalHost(host string) bool {
	if strings.EqualFold(host, s.cfg.Domain) {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.localIPs[ip.Unmap()]
}

// isLocalURI reports whether u is addressed to this switch (host and, when
// given, port).
func (s *Server) isLocalURI(u gosip.Uri) bool {
	if !s.isLocalHost(u.Host) {
		return false
	}
	if u.Port == 0 || strings.EqualFold(u.Host, s.cfg.Domain) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range s.ifaces {
		if i.port == u.Port {
			return true
		}
	}
	return false
}

// popOwnRoutes removes the Route entries that name this switch from the top
// of the request (RFC 3261 §16.4; two when we double record-routed). It
// reports whether there were any, and whether one of them carries a valid
// signature of the request's dialog (see dialogParam).
func (s *Server) popOwnRoutes(req *gosip.Request) (popped, signed bool) {
	// sipgo's Route looks for a header to parse when it has none parsed,
	// allocating what it would parse into: with no Route at all (every
	// REGISTER and initial request from a phone) that was 1.3 % of a
	// registration's CPU.
	if siphdr.Count(req, "Route") == 0 {
		return false, false
	}
	for i := 0; i < 2; i++ {
		r := req.Route()
		if r == nil || !s.isLocalURI(r.Address) {
			break
		}
		if tok, ok := r.Address.UriParams.Get(dialogParam); ok && req.CallID() != nil && s.dialogSigned(req, tok) {
			signed = true
		}
		removeTopHeader(req, "Route")
		popped = true
	}
	return popped, signed
}

// removeTopHeader removes the first value of a header that may carry
// several (sipgo's RemoveHeader removes only the first).
func removeTopHeader(msg interface{ RemoveHeader(string) bool }, name string) {
	msg.RemoveHeader(name)
}

// isOwnAddress reports whether host:port is one of the switch's listeners.
func (s *Server) isOwnAddress(dest string) bool {
	ap, err := netip.ParseAddrPort(dest)
	if err != nil {
		return false
	}
	if !s.isLocalHost(ap.Addr().Unmap().String()) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range s.ifaces {
		if uint16(i.port) == ap.Port() {
			return true
		}
	}
	return false
}

// ifaceFor returns the interface to send over transport to dest (host:port,
// as in target.dest): one of that transport whose socket reaches dest's
// address family, a listener of that very family first, then one bound to
// :: (which serves both); its adv is the address to advertise to dest (see
// iface.forFamily). A dest that is a host name takes the first listener of
// the transport. WSS without a secure WebSocket listener goes out as the WS
// one is advertised.
func (s *Server) ifaceFor(transport, dest string) (iface, bool) {
	t := strings.ToLower(transport)
	dst := destAddr(dest)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := pickIface(s.ifaces, t, dst); ok {
		return i, true
	}
	if t == "wss" {
		return pickIface(s.ifaces, "ws", dst)
	}
	return iface{}, false
}
