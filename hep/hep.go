// Package hep exports the switch's SIP messages as HEP version 3 (the
// Homer Encapsulation Protocol, as sipcapture's HEP3 specification "HEP3
// Network Protocol Specification" defines it) to a capture server: Homer's
// heplify-server, sngrep -L, or anything else that speaks it.
//
// The Sender is a sip.Observer: each message is encoded at once and queued;
// one goroutine sends the queue. When the queue is full, messages are
// dropped and counted, so a slow or absent collector never slows the switch.
package hep

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/fielderr"
	"github.com/switchboard/switchboard/internal/lifecycle"
	"github.com/switchboard/switchboard/sip"
)

// Chunk types of the generic chunk vendor 0x0000 (HEP3 specification,
// "Chunk types").
const (
	ChunkIPFamily  = 0x0001 // uint8: 2 IPv4, 10 IPv6
	ChunkIPProto   = 0x0002 // uint8: 6 TCP, 17 UDP
	ChunkIPv4Src   = 0x0003
	ChunkIPv4Dst   = 0x0004
	ChunkIPv6Src   = 0x0005
	ChunkIPv6Dst   = 0x0006
	ChunkSrcPort   = 0x0007 // uint16
	ChunkDstPort   = 0x0008 // uint16
	ChunkTimeSec   = 0x0009 // uint32
	ChunkTimeUsec  = 0x000a // uint32
	ChunkProtoType = 0x000b // uint8: 1 SIP
	ChunkCaptureID = 0x000c // uint32
	ChunkAuthKey   = 0x000e // octets
	ChunkPayload   = 0x000f // octets
	ChunkCorrID    = 0x0011 // octets: the Call-ID, for Homer's correlation
)

// Values of the chunks above.
const (
	FamilyIPv4 = 2
	FamilyIPv6 = 10
	ProtoTCP   = 6
	ProtoUDP   = 17
	TypeSIP    = 1
)

// Packet is one captured message, as Encode writes it and Decode reads it.
type Packet struct {
	Src, Dst  netip.AddrPort
	Proto     uint8 // ProtoUDP or ProtoTCP
	Time      time.Time
	CaptureID uint32
	AuthKey   string
	CorrID    string
	Payload   []byte
}

// Append appends p encoded as HEP3 to b.
func Append(b []byte, p *Packet) []byte {
	start := len(b)
	b = append(b, 'H', 'E', 'P', '3', 0, 0) // total length written last
	family := uint8(FamilyIPv4)
	src, dst := p.Src.Addr().Unmap(), p.Dst.Addr().Unmap()
	if !src.Is4() || !dst.Is4() {
		family = FamilyIPv6
	}
	// The order of Kamailio's siptrace: sngrep (1.6) reads the chunks up
	// to the payload at fixed offsets.
	b = chunk8(b, ChunkIPFamily, family)
	b = chunk8(b, ChunkIPProto, p.Proto)
	b = chunk16(b, ChunkSrcPort, p.Src.Port())
	b = chunk16(b, ChunkDstPort, p.Dst.Port())
	b = chunk32(b, ChunkTimeSec, uint32(p.Time.Unix()))
	b = chunk32(b, ChunkTimeUsec, uint32(p.Time.Nanosecond()/1000))
	b = chunk8(b, ChunkProtoType, TypeSIP)
	b = chunk32(b, ChunkCaptureID, p.CaptureID)
	if family == FamilyIPv4 {
		s4, d4 := src.As4(), dst.As4()
		b = chunk(b, ChunkIPv4Src, s4[:])
		b = chunk(b, ChunkIPv4Dst, d4[:])
	} else {
		s16, d16 := p.Src.Addr().As16(), p.Dst.Addr().As16()
		b = chunk(b, ChunkIPv6Src, s16[:])
		b = chunk(b, ChunkIPv6Dst, d16[:])
	}
	if p.AuthKey != "" {
		b = chunk(b, ChunkAuthKey, []byte(p.AuthKey))
	}
	b = chunk(b, ChunkPayload, p.Payload)
	if p.CorrID != "" {
		b = chunk(b, ChunkCorrID, []byte(p.CorrID)) // after the payload: sngrep stops there
	}
	binary.BigEndian.PutUint16(b[start+4:], uint16(len(b)-start))
	return b
}

