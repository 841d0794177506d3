package gateway

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
)

// portPool hands out RTP/RTCP socket pairs on one local address, from a
// port range (an even RTP port and the odd one above it, RFC 3550 §11) or,
// with no range, from the kernel's ephemeral ports.
type portPool struct {
	ip       netip.Addr
	min, max int

	mu   sync.Mutex
	next int
}

func newPortPool(ip netip.Addr, min, max int) *portPool {
	p := &portPool{ip: ip, min: min, max: max}
	if min > 0 {
		p.next = min + rand.IntN(max-min+1)
	}
	return p
}

// pair opens an RTP socket and its RTCP socket. The caller closes both.
func (p *portPool) pair() (rtp, rtcp *net.UDPConn, err error) {
	if p.min == 0 {
		rtp, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, 0)))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrNoPorts, err)
		}
		rtcp, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, 0)))
		if err != nil {
			rtp.Close()
			return nil, nil, fmt.Errorf("%w: %v", ErrNoPorts, err)
		}
		return rtp, rtcp, nil
	}
	tries := (p.max - p.min + 1) / 2
	for range tries {
		port := p.take()
		rtp, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, uint16(port))))
		if err != nil {
			continue
		}
		rtcp, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, uint16(port+1))))
		if err != nil {
			rtp.Close()
			continue
		}
		return rtp, rtcp, nil
	}
	return nil, nil, fmt.Errorf("%w in %d-%d on %s", ErrNoPorts, p.min, p.max, p.ip)
}

// take returns the next even port whose odd neighbour is in range.
func (p *portPool) take() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	port := p.next &^ 1
	if port < p.min {
		port += 2
	}
	if port+1 > p.max {
		port = (p.min + 1) &^ 1
	}
	p.next = port + 2
	return port
}
