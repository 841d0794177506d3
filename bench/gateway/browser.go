package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// msg is any message the gateway sends (the fields the bench needs).
type msg struct {
	Type   string `json:"type"`
	Call   string `json:"call"`
	State  string `json:"state"`
	Status int    `json:"status"`
	Reason string `json:"reason"`
	Code   string `json:"code"`
	SDP    string `json:"sdp"`
}

// browser stands in for a web phone tab: a WebSocket speaking the gateway's
// protocol and a pion peer connection sending PCMU.
type browser struct {
	user string
	ws   *websocket.Conn
	in   chan msg

	pc    *webrtc.PeerConnection
	audio *webrtc.TrackLocalStaticRTP

	rx      *atomic.Int64 // shared counter of RTP packets received
	tx      *atomic.Int64
	firstRx atomic.Int64 // unix ns of the first packet received
	stop    chan struct{}
	wg      sync.WaitGroup
}

func dialBrowser(ctx context.Context, wsURL, user string, rx, tx *atomic.Int64) (*browser, error) {
	ws, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	b := &browser{user: user, ws: ws, in: make(chan msg, 64), rx: rx, tx: tx, stop: make(chan struct{})}
	go b.read()
	if m, err := b.next(ctx); err != nil || m.Type != "hello" {
		ws.CloseNow()
		return nil, fmt.Errorf("%s: first message %+v, %v", user, m, err)
	}
	return b, nil
}

func (b *browser) read() {
	defer close(b.in)
	for {
		_, data, err := b.ws.Read(context.Background())
		if err != nil {
			return
		}
		var m msg
		if json.Unmarshal(data, &m) == nil {
			b.in <- m
		}
	}
}

func (b *browser) next(ctx context.Context) (msg, error) {
	select {
	case m, ok := <-b.in:
		if !ok {
			return msg{}, fmt.Errorf("%s: connection closed", b.user)
		}
		return m, nil
	case <-ctx.Done():
		return msg{}, ctx.Err()
	}
}

func (b *browser) send(ctx context.Context, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.ws.Write(ctx, websocket.MessageText, data)
}

func (b *browser) login(ctx context.Context, password string) error {
	if err := b.send(ctx, map[string]string{"type": "login", "user": b.user, "password": password}); err != nil {
		return err
	}
	for {
		m, err := b.next(ctx)
		if err != nil {
			return err
		}
		switch m.Type {
		case "logged_in":
			return nil
		case "error":
			return fmt.Errorf("%s: login: %s", b.user, m.Code)
		}
	}
}

// offer builds the peer connection (PCMU only, loopback host candidates)
// and returns its complete offer.
func (b *browser) offer() (string, error) {
	var me webrtc.MediaEngine
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0}, webrtc.RTPCodecTypeAudio); err != nil {
		return "", err
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(&me), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", err
	}
	b.pc = pc
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			if n >= 12 {
				b.firstRx.CompareAndSwap(0, time.Now().UnixNano())
				b.rx.Add(1)
			}
		}
	})
	a, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, "audio", "mic-"+b.user)
	if err != nil {
		return "", err
	}
	if _, err := pc.AddTrack(a); err != nil {
		return "", err
	}
	b.audio = a
	o, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(o); err != nil {
		return "", err
	}
	<-done
	return pc.LocalDescription().SDP, nil
}

// call places a call to `to` with sdp and waits for it to be answered; it
// returns the time from sending the call message to the answered state.
func (b *browser) call(ctx context.Context, to, sdp string) (time.Duration, error) {
	start := time.Now()
	if err := b.send(ctx, map[string]string{"type": "call", "call": "c1", "to": to, "sdp": sdp}); err != nil {
		return 0, err
	}
	for {
		m, err := b.next(ctx)
		if err != nil {
			return 0, fmt.Errorf("%s: waiting for answer: %w", b.user, err)
		}
		switch {
		case m.Type == "answer":
			if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
				return 0, fmt.Errorf("%s: set answer: %w", b.user, err)
			}
		case m.Type == "call_state" && m.State == "answered":
			return time.Since(start), nil
		case m.Type == "call_state" && m.State != "trying" && m.State != "ringing":
			return 0, fmt.Errorf("%s: call %s (%d %s)", b.user, m.State, m.Status, m.Reason)
		case m.Type == "error":
			return 0, fmt.Errorf("%s: error %s", b.user, m.Code)
		}
	}
}

// startSending sends a 160-byte PCMU packet every 20 ms.
func (b *browser) startSending() {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		payload := make([]byte, 160)
		for i := range payload {
			payload[i] = 0xff
		}
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(rand.IntN(60000))}, Payload: payload}
		for {
			select {
			case <-b.stop:
				return
			case <-tick.C:
			}
			p.SequenceNumber++
			p.Timestamp += 160
			if b.audio.WriteRTP(p) == nil {
				b.tx.Add(1)
			}
		}
	}()
}

// hangup ends the call and closes everything.
func (b *browser) hangup() {
	close(b.stop)
	b.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = b.send(ctx, map[string]string{"type": "hangup", "call": "c1"})
	for {
		m, err := b.next(ctx)
		if err != nil || (m.Type == "call_state" && m.State != "answered") {
			break
		}
	}
	if b.pc != nil {
		b.pc.Close()
	}
	b.ws.Close(websocket.StatusNormalClosure, "")
}
