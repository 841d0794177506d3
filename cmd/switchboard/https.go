package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/switchboard/switchboard/certs"
)

// bindHTTP binds the plain HTTP and HTTPS listeners first of all, so that
// the certificate source knows the ports that answer ACME challenges. They
// are served by buildHTTP's components and closed by shutdown in any case.
func (sw *switchboard) bindHTTP(cfg *fileConfig) error {
	if l := cfg.HTTP.Listen; l != "" {
		ln, err := net.Listen("tcp", l)
		if err != nil {
			return fmt.Errorf("http.listen %s: %w", l, err)
		}
		sw.httpLn = ln
	}
	if l := cfg.HTTP.HTTPS.Listen; l != "" {
		ln, err := net.Listen("tcp", l)
		if err != nil {
			return fmt.Errorf("http.https.listen %s: %w", l, err)
		}
		sw.httpsLn = ln
	}
	return nil
}

// buildCerts makes the one certificate source of the switch (HTTPS, WSS,
// sip.tls and TURN over TLS without certificates of their own).
func (sw *switchboard) buildCerts(ctx context.Context, cfg *fileConfig) error {
	cc := cfg.certsConfig()
	cc.DB, cc.Logger = sw.db, sw.log
	cc.ACME.StorageDir = filepath.Join(filepath.Dir(cfg.Database), "certmagic")
	if sw.httpsLn != nil {
		host, port := hostPort(sw.httpsLn.Addr())
		cc.ACME.ListenHost, cc.ACME.TLSPort = host, port
	}
	if sw.httpLn != nil {
		_, cc.ACME.HTTPPort = hostPort(sw.httpLn.Addr())
	}
	src, err := certs.New(ctx, cc)
	if err != nil {
		return fmt.Errorf("http.https: %w", err)
	}
	sw.certs = src
	sw.add("certs", src)
	return nil
}

func hostPort(a net.Addr) (string, int) {
	h, p, _ := net.SplitHostPort(a.String())
	port, _ := strconv.Atoi(p)
	return h, port
}

// serveHTTPS makes the HTTPS component: the same pages and APIs as plain
// HTTP (mux, given its own /sip: SIP over secure WebSocket), with HSTS when
// the certificate is publicly trusted.
func (sw *switchboard) serveHTTPS(mux http.Handler) {
	h := mux
	if sw.certs.Trusted() {
		h = strictTransport(h)
	}
	hs := newHTTPServer(sw, h)
	hs.TLSConfig = sw.certs.HTTPSConfig()
	// HTTP/1.1 only: WebSockets (/sip, /ws) are hijacked HTTP/1.1
	// connections, which HTTP/2 has not.
	hs.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	sw.log.Info("listening", "component", "https", "addr", sw.httpsLn.Addr().String())
	sw.add("https", httpServer{hs, tls.NewListener(sw.httpsLn, hs.TLSConfig)})
}

// strictTransport adds HSTS (RFC 6797 §7.1) to every response: sent only
// over HTTPS with a certificate browsers trust, as the RFC requires them to
// ignore it otherwise.
func strictTransport(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		next.ServeHTTP(w, r)
	})
}

// redirectToHTTPS sends clients that are not on loopback, and requests that
// are not WebSocket upgrades, to the same URL over HTTPS on httpsPort (308
// keeps the method). Loopback clients (local
// tools, the WebRTC gateway's own checks) are served next as before:
// 127.0.0.1 is a secure context for browsers anyway.
func redirectToHTTPS(next http.Handler, httpsPort int) http.Handler {
	port := strconv.Itoa(httpsPort)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Loopback clients, and WebSocket upgrades (a SIP phone on
		// ws://…/sip cannot follow a redirect, and must keep working), are
		// served as they are.
		if remoteAddrPort(r).Addr().IsLoopback() || strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			next.ServeHTTP(w, r)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]")
		if host == "" {
			http.Error(w, "use HTTPS on port "+port, http.StatusBadRequest)
			return
		}
		http.Redirect(w, r, "https://"+net.JoinHostPort(host, port)+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}
