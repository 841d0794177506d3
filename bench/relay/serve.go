package main

import (
	"bufio"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/media"
)

// serve runs a media.Relay on loopback and answers a line protocol on a TCP
// control port, which it prints on stdout as "CONTROL addr":
//
//	NEW <callerIP:port> <calleeIP:port>  -> OK <portA> <portB>
//	WEBRTC <phone> <ufrag> <pwd> ...     -> OK <portA> <portB> <ufrag> <pwd> <fp>  (serve_webrtc.go)
//	STATS                                -> OK <packets> <lost> <dropped>
//	MEM                                  -> OK <heapInuse> <stackInuse> <goroutines>
//	CLOSE                                -> OK   (closes all streams)
//	QUIT                                 -> OK   (and exits)
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	minPort := fs.Int("port-min", 10000, "lowest media port")
	maxPort := fs.Int("port-max", 20000, "highest media port")
	control := fs.String("control", "127.0.0.1:0", "control listener")
	workers := fs.Int("workers", 0, "packet loops (0: GOMAXPROCS)")
	sockbuf := fs.Int("sockbuf", 4<<20, "SO_RCVBUF/SO_SNDBUF per socket")
	fs.Parse(args)

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := media.New(media.Config{
		PublicIP:     "127.0.0.1",
		BindIP:       "127.0.0.1",
		PortMin:      *minPort,
		PortMax:      *maxPort,
		Quarantine:   -1,
		SocketBuffer: *sockbuf,
		Workers:      *workers,
		Logger:       log,
		Metrics:      prometheus.NewRegistry(),
	})
	if err != nil {
		return err
	}
	defer r.Close()
	ln, err := net.Listen("tcp", *control)
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Printf("CONTROL %s\n", ln.Addr())

	var streams []*media.Stream
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(conn)
		w := bufio.NewWriter(conn)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 0 {
				continue
			}
			switch f[0] {
			case "NEW":
				if len(f) != 3 {
					fmt.Fprintln(w, "ERR want NEW a b")
					break
				}
				a, errA := netip.ParseAddrPort(f[1])
				b, errB := netip.ParseAddrPort(f[2])
				if errA != nil || errB != nil {
					fmt.Fprintln(w, "ERR bad address")
					break
				}
				s, err := r.NewStream(nil)
				if err != nil {
					fmt.Fprintln(w, "ERR", err)
					break
				}
				s.SetPeer(media.A, media.Peer{RTP: a})
				s.SetPeer(media.B, media.Peer{RTP: b})
				streams = append(streams, s)
				fmt.Fprintln(w, "OK", s.LocalPort(media.A), s.LocalPort(media.B))
			case "WEBRTC":
				s, err := serveWebRTC(r, f, w)
				if err != nil {
					fmt.Fprintln(w, "ERR", err)
					break
				}
				streams = append(streams, s)
			case "STATS":
				var pk, lost, dropped uint64
				for _, s := range streams {
					for _, side := range []media.Side{media.A, media.B} {
						st := s.Stats(side)
						pk += st.Packets
						lost += st.Lost
						dropped += st.Dropped
					}
				}
				fmt.Fprintln(w, "OK", pk, lost, dropped)
			case "MEM":
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				fmt.Fprintln(w, "OK", m.HeapInuse, m.StackInuse, runtime.NumGoroutine())
			case "CLOSE":
				for _, s := range streams {
					s.Close()
				}
				streams = nil
				fmt.Fprintln(w, "OK")
			case "QUIT":
				fmt.Fprintln(w, "OK")
				w.Flush()
				conn.Close()
				return nil
			default:
				fmt.Fprintln(w, "ERR unknown command")
			}
			w.Flush()
		}
		conn.Close()
	}
}
