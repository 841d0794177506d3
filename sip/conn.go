package sip

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"net/netip"
	"sync"
)

// flowListener wraps a stream listener so that the proxy learns when an
// accepted connection closes: bindings made over it are then dropped.
type flowListener struct {
	net.Listener
	transport string
	onClose   func(transport string, remote netip.AddrPort)
}

func (l *flowListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newFlowConn(c, l.transport, l.onClose), nil
}

// flowConn reports its own Close once.
type flowConn struct {
	net.Conn
	once    sync.Once
	onClose func()
}

func newFlowConn(c net.Conn, transport string, onClose func(string, netip.AddrPort)) *flowConn {
	remote := addrPortOf(c.RemoteAddr())
	return &flowConn{Conn: c, onClose: func() { onClose(transport, remote) }}
}

func (c *flowConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.onClose)
	return err
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.TCPAddr:
		return v.AddrPort()
	case *net.UDPAddr:
		return v.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// hijackListener is the net.Listener sipgo's WebSocket transport accepts
// from: the HTTP server hands it the connections of requests to /sip. The
// HTTP request already read is replayed in front of the connection so that
// sipgo's WebSocket upgrader sees it whole.
type hijackListener struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newHijackListener(addr net.Addr) *hijackListener {
	return &hijackListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *hijackListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *hijackListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *hijackListener) Addr() net.Addr { return l.addr }

// replayConn reads the bytes of an already-parsed HTTP request, then the
// rest of the connection.
type replayConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// ServeHTTP hands a WebSocket upgrade request to the SIP transport.
func (l *hijackListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") == "" {
		http.Error(w, "SIP over WebSocket (RFC 7118): connect with a WebSocket client using subprotocol \"sip\"", http.StatusUpgradeRequired)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "websocket not supported here", http.StatusInternalServerError)
		return
	}
	var head bytes.Buffer
	if err := r.Write(&head); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	// r.Write re-serialises the request; bytes the HTTP server buffered
	// past the request (a client that did not wait for 101) follow it.
	rest := make([]byte, buf.Reader.Buffered())
	buf.Reader.Read(rest)
	rc := &replayConn{Conn: conn, r: bufio.NewReader(ioMulti(head.Bytes(), rest, conn))}
	select {
	case l.conns <- rc:
	case <-l.done:
		conn.Close()
	}
}
