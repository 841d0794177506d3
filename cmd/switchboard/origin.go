package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// checkOrigin refuses with 403, before any WebSocket upgrade, a request whose
// Origin header names a web page of another site than the switch's own: a
// page anywhere on the web could otherwise drive SIP (or the web phone's
// sign-in) through its visitors' browsers, from their addresses.
//
// The rule is coder/websocket's, which the gateway applies to /ws too
// (AcceptOptions.OriginPatterns with the same list):
//   - no Origin header: accepted (not a browser: baresip, SIPp, Linphone);
//   - the Origin's host:port equals the request's Host: accepted;
//   - the Origin matches an entry of allowed: accepted. An entry with "://"
//     ("https://phone.example.com", "https://*.example.com:8443") is matched
//     against the Origin's scheme://host[:port], any other ("phone.example.com",
//     "*.example.com") against its host[:port]; both with path.Match, case
//     insensitively.
//
// Everything else, "Origin: null" included, is refused.
func checkOrigin(allowed []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := originAllowed(r, allowed); err != nil {
			http.Error(w, "forbidden: "+err.Error(), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// originAllowed applies checkOrigin's rule to r.
func originAllowed(r *http.Request, allowed []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("origin %q is not a URL with a host", origin)
	}
	if strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	for _, p := range allowed {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return nil
		}
	}
	return fmt.Errorf("origin %q is not allowed for host %q (http.allowed_origins)", origin, r.Host)
}

// checkOriginPattern validates one http.allowed_origins entry.
func checkOriginPattern(p string) error {
	if p == "" {
		return errors.New("empty origin")
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("%q: %w", p, err)
	}
	host := p
	if scheme, rest, ok := strings.Cut(p, "://"); ok {
		if scheme != "http" && scheme != "https" && !strings.ContainsAny(scheme, "*?[") {
			return fmt.Errorf("%q: an origin's scheme is http or https", p)
		}
		host = rest
	}
	if host == "" || strings.ContainsAny(host, "/@") {
		return fmt.Errorf("%q: want an origin such as https://phone.example.com or a host pattern such as *.example.com", p)
	}
	return nil
}