func chunkHead(b []byte, typ uint16, n int) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, 0), typ), uint16(6+n))
}

func chunk(b []byte, typ uint16, v []byte) []byte { return append(chunkHead(b, typ, len(v)), v...) }
func chunk8(b []byte, typ uint16, v uint8) []byte { return append(chunkHead(b, typ, 1), v) }
func chunk16(b []byte, typ uint16, v uint16) []byte {
	return binary.BigEndian.AppendUint16(chunkHead(b, typ, 2), v)
}
func chunk32(b []byte, typ uint16, v uint32) []byte {
	return binary.BigEndian.AppendUint32(chunkHead(b, typ, 4), v)
}

// ErrMalformed is returned by Decode for what is not a HEP3 packet.
var ErrMalformed = errors.New("hep: malformed HEP3 packet")

// Decode reads one HEP3 packet (as a collector does). Chunks of other
// vendors and unknown types are skipped.
func Decode(b []byte) (Packet, error) {
	var p Packet
	if len(b) < 6 || string(b[:4]) != "HEP3" {
		return p, ErrMalformed
	}
	total := int(binary.BigEndian.Uint16(b[4:]))
	if total < 6 || total > len(b) {
		return p, ErrMalformed
	}
	b = b[6:total]
	var src, dst netip.Addr
	var sport, dport uint16
	var sec, usec uint32
	for len(b) > 0 {
		if len(b) < 6 {
			return p, ErrMalformed
		}
		vendor, typ, n := binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:]), int(binary.BigEndian.Uint16(b[4:]))
		if n < 6 || n > len(b) {
			return p, ErrMalformed
		}
		v := b[6:n]
		b = b[n:]
		if vendor != 0 {
			continue
		}
		switch typ {
		case ChunkIPProto:
			if len(v) == 1 {
				p.Proto = v[0]
			}
		case ChunkIPv4Src, ChunkIPv6Src:
			src, _ = netip.AddrFromSlice(v)
		case ChunkIPv4Dst, ChunkIPv6Dst:
			dst, _ = netip.AddrFromSlice(v)
		case ChunkSrcPort:
			if len(v) == 2 {
				sport = binary.BigEndian.Uint16(v)
			}
		case ChunkDstPort:
			if len(v) == 2 {
				dport = binary.BigEndian.Uint16(v)
			}
		case ChunkTimeSec:
			if len(v) == 4 {
				sec = binary.BigEndian.Uint32(v)
			}
		case ChunkTimeUsec:
			if len(v) == 4 {
				usec = binary.BigEndian.Uint32(v)
			}
		case ChunkCaptureID:
			if len(v) == 4 {
				p.CaptureID = binary.BigEndian.Uint32(v)
			}
		case ChunkAuthKey:
			p.AuthKey = string(v)
		case ChunkCorrID:
			p.CorrID = string(v)
		case ChunkPayload:
			p.Payload = append([]byte(nil), v...)
		}
	}
	p.Src, p.Dst = netip.AddrPortFrom(src.Unmap(), sport), netip.AddrPortFrom(dst.Unmap(), dport)
	p.Time = time.Unix(int64(sec), int64(usec)*1000)
	return p, nil
}

// Config configures a Sender.
type Config struct {
	// Address is the collector, "udp://host:port" or "tcp://host:port".
	// Required.
	Address string
	// ID is the capture agent ID written into every packet (default
	// 2001).
	ID uint32
	// Password is the HEP authentication key chunk; empty sends none.
	Password string
	// Queue is the number of packets waiting to be sent; more are dropped
	// (default 4096).
	Queue int
	// Logger receives the sender's logs; nil is slog.Default().
	Logger *slog.Logger
}

// Validate checks the configuration; errors name the field (fielderr).
func (c Config) Validate() error {
	_, _, err := c.parse()
	return err
}

func (c Config) parse() (network, addr string, err error) {
	network, addr, ok := strings.Cut(c.Address, "://")
	if !ok || (network != "udp" && network != "tcp") {
		return "", "", fielderr.New("Address", "%q: want udp://host:port or tcp://host:port", c.Address)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", fielderr.New("Address", "%q: %v", c.Address, err)
	}
	if c.Queue < 0 {
		return "", "", fielderr.New("Queue", "%d: must not be negative", c.Queue)
	}
	return network, addr, nil
}

