//go:build linux

package turn

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// TestSteerBySource checks that the reuseport program sends every datagram
// of one source address to one socket of the group, whatever the source
// port.
func TestSteerBySource(t *testing.T) {
	conns, err := listenUDP(context.Background(), "127.0.0.1:0", 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := steerBySource(conns); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 64)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				if _, _, err := c.ReadFrom(buf); err != nil {
					return
				}
				got <- i
			}
		}()
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
		wg.Wait()
	}()
	srv := conns[0].LocalAddr()
	const perSource = 8
	for _, src := range []string{"127.0.0.1", "127.0.0.2"} {
		for i := 0; i < perSource; i++ {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(src)})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.WriteTo([]byte("x"), srv)
			_ = c.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
		sockets := map[int]int{}
		timeout := time.After(2 * time.Second)
		for n := 0; n < perSource; n++ {
			select {
			case i := <-got:
				sockets[i]++
			case <-timeout:
				t.Fatalf("%s: %d of %d datagrams arrived", src, n, perSource)
			}
		}
		if len(sockets) != 1 {
			t.Errorf("%s: datagrams from %d client ports spread over sockets %v", src, perSource, sockets)
		}
	}
}
