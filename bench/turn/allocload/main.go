// Command allocload measures how many TURN allocations per second a server
// grants: -workers goroutines each make -per allocations in a row over UDP,
// each from its own socket (Allocate → 401 → authenticated Allocate, RFC 8656
// §7), and hold them until all are done; then it releases them (Refresh with
// LIFETIME 0) outside the timed part. With -sources N (N > 1) the workers are
// spread over N source addresses 127.0.1.1 to 127.0.1.N (a server on
// loopback only), as many clients would be; with 1 they all come from one
// address, as clients behind one NAT do. It prints one line:
//
//	allocs=N failed=F seconds=S rate=R
//
// It is a load generator for bench/turn/run.sh; every wait is bounded.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
)

type rawAttr struct {
	typ stun.AttrType
	val []byte
}

func (a rawAttr) AddTo(m *stun.Message) error {
	m.Add(a.typ, a.val)

	return nil
}

var requestedTransportUDP = rawAttr{typ: 0x0019, val: []byte{17, 0, 0, 0}} // REQUESTED-TRANSPORT UDP (RFC 8656)

func lifetime(sec uint32) rawAttr {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, sec)

	return rawAttr{typ: 0x000D, val: v} // LIFETIME (RFC 8656)
}

type held struct {
	conn  *net.UDPConn
	nonce stun.Nonce
	realm stun.Realm
}

func main() {
	server := flag.String("server", "127.0.0.1:3478", "TURN server UDP address")
	user := flag.String("user", "alice", "username")
	pass := flag.String("pass", "alicepw", "password")
	workers := flag.Int("workers", 16, "concurrent clients")
	per := flag.Int("per", 250, "allocations per worker")
	timeout := flag.Duration("timeout", 60*time.Second, "overall time limit")
	release := flag.Bool("release", true, "release the allocations (Refresh 0) before exiting")
	sources := flag.Int("sources", 1, "source addresses 127.0.1.1..127.0.1.N the workers are spread over (1: the default one)")
	flag.Parse()
	if *sources < 1 || *sources > 254 {
		fmt.Fprintln(os.Stderr, "-sources: 1 to 254")
		os.Exit(2)
	}

	raddr, err := net.ResolveUDPAddr("udp4", *server)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	deadline := time.Now().Add(*timeout)
	var ok, failed atomic.Int64
	holds := make([][]held, *workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		var laddr *net.UDPAddr
		if *sources > 1 {
			laddr = &net.UDPAddr{IP: net.IPv4(127, 0, 1, byte(1+w%*sources))}
		}
		go func(w int) {
			defer wg.Done()
			for i := 0; i < *per && time.Now().Before(deadline); i++ {
				h, err := allocate(raddr, laddr, *user, *pass)
				if err != nil {
					failed.Add(1)

					continue
				}
				ok.Add(1)
				holds[w] = append(holds[w], h)
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	fmt.Printf("allocs=%d failed=%d retransmits=%d seconds=%.3f rate=%.0f\n",
		ok.Load(), failed.Load(), retransmits.Load(), elapsed, float64(ok.Load())/elapsed)

	if !*release {
		return // sockets close on exit; the server expires the allocations
	}
	// Release outside the measurement.
	for _, hs := range holds {
		for _, h := range hs {
			key := stun.NewLongTermIntegrity(*user, h.realm.String(), *pass)
			m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest),
				lifetime(0), stun.NewUsername(*user), h.realm, h.nonce, key, stun.Fingerprint)
			if err == nil {
				_, _ = h.conn.Write(m.Raw)
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	for _, hs := range holds {
		for _, h := range hs {
			_ = h.conn.Close()
		}
	}
}

var (
	errRefused  = errors.New("allocation refused")
	retransmits atomic.Int64
)

// allocate makes one allocation from a new socket bound on local (nil: any).
func allocate(server, local *net.UDPAddr, user, pass string) (held, error) {
	conn, err := net.DialUDP("udp4", local, server)
	if err != nil {
		return held{}, err
	}
	fail := func(err error) (held, error) {
		_ = conn.Close()

		return held{}, err
	}
	res, err := transact(conn, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP, stun.Fingerprint)
	if err != nil {
		return fail(err)
	}
	var nonce stun.Nonce
	var realm stun.Realm
	if nonce.GetFrom(res) != nil || realm.GetFrom(res) != nil {
		return fail(errRefused)
	}
	key := stun.NewLongTermIntegrity(user, realm.String(), pass)
	res, err = transact(conn, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP,
		stun.NewUsername(user), realm, nonce, key, stun.Fingerprint)
	if err != nil {
		return fail(err)
	}
	if res.Type.Class != stun.ClassSuccessResponse {
		return fail(errRefused)
	}

	return held{conn: conn, nonce: nonce, realm: realm}, nil
}

// transact sends a request and waits for its response, retransmitting up to
// 4 times (RTO 250 ms).
func transact(conn *net.UDPConn, setters ...stun.Setter) (*stun.Message, error) {
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1500)
	for try := 0; try < 4; try++ {
		if try > 0 {
			retransmits.Add(1)
		}
		if _, err := conn.Write(req.Raw); err != nil {
			return nil, err
		}
		_ = conn.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() == nil && res.TransactionID == req.TransactionID {
				return res, nil
			}
		}
	}

	return nil, errors.New("no response")
}
