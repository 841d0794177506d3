package sip

import (
	"net/netip"
	"strconv"
	"strings"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/switchboard/switchboard/internal/natdetect"
)

// addAlias appends ;alias=ip~port~transport to the Contact URI of a
// dialog-forming message when its sender must be reached where the message
// came from rather than at that Contact (Kamailio's add_contact_alias):
// it came over a connection, or it shows NAT by the configured evidence
// (Config.NAT.Detect). via is the sender's own top Via (nil for a
// response, whose Vias are the requester's).
func (s *Server) addAlias(msg interface{ Contact() *gosip.ContactHeader }, via *gosip.ViaHeader, source, transport string) {
	c := msg.Contact()
	if c == nil || c.Address.Wildcard {
		return
	}
	src, err := netip.ParseAddrPort(source)
	if err != nil {
		return
	}
	if !connectionBound(transport) {
		if nat, _ := s.cfg.NAT.Detect.Behind(natdetect.Message{
			Contact: c.Address, HasContact: true, Via: via, Source: src, Transport: transport,
		}); !nat {
			return
		}
	}
	if c.Address.UriParams == nil {
		c.Address.UriParams = gosip.NewParams()
	}
	c.Address.UriParams.Add(aliasParam, src.Addr().Unmap().String()+"~"+strconv.Itoa(int(src.Port()))+"~"+strings.ToLower(transport))
}

// reachedElsewhere reports whether a UA whose message came from src over
// transport with Contact u must be reached there rather than at its
// Contact: over its connection, or when the Contact shows NAT by the
// default evidence (natdetect.Default, without the Via test).
func reachedElsewhere(u gosip.Uri, src netip.AddrPort, transport string) bool {
	if connectionBound(transport) {
		return true
	}
	nat, _ := natdetect.Default.Behind(natdetect.Message{Contact: u, HasContact: true, Source: src, Transport: transport})
	return nat
}

// connectionBound reports whether transport is connection-oriented: a UA
// on it is reached only over the connection it came on (RFC 5626 flows;
// behind NAT nothing else gets through).
func connectionBound(transport string) bool {
	switch strings.ToUpper(transport) {
	case "TCP", "TLS", "WS", "WSS":
		return true
	}
	return false
}
