//go:build !linux || media_netpoll

package media

import (
	"errors"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
)

// The portable engine: one goroutine per socket, reading one datagram at a
// time through Go's netpoller. It serves platforms without the epoll engine
// and, built with the media_netpoll tag on Linux, is the baseline the epoll
// engine is measured against.

const rxBufSize = 4096 // largest datagram relayed; larger ones are dropped as oversize

// sock is one bound UDP socket of a stream.
type sock struct {
	st   *Stream
	side Side
	rtcp bool
	conn *net.UDPConn
}

// streamEngine is the engine's part of a Stream.
type streamEngine struct {
	readers sync.WaitGroup
}

type engine struct {
	r  *Relay
	wg sync.WaitGroup

	mu   sync.Mutex
	live map[*Stream]struct{}
}

func newEngine(r *Relay) (*engine, error) {
	return &engine{r: r, live: make(map[*Stream]struct{})}, nil
}

func (e *engine) openSide(s *Stream, side Side, port int) error {
	rtp, err := e.listen(port)
	if err != nil {
		return err
	}
	rtcp, err := e.listen(port + 1)
	if err != nil {
		rtp.Close()
		return err
	}
	s.legs[side].socks = [2]*sock{
		{st: s, side: side, conn: rtp},
		{st: s, side: side, rtcp: true, conn: rtcp},
	}
	return nil
}

func (e *engine) listen(port int) (*net.UDPConn, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(e.r.bindIP, uint16(port))))
	if err != nil {
		return nil, err
	}
	if n := e.r.cfg.SocketBuffer; n > 0 {
		c.SetReadBuffer(n)
		c.SetWriteBuffer(n)
	}
	return c, nil
}

func (e *engine) closeSide(s *Stream, side Side) {
	for i, k := range s.legs[side].socks {
		if k != nil {
			k.conn.Close()
			s.legs[side].socks[i] = nil
		}
	}
}

func (e *engine) start(s *Stream) {
	e.mu.Lock()
	e.live[s] = struct{}{}
	e.mu.Unlock()
	for i := range s.legs {
		lg := &s.legs[i]
		for _, k := range lg.socks {
			e.wg.Add(1)
			s.eng.readers.Add(1)
			go e.serve(k)
		}
	}
}

// remove closes the stream's sockets, waits for its readers and calls finish.
func (e *engine) remove(s *Stream) {
	e.closeStream(s)
	s.eng.readers.Wait()
	e.r.finish(s)
}

func (e *engine) closeStream(s *Stream) {
	e.mu.Lock()
	delete(e.live, s)
	e.mu.Unlock()
	for i := range s.legs {
		lg := &s.legs[i]
		for _, k := range lg.socks {
			k.conn.Close()
		}
	}
}

func (e *engine) close() {
	e.mu.Lock()
	live := slices.Collect(maps.Keys(e.live))
	e.mu.Unlock()
	for _, s := range live {
		e.closeStream(s)
	}
	e.wg.Wait()
}

// writeTo sends one datagram from k outside the packet path (DTLS
// handshake records).
func (e *engine) writeTo(k *sock, b []byte, dst netip.AddrPort) error {
	if k == nil {
		return net.ErrClosed
	}
	_, err := k.conn.WriteToUDPAddrPort(b, dst)
	return err
}

func (e *engine) serve(k *sock) {
	defer e.wg.Done()
	s := k.st
	defer s.eng.readers.Done()
	buf := make([]byte, rxBufSize+1)
	for {
		n, from, err := k.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := e.r.clock()
		s.mu.Lock()
		if n > rxBufSize {
			s.drop(k.side, dropOversize, 1)
			s.mu.Unlock()
			continue
		}
		out, dst, b, ok := s.accept(k.side, k.rtcp, buf[:n], from, now)
		s.mu.Unlock()
		if !ok {
			continue
		}
		if _, err := out.conn.WriteToUDPAddrPort(b, dst); err != nil {
			s.mu.Lock()
			s.unsent(k.side, 1, uint64(len(b)))
			s.mu.Unlock()
		}
	}
}
