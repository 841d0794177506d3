package sip

import (
	"net"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/pion/stun/v4"
)

// STUN keep-alives on the SIP UDP port (RFC 5626 §4.4.2 and §8.4): a UA
// with an outbound flow over UDP sends STUN Binding requests to the very
// address and port it sends SIP to, and learns from the answer's
// XOR-MAPPED-ADDRESS whether its NAT mapping changed. Such requests are
// told from SIP by their first bytes (RFC 7983 §7: a STUN message starts
// with two zero bits and carries the magic cookie at bytes 4-7, a SIP
// message starts with a letter), in the one place every UDP datagram
// passes before sipgo parses it: the transport layer's read filter
// (Server.readFilter), which demultiplexes them and answers here, from the
// listener socket they arrived on. Only Binding requests are answered, with
// no authentication (§8.4 forbids requiring it); everything else that looks
// like STUN is dropped.

// isSTUN reports whether a datagram is a STUN message rather than SIP.
func isSTUN(data []byte) bool {
	return len(data) >= 20 && data[0] < 0x02 && stun.IsMessage(data)
}

// answerSTUN answers a STUN Binding request that arrived on the UDP
// listener at local from remote.
func (s *Server) answerSTUN(local, remote net.Addr, data []byte) {
	req := &stun.Message{Raw: append([]byte(nil), data...)}
	if err := req.Decode(); err != nil || req.Type != stun.BindingRequest {
		return
	}
	ra := udpAddrOf(remote)
	if ra == nil {
		return
	}
	res, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: ra.IP, Port: ra.Port}, stun.Fingerprint)
	if err != nil {
		return
	}
	c, err := s.ua.TransportLayer().GetConnection("udp", local.String())
	if err != nil {
		return
	}
	defer release(c)
	uc, ok := c.(*gosip.UDPConnection)
	if !ok {
		return
	}
	if _, err := uc.WriteTo(res.Raw, remote); err == nil {
		s.keeper.stun.Add(1)
	}
}
