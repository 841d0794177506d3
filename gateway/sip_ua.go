package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// allowHeader lists the methods the gateway's user agent handles.
const allowHeader = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO"

// sipUA is the gateway's SIP user agent: one UDP socket on ListenIP, every
// request sent to the proxy.
type sipUA struct {
	log    *slog.Logger
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	conn   net.PacketConn
	local  netip.AddrPort // bound address, written into Via and Contact
	laddr  sip.Addr
	proxy  string // host:port every request goes to
	agent  string
}

func newSIPUA(cfg *Config, base *slog.Logger) (*sipUA, error) {
	sipgoLog := slog.New(sipgoLogs{next: base.Handler()})
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(cfg.UserAgent),
		sipgo.WithUserAgentHostname(cfg.Domain),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipgoLog)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(sipgoLog)),
	)
	if err != nil {
		return nil, fmt.Errorf("sip user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(sipgoLog))
	if err != nil {
		ua.Close()
		return nil, err
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientLogger(sipgoLog), sipgo.WithClientHostname(cfg.ListenIP))
	if err != nil {
		ua.Close()
		return nil, err
	}
	return &sipUA{log: base, ua: ua, srv: srv, client: client, proxy: cfg.ProxyAddr, agent: cfg.UserAgent}, nil
}

// listen binds the UDP socket; serve reads it until it is closed.
func (u *sipUA) listen(ctx context.Context, ip string, port int) error {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		return fmt.Errorf("gateway SIP listener: %w", err)
	}
	u.conn = pc
	u.local = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	u.local = netip.AddrPortFrom(u.local.Addr().Unmap(), u.local.Port())
	u.laddr = sip.Addr{IP: net.IP(u.local.Addr().AsSlice()), Port: int(u.local.Port())}
	return nil
}

// ready waits (briefly) until the transport layer serves the socket, so
// that requests sent from it find it in sipgo's connection pool rather
// than trying to bind its address again.
func (u *sipUA) ready() error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := u.ua.TransportLayer().GetConnection("udp", u.conn.LocalAddr().String())
		if err == nil {
			_, _ = c.TryClose() // Get took a reference
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway SIP listener not served: %w", err)
		}
		time.Sleep(time.Millisecond)
	}
}

func (u *sipUA) serve() error {
	err := u.srv.ServeUDP(u.conn)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (u *sipUA) close() error {
	var errs []error
	if u.conn != nil {
		if err := u.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, u.ua.Close())
	return errors.Join(errs...)
}

// contactURI is the gateway's Contact for a registration token.
func (u *sipUA) contactURI(user string) sip.Uri {
	uri := sip.Uri{Scheme: "sip", User: user, Host: u.local.Addr().String(), Port: int(u.local.Port()),
		UriParams: sip.NewParams()}
	uri.UriParams.Add("transport", "udp")
	return uri
}

// prepare readies a request the gateway sends: to the proxy, from the
// gateway's socket, with a fresh Via branch (RFC 3261 §8.1.1.7).
func (u *sipUA) prepare(req *sip.Request) {
	for req.RemoveHeader("Via") {
	}
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP",
		Host: u.local.Addr().String(), Port: int(u.local.Port()), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranchN(16))
	via.Params.Add("rport", "")
	req.PrependHeader(via)
	if req.MaxForwards() == nil {
		mf := sip.MaxForwardsHeader(70)
		req.AppendHeader(&mf)
	}
	if req.GetHeader("User-Agent") == nil {
		req.AppendHeader(sip.NewHeader("User-Agent", u.agent))
	}
	if req.Body() == nil {
		req.SetBody(nil) // Content-Length: 0
	}
	req.SetTransport("UDP")
	req.SetDestination(u.proxy)
	req.Laddr = u.laddr
}

// noBuild keeps sipgo's client from adding headers to a prepared request.
func noBuild(*sipgo.Client, *sip.Request) error { return nil }

// transaction sends a prepared request in a client transaction.
func (u *sipUA) transaction(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	u.prepare(req)
	return u.client.TransactionRequest(ctx, req, noBuild)
}

// write sends a request outside a transaction (an ACK for a 2xx).
func (u *sipUA) write(req *sip.Request) error {
	u.prepare(req)
	return u.client.WriteRequest(req, noBuild)
}

// credentials are a user's digest credentials.
type credentials struct {
	user, password string
}

// do sends a non-INVITE request and returns its final response. A 401 or
// 407 challenge is answered once with creds (RFC 3261 §22.2, §22.3) when
// they are given; a second challenge is returned as the response.
func (u *sipUA) do(ctx context.Context, req *sip.Request, creds *credentials) (*sip.Response, error) {
	res, err := u.roundTrip(ctx, req)
	if err != nil || creds == nil || (res.StatusCode != 401 && res.StatusCode != 407) {
		return res, err
	}
	if err := authorize(req, res, *creds); err != nil {
		return res, nil // a challenge we cannot answer: the caller sees it
	}
	req.CSeq().SeqNo++
	return u.roundTrip(ctx, req)
}

func (u *sipUA) roundTrip(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	tx, err := u.transaction(ctx, req)
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return nil, err
			}
			return nil, errors.New("transaction ended without a response")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// authorize adds credentials for the first challenge of res that can be
// answered (the registrar offers MD5 first, then SHA-256; RFC 8760 §2.4).
func authorize(req *sip.Request, res *sip.Response, c credentials) error {
	chName, credName := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		chName, credName = "Proxy-Authenticate", "Proxy-Authorization"
	}
	for _, h := range res.GetHeaders(chName) {
		chal, err := digest.ParseChallenge(h.Value())
		if err != nil {
			continue
		}
		chal.Algorithm = strings.ToUpper(chal.Algorithm)
		if !digest.CanDigest(chal) {
			continue
		}
		cred, err := digest.Digest(chal, digest.Options{
			Method: req.Method.String(), URI: req.Recipient.Addr(),
			Username: c.user, Password: c.password,
		})
		if err != nil {
			continue
		}
		for req.RemoveHeader(credName) {
		}
		req.AppendHeader(sip.NewHeader(credName, cred.String()))
		return nil
	}
	return fmt.Errorf("no usable %s challenge", chName)
}

// respond answers a request with a status and extra headers.
func respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, body []byte, hdrs ...sip.Header) error {
	res := sip.NewResponseFromRequest(req, code, reason, body)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	return tx.Respond(res)
}

// sipTimeout bounds a transaction the gateway waits for while tearing
// down (BYE, CANCEL, un-REGISTER).
const sipTimeout = 4 * time.Second
