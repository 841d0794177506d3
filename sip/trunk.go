package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	gosip "github.com/emiago/sipgo/sip"
)

// Router connects calls with the telephone network over SIP trunks: it
// names the trunk a request comes from, the local users a trunk's call
// rings, and the trunks a local user's call to a number goes out on.
// *trunk.Trunks satisfies it; Config.Router nil means no trunks. Its
// methods are called from request goroutines and must be safe for
// concurrent use; none of them may call back into the Server.
type Router interface {
	// Carrier returns the name of the trunk whose addresses src is (its
	// inbound_from networks, or the flow of its outbound registration), or
	// "" for any other source. A trunk's requests are admitted without
	// digest authentication and are never strangers.
	Carrier(src netip.AddrPort, transport string) string
	// Inbound maps an out-of-dialog request from trunk to the local users
	// it rings. An error carries the status to answer with (404 for a
	// number that is not one of ours, 503 when the trunk is at max_calls).
	Inbound(trunk string, req *gosip.Request) (*InboundCall, error)
	// Outbound decides on an out-of-dialog INVITE of the local user to a
	// Request-URI that is not a local user (local tells whether its host
	// is this switch). It returns nil, nil when the Request-URI is not a
	// telephone number it handles (the proxy goes on as without trunks), an
	// error carrying the status when the call is refused (403 with a
	// Warning naming the class or limit, 404 without a route), or the
	// trunks to try in order.
	Outbound(ctx context.Context, user string, req *gosip.Request, local bool) (*OutboundCall, error)
}

// InboundCall is a trunk's call to one of our numbers.
type InboundCall struct {
	Trunk   string
	Dialled string   // the number as the trunk sent it
	Number  string   // normalised (E.164)
	Users   []string // the local users it rings, all at once
	// Release is called once when the call has ended (or was refused
	// after all); it frees what the call held of the trunk's limits.
	Release func()
}

// OutboundCall is a local user's call to a number, as routed.
type OutboundCall struct {
	Dialled string // the Request-URI's number as dialled
	Number  string // normalised (E.164)
	Route   string // the route that matched (its match expression)
	// Legs are the trunks to try, in order: on 408, 5xx or no response
	// within a leg's Timeout the next is tried (serial forking, RFC 3261
	// §16.6 with a new branch each).
	Legs []TrunkLeg
	// Release is called once when the call has ended; it frees what the
	// call held of the caller's limits.
	Release func()
}

// TrunkLeg is one trunk an outbound call may go out on.
type TrunkLeg struct {
	Trunk     string
	URI       gosip.Uri // the Request-URI to send (the number at the trunk)
	Dest      string    // host:port to send to
	Transport string    // UDP, TCP, TLS
	// Identity is presented as the caller in From (tag and display name
	// kept) and in P-Asserted-Identity (RFC 3325).
	Identity gosip.Uri
	// Username and Password answer the trunk's 401/407 challenges; empty:
	// a challenge is relayed to the caller as it is.
	Username, Password string
	// Timeout is how long the trunk has to send any response before the
	// next trunk is tried.
	Timeout time.Duration
	// Acquire takes one of the trunk's call slots (max_calls) before the
	// leg is tried; ok false skips the trunk. release frees the slot: at
	// once when the leg fails, at the call's end when it answered. Nil: no
	// limit.
	Acquire func() (release func(), ok bool)
}

// TrunkRecorder is implemented by a CallRecorder that also records the
// trunk side of calls (*cdr.Store does): which trunk carried the call, the
// number as dialled and normalised, and the route that matched ("inbound"
// for a trunk's call to us). It may be called again for the same call when
// the call fails over to another trunk.
type TrunkRecorder interface {
	Routed(callID, trunk, dialled, number, route string)
}

// errUnknownUser marks the 404 for a local Request-URI that names no user:
// where a Router may take the call to a number instead.
var errUnknownUser = errors.New("no such user")

