package sip

import (
	"context"
	"errors"
	"fmt"

	gosip "github.com/emiago/sipgo/sip"
)

// forwardInDialog loose-routes a request inside a dialog we record-routed.
// A request is in such a dialog only when the Route entry of ours it carried
// signs its Call-ID and tags (dialogParam): a To tag and our address in a
// Route are easy to forge, and forwarding on them alone would relay anything
// for anyone.
func (s *Server) forwardInDialog(ctx context.Context, req *gosip.Request, tx gosip.ServerTransaction, poppedUs, signed bool) error {
	if err := s.inOurDialog(req, poppedUs, signed); err != nil {
		return err
	}
	if req.Method == gosip.BYE {
		s.calls.bye(req)
	} else {
		s.rewriteBody(req, req.CallID().Value(), s.isFromCaller(req), req.Source())
	}
	_, err := s.proxy(ctx, req, tx, []target{dialogTarget(req)}, false, nil)
	return err
}

// inOurDialog refuses an in-dialog request that is not in a dialog we
// record-routed: poppedUs and signed are popOwnRoutes' results.
func (s *Server) inOurDialog(req *gosip.Request, poppedUs, signed bool) error {
	switch {
	case !poppedUs && s.isLocalURI(req.Recipient):
		return status(481, "Call/Transaction Does Not Exist", nil)
	case !poppedUs:
		return status(404, "Not Found", errors.New("in-dialog request not routed through us"))
	case !signed:
		return status(403, "Forbidden", errors.New("in-dialog request for a dialog the switch did not record-route"))
	}
	return nil
}

// forwardAck sends an ACK for a 2xx on statelessly (RFC 3261 §16.11); ACKs
// for our own non-2xx responses are absorbed by sipgo's transaction.
func (s *Server) forwardAck(req *gosip.Request, signed bool) error {
	if !signed {
		// Only ACKs inside dialogs we record-routed (and signed) are
		// relayed; anything else would make the switch an open relay.
		return errors.New("ACK not in a dialog the switch record-routed")
	}
	return s.forwardStateless(req)
}

// forwardStateless sends req, an ACK or a BYE inside a dialog we
// record-routed, on along its route set statelessly (RFC 3261 §16.11): its
// branch is the same for a retransmission; an SDP in an ACK is rewritten
// for the relay.
func (s *Server) forwardStateless(req *gosip.Request) error {
	fwd, err := s.prepare(req, dialogTarget(req), false, true)
	if err != nil {
		return err
	}
	if req.IsAck() && len(req.Body()) > 0 {
		s.rewriteBody(fwd, req.CallID().Value(), s.isFromCaller(req), req.Source())
	}
	if s.isClosed() {
		return errClosed
	}
	if err := s.client.WriteRequest(fwd, noBuild); err != nil {
		return fmt.Errorf("%w: %w", errNoTarget, err)
	}
	return nil
}

// isFromCaller reports whether an in-dialog request comes from the party
// that placed the call.
func (s *Server) isFromCaller(req *gosip.Request) bool {
	tag, _ := req.From().Params.Get("tag")
	return s.calls.fromCaller(req.CallID().Value(), tag)
}
