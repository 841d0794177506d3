package main

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/switchboard/switchboard/registrar"
)

// basicAuth checks HTTP Basic credentials (RFC 7617) against the SIP user
// store and reports each outcome to guard, the ban shared with every other
// password check of the switch, under the client's address and the user
// name given. Wrap the handler using it with refuseBanned, which answers
// before the password is looked at.
func basicAuth(users *registrar.Users, guard *registrar.Guard) func(r *http.Request) (string, bool) {
	return func(r *http.Request) (string, bool) {
		name, pw, ok := r.BasicAuth()
		if !ok {
			return "", false // a challenge to come, not a guess
		}
		src := remoteAddrPort(r)
		if !users.CheckPassword(r.Context(), name, pw) {
			guard.Fail(src, name)
			return "", false
		}
		guard.Succeed(src, name)
		return name, true
	}
}

// refuseBanned answers 429 Too Many Requests (RFC 6585 §4) with Retry-After
// (RFC 9110 §10.2.3) to a request whose source, or whose Basic user from
// this source, guard refuses, and passes the others to next.
func refuseBanned(guard *registrar.Guard, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, _, _ := r.BasicAuth()
		if left := guard.BannedFor(remoteAddrPort(r), name); left > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(left.Seconds()))))
			http.Error(w, "too many failed sign-ins; try again later", http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// remoteAddrPort is the client's address of an HTTP request (the zero
// AddrPort when the server did not set a parsable one).
func remoteAddrPort(r *http.Request) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