// carrierOf returns the trunk a request comes from, or "".
func (s *Server) carrierOf(req *gosip.Request, src netip.AddrPort) string {
	return s.carrierAt(src, req.Transport())
}

// carrierAt is carrierOf for a request over transport from src.
func (s *Server) carrierAt(src netip.AddrPort, transport string) string {
	if s.cfg.Router == nil || !src.IsValid() {
		return ""
	}
	return s.cfg.Router.Carrier(src, transport)
}

// recordRouted passes the trunk side of a call to the recorder, if it
// keeps it.
func (s *Server) recordRouted(c *call, trunk, dialled, number, route string) {
	if tr, ok := s.cfg.Recorder.(TrunkRecorder); ok && c != nil {
		tr.Routed(c.id, trunk, dialled, number, route)
	}
}

// inboundTargets is where a trunk's request goes: the contacts of every
// user its number rings. ic's Release is the caller's to arrange.
func (s *Server) inboundTargets(ctx context.Context, req *gosip.Request, ic *InboundCall) ([]target, error) {
	var targets []target
	var lastErr error
	for _, u := range ic.Users {
		ts, err := s.userTargets(ctx, u, false)
		if err != nil {
			lastErr = err
			continue
		}
		targets = append(targets, ts...)
	}
	if len(targets) == 0 {
		if lastErr == nil {
			lastErr = status(480, "Temporarily Unavailable", fmt.Errorf("number %s rings nobody", ic.Number))
		}
		return nil, lastErr
	}
	return targets, nil
}

// inboundCall proxies a trunk's INVITE to the users its number rings
// (forking to all of them at once, as for any call).
func (s *Server) inboundCall(ctx context.Context, req *gosip.Request, tx gosip.ServerTransaction, c *call, trunk string) (outcome, error) {
	ic, err := s.cfg.Router.Inbound(trunk, req)
	if err != nil {
		return failure(err), err
	}
	s.calls.onEnd(c, ic.Release)
	s.recordRouted(c, ic.Trunk, ic.Dialled, ic.Number, "inbound")
	targets, err := s.inboundTargets(ctx, req, ic)
	if err != nil {
		return failure(err), err
	}
	if err := s.startMedia(c, req, targets); err != nil {
		return failure(err), err
	}
	return s.proxy(ctx, req, tx, targets, true, c)
}

// inboundRequest finds the targets of a trunk's request other than an
// INVITE (MESSAGE, OPTIONS to a number): the same users as a call.
func (s *Server) inboundRequest(ctx context.Context, req *gosip.Request, trunk string) ([]target, func(), error) {
	ic, err := s.cfg.Router.Inbound(trunk, req)
	if err != nil {
		return nil, func() {}, err
	}
	release := once(ic.Release)
	targets, err := s.inboundTargets(ctx, req, ic)
	if err != nil {
		release()
		return nil, func() {}, err
	}
	return targets, release, nil
}

// outbound asks the Router about a local user's INVITE whose targets
// could not be found among local users (err from targets): handled is
// false when the Router does not take it (no Router, not a number, a
// local user after all).
func (s *Server) outbound(ctx context.Context, req *gosip.Request, local bool, authUser string, err error) (*OutboundCall, bool, error) {
	if s.cfg.Router == nil || authUser == "" {
		return nil, false, nil
	}
	if local && req.Route() == nil && !errors.Is(err, errUnknownUser) {
		return nil, false, nil // a local user (registered or not), or a failure
	}
	oc, rerr := s.cfg.Router.Outbound(ctx, authUser, req, local)
	if rerr != nil {
		return nil, true, rerr
	}
	if oc == nil {
		return nil, false, nil
	}
	if len(oc.Legs) == 0 {
		if oc.Release != nil {
			oc.Release()
		}
		return nil, true, status(404, "Not Found", fmt.Errorf("no trunk for %s", oc.Number))
	}
	return oc, true, nil
}

// once wraps f (which may be nil) so that calling it again does nothing.
func once(f func()) func() {
	var o sync.Once
	return func() {
		if f != nil {
			o.Do(f)
		}
	}
}
