// Test helper for sipclients_test.go, added to every page of sipclients.mjs
// as an init script (so that it also runs on the web phone's page, whose CSP
// refuses injected script tags). It defines window.t: JsSIP and SIP.js user
// agents (their libraries come from the bundle the test page loads), a local
// stream whose microphone is a WebAudio oscillator at a chosen frequency,
// getStats summaries and a received-tone meter (AnalyserNode FFT on the
// remote audio track). Every function returns a promise of JSON-able data
// and rejects with a message saying what did not happen.
'use strict';
(() => {
  const t = { ua: null, lib: '', session: null, incoming: [], freq: 0 };
  window.t = t;

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // until polls cond every 50 ms until it is truthy or ms pass.
  async function until(cond, ms, what) {
    const end = Date.now() + ms;
    for (;;) {
      const v = cond();
      if (v) return v;
      if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
      await sleep(50);
    }
  }

  let ac = null;
  function audioContext() {
    if (!ac) ac = new AudioContext();
    if (ac.state !== 'running') ac.resume();
    return ac;
  }

  // A stream whose audio is a sine at freq Hz (and, with video, the fake
  // camera's picture).
  t.localStream = async ({ freq, video }) => {
    const ctx = audioContext();
    const osc = ctx.createOscillator();
    osc.frequency.value = freq;
    const gain = ctx.createGain();
    gain.gain.value = 0.3;
    const dst = ctx.createMediaStreamDestination();
    osc.connect(gain).connect(dst);
    osc.start();
    const s = dst.stream;
    if (video) {
      const cam = await navigator.mediaDevices.getUserMedia({ audio: false, video: { width: 320, height: 240 } });
      for (const tr of cam.getVideoTracks()) s.addTrack(tr);
    }
    return s;
  };

  // ---- JsSIP

  function watchJsSIP(s) {
    s.endInfo = null;
    s.confirmed = false;
    s.remoteSdps = [];
    s.localSdps = [];
    s.on('confirmed', () => { s.confirmed = true; });
    // The other side's SDP as the SIP message carried it (Chromium drops
    // some lines, such as a=end-of-candidates, from remoteDescription), and
    // every SDP of the call either way, in order (a re-INVITE's offer shows
    // twice among the local ones: as created, then as sent).
    s.on('sdp', (e) => {
      if (e.originator === 'remote') s.remoteSdp = e.sdp;
      (e.originator === 'remote' ? s.remoteSdps : s.localSdps).push({ type: e.type, sdp: e.sdp, at: Date.now() });
    });
    // When a provisional response's SDP was applied (early media), and when
    // the 2xx came.
    s.on('progress', (e) => {
      if (e.originator === 'remote' && !s.progressAt && e.response && e.response.body) {
        s.progressAt = Date.now();
        s.progressStatus = e.response.status_code;
      }
    });
    s.on('accepted', () => { s.acceptedAt = Date.now(); });
    s.on('ended', (e) => { s.endInfo = { how: 'ended', originator: e.originator, cause: e.cause }; });
    s.on('failed', (e) => {
      s.endInfo = { how: 'failed', originator: e.originator, cause: e.cause, status: e.message && e.message.status_code, reason: e.message && e.message.reason_phrase };
    });
  }

  // Registers user over the WebSocket url with JsSIP's defaults.
  t.jssipStart = ({ url, user, password, domain }) => new Promise((resolve, reject) => {
    const JsSIP = window.JsSIP;
    const ua = new JsSIP.UA({ sockets: [new JsSIP.WebSocketInterface(url)], uri: `sip:${user}@${domain}`, password, register: true, register_expires: 300 });
    t.ua = ua;
    t.lib = 'jssip';
    ua.on('newRTCSession', (e) => {
      if (e.originator === 'remote') {
        watchJsSIP(e.session);
        t.incoming.push(e.session);
      }
    });
    const timer = setTimeout(() => reject(new Error('JsSIP: no registration within 15 s')), 15000);
    ua.on('registered', (e) => { clearTimeout(timer); resolve('registered: ' + e.response.status_code); });
    ua.on('registrationFailed', (e) => {
      clearTimeout(timer);
      reject(new Error(`JsSIP registrationFailed: ${e.cause}${e.response ? ' ' + e.response.status_code : ''}`));
    });
    ua.start();
  });

  // ---- SIP.js

  t.sipjsStart = async ({ url, user, password, domain }) => {
    const SIP = window.SIP;
    const ua = new SIP.UserAgent({
      uri: SIP.UserAgent.makeURI(`sip:${user}@${domain}`), authorizationUsername: user, authorizationPassword: password,
      transportOptions: { server: url }, logLevel: 'warn',
      sessionDescriptionHandlerFactory: SIP.Web.defaultSessionDescriptionHandlerFactory((c) => t.localStream({ freq: t.freq, video: !!c.video })),
      sessionDescriptionHandlerFactoryOptions: { peerConnectionConfiguration: { iceServers: [] }, iceGatheringTimeout: 3000 },
      delegate: { onInvite: (inv) => t.incoming.push(inv) },
    });
    t.ua = ua;
    t.lib = 'sipjs';
    await ua.start();
    const reg = new SIP.Registerer(ua, { expires: 300 });
    let rejected = '';
    await reg.register({ requestDelegate: { onReject: (r) => { rejected = 'rejected ' + r.message.statusCode; } } });
    await until(() => reg.state === SIP.RegistererState.Registered || rejected, 15000, 'SIP.js registration');
    if (rejected) throw new Error('SIP.js REGISTER ' + rejected);
    return 'registered';
  };

  function watchSIPjs(s) {
    const SIP = window.SIP;
    s.endInfo = null;
    s.confirmed = false;
    s.stateChange.addListener((st) => {
      if (st === SIP.SessionState.Established) s.confirmed = true;
      if (st === SIP.SessionState.Terminated && !s.endInfo) s.endInfo = { how: s.confirmed ? 'ended' : 'failed', originator: s.byLocal ? 'local' : 'remote' };
    });
  }

  // ---- calls, either library

  // Starts a call to target; waitConfirmed waits for it to be established.
  t.call = async ({ target, freq, video }) => {
    t.freq = freq;
    let s;
    if (t.lib === 'jssip') {
      const stream = await t.localStream({ freq, video });
      s = t.ua.call(target, { mediaStream: stream, pcConfig: { iceServers: [] } });
      watchJsSIP(s);
    } else {
      const SIP = window.SIP;
      s = new SIP.Inviter(t.ua, SIP.UserAgent.makeURI(target), { sessionDescriptionHandlerOptions: { constraints: { audio: true, video: !!video } } });
      watchSIPjs(s);
      s.invite({ requestDelegate: { onAccept: (r) => { s.remoteSdp = r.message.body; }, onReject: (r) => { s.rejected = `${r.message.statusCode} ${r.message.reasonPhrase}`; } } })
        .catch((e) => { s.rejected = String(e); });
    }
    t.session = s;
    return 'calling';
  };

  t.waitConfirmed = async () => {
    const s = t.session;
    if (!s) throw new Error('no call');
    await until(() => s.confirmed || s.endInfo || s.rejected, 20000, 'call established');
    if (!s.confirmed) throw new Error('call failed: ' + (s.rejected || JSON.stringify(s.endInfo)));
    return 'confirmed';
  };

  // Answers the next incoming call (waiting for it to ring).
  t.answer = async ({ freq, video }) => {
    t.freq = freq;
    await until(() => t.incoming.length > 0, 20000, 'incoming call');
    const s = t.incoming.shift();
    t.session = s;
    if (t.lib === 'jssip') {
      s.answer({ mediaStream: await t.localStream({ freq, video }), pcConfig: { iceServers: [] } });
    } else {
      watchSIPjs(s);
      s.remoteSdp = s.request.body;
      await s.accept({ sessionDescriptionHandlerOptions: { constraints: { audio: true, video: !!video } } });
    }
    await until(() => s.confirmed || s.endInfo, 20000, 'answered call confirmed');
    if (!s.confirmed) throw new Error('answered call failed: ' + JSON.stringify(s.endInfo));
    return 'confirmed';
  };

  t.hangup = async () => {
    const s = t.session;
    if (!s) throw new Error('no call');
    s.byLocal = true;
    if (t.lib === 'jssip') s.terminate(); else await s.bye();
    await until(() => s.endInfo, 10000, 'call ended after hang-up');
    return s.endInfo;
  };

  // Waits for the current call to end (the other side hung up).
  t.waitEnded = async () => {
    const s = t.session;
    if (!s) throw new Error('no call');
    await until(() => s.endInfo, 15000, 'call ended by the other side');
    return s.endInfo;
  };

  // Ends whatever call is left (a failed test's) and forgets ringing ones.
  t.reset = async () => {
    const s = t.session;
    t.session = null;
    const ringing = t.incoming.splice(0);
    try {
      if (s && !s.endInfo) {
        if (t.lib === 'jssip') s.terminate();
        else if (s.confirmed) await s.bye();
        else if (s.cancel) await s.cancel();
      }
      for (const r of ringing) {
        if (t.lib === 'jssip') { if (!r.endInfo) r.terminate(); } else await r.reject().catch(() => {});
      }
    } catch (e) {
      return 'reset: ' + e;
    }
    return 'reset';
  };

  // ---- mid-call changes (JsSIP)

  // reoffer runs f(done), a JsSIP method that sends a re-INVITE and calls
  // done once its answer is applied, and waits for that.
  async function reoffer(what, f) {
    const s = t.session;
    if (!s || t.lib !== 'jssip') throw new Error(what + ': no JsSIP call');
    let done = false;
    if (!f(s, () => { done = true; })) throw new Error(what + ': JsSIP refused (not ready to re-offer)');
    await until(() => done || s.endInfo, 15000, what + ' answered');
    if (!done) throw new Error(what + ': the call ended: ' + JSON.stringify(s.endInfo));
    return { remoteSdps: s.remoteSdps.length };
  }
  // Puts the call on hold (re-INVITE with a=sendonly) and resumes it.
  t.hold = () => reoffer('hold', (s, done) => s.hold({}, done));
  t.unhold = () => reoffer('unhold', (s, done) => s.unhold({}, done));
  // Adds the fake camera's video to an audio call and renegotiates
  // (re-INVITE whose offer has a new m=video).
  t.addVideo = async () => {
    const s = t.session;
    if (!s || t.lib !== 'jssip') throw new Error('addVideo: no JsSIP call');
    const cam = await navigator.mediaDevices.getUserMedia({ audio: false, video: { width: 320, height: 240 } });
    for (const tr of cam.getVideoTracks()) s.connection.addTrack(tr, cam);
    return reoffer('video renegotiation', (s, done) => s.renegotiate({}, done));
  };

  // What the current call went through: every SDP either way, when early
  // media and the 2xx came, its Call-ID.
  t.callInfo = () => {
    const s = t.session;
    if (!s) throw new Error('no call');
    const req = s._request;
    return {
      callId: (s._dialog && s._dialog.id && s._dialog.id.call_id) || (req && req.call_id) || '',
      confirmed: !!s.confirmed, endInfo: s.endInfo, progressAt: s.progressAt || 0, progressStatus: s.progressStatus || 0,
      acceptedAt: s.acceptedAt || 0, now: Date.now(), remoteSdps: s.remoteSdps || [], localSdps: s.localSdps || [],
    };
  };

  // pc returns the RTCPeerConnection of the current call ("webphone": the
  // switch's web phone's).
  t.pc = (which) => {
    if (which === 'webphone') return window.phone && window.phone.call && window.phone.call.pc;
    const s = t.session;
    if (!s) return null;
    if (t.lib === 'jssip') return s.connection;
    return s.sessionDescriptionHandler && s.sessionDescriptionHandler.peerConnection;
  };

  // The SDP the browser was given by the other side, and its own.
  t.sdp = ({ pc } = {}) => {
    const c = t.pc(pc);
    if (!c) throw new Error('no peer connection');
    const applied = c.remoteDescription && c.remoteDescription.sdp;
    const s = pc === 'webphone' ? null : t.session;
    return { remote: (s && s.remoteSdp) || applied, applied, local: c.localDescription && c.localDescription.sdp };
  };

  // getStats of the current call: inbound/outbound RTP per kind, and the
  // selected candidate pair.
  t.stats = async ({ pc } = {}) => {
    const c = t.pc(pc);
    if (!c) return null;
    const report = await c.getStats();
    const out = { connection: c.connectionState, audioIn: null, videoIn: null, audioOut: null, videoOut: null, local: null, remote: null };
    let pairId = null;
    report.forEach((s) => {
      if (s.type === 'inbound-rtp') {
        const v = { packetsReceived: s.packetsReceived, bytesReceived: s.bytesReceived, audioLevel: s.audioLevel, framesDecoded: s.framesDecoded, codecId: s.codecId };
        if (s.kind === 'audio') out.audioIn = v; else out.videoIn = v;
      }
      if (s.type === 'outbound-rtp') {
        const v = { packetsSent: s.packetsSent, framesEncoded: s.framesEncoded };
        if (s.kind === 'audio') out.audioOut = v; else out.videoOut = v;
      }
      if (s.type === 'transport' && s.selectedCandidatePairId && !pairId) pairId = s.selectedCandidatePairId;
    });
    if (!pairId) report.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pairId = s.id; });
    const pair = pairId && report.get(pairId);
    const cand = (id) => { const x = id && report.get(id); return x ? { type: x.candidateType, address: x.address, port: x.port } : null; };
    if (pair) { out.local = cand(pair.localCandidateId); out.remote = cand(pair.remoteCandidateId); }
    if (out.audioIn && out.audioIn.codecId) { const k = report.get(out.audioIn.codecId); out.audioCodec = k && k.mimeType; }
    return out;
  };

  // Measures for ms which frequency dominates the received audio: the FFT
  // peak between 100 and 4000 Hz, every 50 ms; a hit is a peak above -80 dB
  // within two bins (plus 10 Hz) of freq.
  t.measureTone = async ({ freq, ms, pc }) => {
    const c = t.pc(pc);
    if (!c) throw new Error('no peer connection');
    const tracks = c.getReceivers().map((r) => r.track).filter((tr) => tr && tr.kind === 'audio' && tr.readyState === 'live');
    if (!tracks.length) throw new Error('no live remote audio track');
    const ctx = audioContext();
    const stream = new MediaStream(tracks);
    // Chromium feeds WebAudio from a remote WebRTC track only while a media
    // element plays it.
    if (!t.sink) { t.sink = new Audio(); t.sink.muted = true; }
    t.sink.srcObject = stream;
    t.sink.play().catch(() => {});
    const src = ctx.createMediaStreamSource(stream);
    const an = ctx.createAnalyser();
    an.fftSize = 8192;
    an.smoothingTimeConstant = 0;
    src.connect(an);
    const bins = new Float32Array(an.frequencyBinCount);
    const binHz = ctx.sampleRate / an.fftSize;
    let samples = 0, hits = 0, maxDb = -Infinity;
    const peaks = [];
    const end = performance.now() + (ms || 1500);
    await sleep(200); // a full FFT window of the track
    while (performance.now() < end) {
      await sleep(50);
      an.getFloatFrequencyData(bins);
      let best = -Infinity, bi = 0;
      for (let i = Math.floor(100 / binHz); i < Math.min(bins.length, 4000 / binHz); i++) {
        if (bins[i] > best) { best = bins[i]; bi = i; }
      }
      samples++;
      const peak = bi * binHz;
      if (peaks.length < 30) peaks.push(Math.round(peak));
      if (best > maxDb) maxDb = best;
      if (best > -80 && Math.abs(peak - freq) <= 2 * binHz + 10) hits++;
    }
    src.disconnect();
    return { samples, hits, peaks, maxDb: Number.isFinite(maxDb) ? Math.round(maxDb) : -999, binHz, context: ctx.state };
  };
})();