// Sender sends HEP3 packets to a collector.
type Sender struct {
	cfg     Config
	log     *slog.Logger
	network string
	addr    string
	queue   chan []byte
	pool    sync.Pool
	loop    lifecycle.Loop

	// Sent and Dropped count packets sent and dropped (queue full, or the
	// collector unreachable).
	Sent, Dropped atomic.Uint64
}

// New validates cfg and returns a sender; Serve sends, Shutdown stops.
func New(cfg Config) (*Sender, error) {
	if cfg.ID == 0 {
		cfg.ID = 2001
	}
	if cfg.Queue == 0 {
		cfg.Queue = 4096
	}
	network, addr, err := cfg.parse()
	if err != nil {
		return nil, fmt.Errorf("hep: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Sender{cfg: cfg, log: log.With("component", "hep"), network: network, addr: addr,
		queue: make(chan []byte, cfg.Queue)}
	s.pool.New = func() any { b := make([]byte, 0, 2048); return &b }
	return s, nil
}

// CaptureID returns the capture agent ID the sender writes.
func (s *Sender) CaptureID() uint32 { return s.cfg.ID }

// Observe encodes m and queues it; a full queue drops it. It is a
// sip.Observer.
func (s *Sender) Observe(m *sip.Message) {
	src, dst := m.Remote(), m.Local()
	if m.Sent {
		src, dst = m.Local(), m.Remote()
	}
	proto := uint8(ProtoTCP)
	if m.Transport == "udp" {
		proto = ProtoUDP
	}
	bp := s.pool.Get().(*[]byte)
	b := Append((*bp)[:0], &Packet{Src: src, Dst: dst, Proto: proto, Time: m.Time(), CaptureID: s.cfg.ID,
		AuthKey: s.cfg.Password, CorrID: callID(m.Data), Payload: m.Data})
	*bp = b
	select {
	case s.queue <- b:
	default:
		s.Dropped.Add(1)
		s.pool.Put(bp)
	}
}

// Serve sends queued packets until ctx ends or Shutdown.
func (s *Sender) Serve(ctx context.Context) error { return s.loop.Run(ctx, s.send) }

func (s *Sender) send(ctx context.Context) {
	var conn net.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	var lastErr time.Time
	for {
		var b []byte
		select {
		case <-ctx.Done():
			return
		case b = <-s.queue:
		}
		if conn == nil {
			d := net.Dialer{Timeout: 2 * time.Second}
			c, err := d.DialContext(ctx, s.network, s.addr)
			if err != nil {
				s.Dropped.Add(1)
				if time.Since(lastErr) > time.Minute {
					lastErr = time.Now()
					s.log.Warn("HEP collector unreachable: messages dropped", "address", s.cfg.Address, "error", err)
				}
				s.recycle(b)
				continue
			}
			conn = c
		}
		_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write(b); err != nil {
			s.Dropped.Add(1)
			if time.Since(lastErr) > time.Minute {
				lastErr = time.Now()
				s.log.Warn("HEP send failed", "address", s.cfg.Address, "error", err)
			}
			if s.network == "tcp" {
				conn.Close()
				conn = nil
			}
		} else {
			s.Sent.Add(1)
		}
		s.recycle(b)
	}
}

func (s *Sender) recycle(b []byte) {
	if cap(b) <= 64<<10 {
		b = b[:0]
		s.pool.Put(&b)
	}
}

// Shutdown stops Serve; what is still queued is dropped.
func (s *Sender) Shutdown(ctx context.Context) error { return s.loop.Stop(ctx) }

// callID returns the Call-ID header value of a SIP message, or "".
func callID(b []byte) string {
	for len(b) > 0 {
		i := indexCRLF(b)
		line := b
		if i >= 0 {
			line, b = b[:i], b[i+2:]
		} else {
			b = nil
		}
		if len(line) == 0 {
			return ""
		}
		if len(line) > 2 && (line[0] == 'C' || line[0] == 'c' || line[0] == 'i' || line[0] == 'I') {
			name, value, ok := strings.Cut(string(line), ":")
			if ok && (strings.EqualFold(strings.TrimSpace(name), "Call-ID") || strings.EqualFold(strings.TrimSpace(name), "i")) {
				return strings.TrimSpace(value)
			}
		}
	}
	return ""
}

func indexCRLF(b []byte) int {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' {
			return i
		}
	}
	return -1
}
