package gateway

import (
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// relayTrack is the local track that carries one SIP m-line's media to the
// browser. Unlike pion's TrackLocalStaticRTP it keeps each packet's payload
// type (so telephone-event and comfort noise pass beside the voice codec);
// the bridge maps payload types between the legs itself.
type relayTrack struct {
	id, stream string
	kind       webrtc.RTPCodecType
	binding    atomic.Pointer[trackBinding]
}

// trackBinding is what pion tells a track when it is bound to a sender.
type trackBinding struct {
	id    string
	ssrc  uint32
	write webrtc.TrackLocalWriter
}

func newRelayTrack(kind webrtc.RTPCodecType, id, stream string) *relayTrack {
	return &relayTrack{id: id, stream: stream, kind: kind}
}

// Bind is called by pion once the codecs are negotiated.
func (t *relayTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codecs := ctx.CodecParameters()
	if len(codecs) == 0 {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	t.binding.Store(&trackBinding{id: ctx.ID(), ssrc: uint32(ctx.SSRC()), write: ctx.WriteStream()})
	return codecs[0], nil
}

// Unbind is called by pion when the sender stops.
func (t *relayTrack) Unbind(ctx webrtc.TrackLocalContext) error {
	if b := t.binding.Load(); b != nil && b.id == ctx.ID() {
		t.binding.CompareAndSwap(b, nil)
	}
	return nil
}

func (t *relayTrack) ID() string                { return t.id }
func (t *relayTrack) RID() string               { return "" }
func (t *relayTrack) StreamID() string          { return t.stream }
func (t *relayTrack) Kind() webrtc.RTPCodecType { return t.kind }

// writeRTP sends one packet to the browser with the sender's SSRC. hdr is
// the caller's (reused) header; payload is not copied.
func (t *relayTrack) writeRTP(hdr *rtp.Header, payload []byte) bool {
	b := t.binding.Load()
	if b == nil {
		return false
	}
	hdr.SSRC = b.ssrc
	_, err := b.write.WriteRTP(hdr, payload)
	return err == nil
}
