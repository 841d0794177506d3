package sip

import (
	"context"
	"fmt"
	"strings"

	gosip "github.com/emiago/sipgo/sip"
)

// Originate sends req, a request the switch makes on its own behalf (a
// trunk's outbound REGISTER), to dest (host:port) over transport from the
// switch's listener for it — so that the peer sees, and answers and calls
// back to, the address the switch listens on — with a Via of ours. It
// returns the client transaction, whose responses the caller reads and
// which it terminates.
func (s *Server) Originate(ctx context.Context, req *gosip.Request, transport, dest string) (gosip.ClientTransaction, error) {
	out, ok := s.ifaceFor(transport, dest)
	if !ok {
		return nil, fmt.Errorf("%w: no %s listener for %s", errNoTarget, transport, dest)
	}
	for req.RemoveHeader("Via") {
	}
	req.PrependHeader(out.via(gosip.GenerateBranchN(16)))
	req.SetTransport(strings.ToUpper(out.transport))
	req.SetDestination(dest)
	if out.transport == "udp" {
		req.Laddr = out.laddr
	}
	return s.transactionRequest(ctx, req)
}

// ContactURI returns the URI at which the switch is reached over
// transport by a peer at dest: the advertised address of that listener.
func (s *Server) ContactURI(transport, dest string) (gosip.Uri, bool) {
	i, ok := s.ifaceFor(transport, dest)
	if !ok {
		return gosip.Uri{}, false
	}
	u := gosip.Uri{Scheme: "sip", Host: i.adv, Port: i.port, UriParams: gosip.NewParams()}
	if i.transport != "udp" {
		u.UriParams.Add("transport", i.transport)
	}
	return u, true
}
