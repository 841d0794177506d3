package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// The WebSocket transport of the signalling protocol: accepting a
// connection, reading and writing its messages, pings. What the messages
// do is in ws_commands.go.

// Per-connection limits of the transport.
const (
	outQueue     = 256              // messages waiting for a slow browser before it is dropped
	writeTimeout = 10 * time.Second // one message to the browser
	msgRate      = 100              // messages per second a browser may send
)

// tab is one WebSocket connection: a browser tab running the web phone (or
// any page speaking the protocol).
type tab struct {
	g      *Gateway
	conn   *websocket.Conn
	remote netip.AddrPort // the browser's address (IPv4-mapped ones unmapped)
	log    *slog.Logger
	out    chan []byte
	closeC chan closeReq
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	acct  *account
	calls map[string]*call
	gone  bool

	rateStart time.Time // owned by the reading goroutine
	rateCount int
}

type closeReq struct {
	code   websocket.StatusCode
	reason string
}

// serveWS upgrades a request to the signalling WebSocket and serves it
// until it closes.
func (g *Gateway) serveWS(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	if g.closed || !g.started {
		g.mu.Unlock()
		http.Error(w, "gateway unavailable", http.StatusServiceUnavailable)
		return
	}
	if len(g.tabs) >= g.cfg.MaxTabs {
		g.mu.Unlock()
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return
	}
	g.tabWG.Add(1)
	g.mu.Unlock()
	defer g.tabWG.Done()

	// Only pages of the switch's own origin, or of Config.OriginPatterns,
	// may drive a browser's sign-in (coder/websocket answers 403 to others).
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		CompressionMode: websocket.CompressionDisabled,
		OriginPatterns:  g.cfg.OriginPatterns,
	})
	if err != nil {
		g.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "error", err)
		return
	}
	conn.SetReadLimit(g.cfg.MaxMessageSize)
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	ctx, cancel := context.WithCancel(g.ctx)
	t := &tab{
		g: g, conn: conn, remote: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()),
		log:    g.log.With("remote", r.RemoteAddr),
		out:    make(chan []byte, outQueue),
		closeC: make(chan closeReq, 1),
		ctx:    ctx, cancel: cancel,
		calls: map[string]*call{},
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		cancel()
		conn.Close(websocket.StatusGoingAway, "gateway shutting down")
		return
	}
	g.tabs[t] = true
	g.mu.Unlock()

	var writer sync.WaitGroup
	writer.Add(1)
	go func() {
		defer writer.Done()
		t.writeLoop()
	}()
	t.send(serverMsg{Type: msgHello, Version: protocolVersion})
	t.readLoop()

	t.leave()
	cancel()
	writer.Wait()
	conn.CloseNow()
	g.mu.Lock()
	delete(g.tabs, t)
	g.mu.Unlock()
}

// readLoop reads and handles the browser's messages until the connection
// ends.
func (t *tab) readLoop() {
	for {
		typ, data, err := t.conn.Read(t.ctx)
		if err != nil {
			if s := websocket.CloseStatus(err); s == websocket.StatusMessageTooBig {
				t.log.Info("websocket closed: message too big", "limit", t.g.cfg.MaxMessageSize)
			} else if s == -1 && !errors.Is(err, context.Canceled) && !errors.Is(err, net.ErrClosed) {
				t.log.Debug("websocket read", "error", err)
			}
			return
		}
		if !t.rateOK() {
			t.close(websocket.StatusPolicyViolation, errTooMany, fmt.Sprintf("more than %d messages per second", msgRate))
			return
		}
		if typ != websocket.MessageText {
			t.send(serverMsg{Type: msgError, Code: errBadRequest, Message: "messages are JSON text, not binary"})
			continue
		}
		var m clientMsg
		if err := json.Unmarshal(data, &m); err != nil {
			t.send(serverMsg{Type: msgError, Code: errBadRequest, Message: "malformed JSON: " + err.Error()})
			continue
		}
		t.handle(&m)
	}
}

func (t *tab) rateOK() bool {
	now := time.Now()
	if now.Sub(t.rateStart) >= time.Second {
		t.rateStart, t.rateCount = now, 0
	}
	t.rateCount++
	return t.rateCount <= msgRate
}

// writeLoop writes queued messages, pings an idle browser and closes the
// connection when asked.
func (t *tab) writeLoop() {
	ping := time.NewTicker(t.g.cfg.PingInterval)
	defer ping.Stop()
	write := func(b []byte) bool {
		ctx, cancel := context.WithTimeout(t.ctx, writeTimeout)
		defer cancel()
		if err := t.conn.Write(ctx, websocket.MessageText, b); err != nil {
			t.cancel()
			return false
		}
		return true
	}
	for {
		select {
		case b := <-t.out:
			if !write(b) {
				return
			}
		case cr := <-t.closeC:
			for more := true; more; {
				select {
				case b := <-t.out:
					more = write(b)
				default:
					more = false
				}
			}
			_ = t.conn.Close(cr.code, cr.reason)
			t.cancel()
			return
		case <-ping.C:
			ctx, cancel := context.WithTimeout(t.ctx, t.g.cfg.PingInterval)
			err := t.conn.Ping(ctx)
			cancel()
			if err != nil {
				t.log.Info("browser stopped answering pings", "error", err)
				t.cancel()
				return
			}
		case <-t.ctx.Done():
			return
		}
	}
}

// send queues a message for the browser. A browser that does not read its
// messages is disconnected rather than let the queue grow.
func (t *tab) send(m serverMsg) {
	b, err := json.Marshal(m)
	if err != nil {
		t.log.Error("marshal message", "error", err)
		return
	}
	select {
	case t.out <- b:
	case <-t.ctx.Done():
	default:
		t.log.Warn("browser too slow: closing its connection")
		t.cancel()
	}
}

// close sends an error message and closes the connection with code.
func (t *tab) close(code websocket.StatusCode, errCode, message string) {
	t.send(serverMsg{Type: msgError, Code: errCode, Message: message})
	select {
	case t.closeC <- closeReq{code: code, reason: message}:
	default:
	}
}
