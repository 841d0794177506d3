package turn

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// ICEServer is one entry of RTCConfiguration.iceServers (W3C WebRTC §4.2.4).
type ICEServer struct {
	// URLs are stun:, turn: and turns: URLs (RFC 7064, RFC 7065).
	URLs []string `json:"urls"`
	// Username is the TURN REST username "<expiry>:<user>".
	Username string `json:"username,omitempty"`
	// Credential is the TURN REST password for Username.
	Credential string `json:"credential,omitempty"`
}

// ICEConfig is the body of GET /api/turn: ICE servers with fresh TURN REST
// credentials and their lifetime in seconds (draft-uberti-behave-turn-rest-00).
type ICEConfig struct {
	// ICEServers is one entry holding every URL and the credentials.
	ICEServers []ICEServer `json:"iceServers"`
	// TTL is the credentials' lifetime in seconds.
	TTL int64 `json:"ttl"`
}

// URLs returns the STUN and TURN URLs (RFC 7064, RFC 7065) of every
// listener: PublicIP with the bound port; "turns:" URLs use the TLS host.
func (s *Server) URLs() []string {
	var urls, turns []string
	pub := s.cfg.PublicIP.String()
	for _, e := range s.endpoints {
		port := strconv.Itoa(portOf(e.Addr))
		switch e.Transport {
		case TransportUDP:
			urls = append(urls, "stun:"+net.JoinHostPort(pub, port))
			turns = append(turns, "turn:"+net.JoinHostPort(pub, port)+"?transport=udp")
		case TransportTCP:
			turns = append(turns, "turn:"+net.JoinHostPort(pub, port)+"?transport=tcp")
		case TransportTLS:
			turns = append(turns, "turns:"+net.JoinHostPort(s.tlsHost, port)+"?transport=tcp")
		}
	}

	return append(urls, turns...)
}

// ICEConfig returns the ICE server list for user with TURN REST credentials
// valid for Config.CredentialTTL from now. It fails with ErrNoSecret when
// Config.Secret is empty.
func (s *Server) ICEConfig(user string) (ICEConfig, error) {
	if len(s.cfg.Secret) == 0 {
		return ICEConfig{}, ErrNoSecret
	}
	username, password := RESTCredentials(s.cfg.Secret, user, s.cfg.CredentialTTL, s.now())

	return ICEConfig{
		ICEServers: []ICEServer{{URLs: s.URLs(), Username: username, Credential: password}},
		TTL:        int64(s.cfg.CredentialTTL / time.Second),
	}, nil
}

// ICEServersHandler returns the handler of GET /api/turn.
//
// auth authenticates the HTTP request (the caller checks HTTP Basic against
// the SIP user store) and returns the SIP user name. On success the handler
// answers 200 with an ICEConfig as JSON (Cache-Control: no-store: it holds
// credentials); when auth fails, 401 with WWW-Authenticate: Basic and the
// realm (RFC 7617 §2); for a method other than GET or HEAD, 405; without a
// REST secret, 503. The handler writes the whole response itself.
func (s *Server) ICEServersHandler(auth func(r *http.Request) (user string, ok bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)

			return
		}
		user, ok := auth(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q, charset=\"UTF-8\"", s.cfg.Realm))
			http.Error(w, "unauthorized", http.StatusUnauthorized)

			return
		}
		cfg, err := s.ICEConfig(user)
		if err != nil {
			http.Error(w, "turn credentials unavailable", http.StatusServiceUnavailable)

			return
		}
		body, err := json.Marshal(cfg)
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)

			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(append(body, '\n'))
		}
	})
}

func portOf(a net.Addr) int {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.Port
	case *net.TCPAddr:
		return a.Port
	}

	return 0
}
