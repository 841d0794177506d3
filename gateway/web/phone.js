// Switchboard web phone. Speaks the JSON protocol of docs/webrtc-protocol.md
// over a WebSocket at /ws; media goes over WebRTC to the gateway.
'use strict';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const phone = {
  ws: null,
  user: '',
  iceServers: [],
  // Force TURN (?ice=relay): every candidate the browser uses is relayed.
  iceTransportPolicy: params.get('ice') === 'relay' ? 'relay' : 'all',
  wantVideo: params.get('video') === '1',
  call: null,      // the current call: {id, dir, pc, stream, peer, answeredAt, muted, held, remoteHeld, video}
  incoming: null,  // a ringing incoming call: the incoming message
  seq: 0,
  meter: null,
};
window.phone = phone; // for tests and debugging: phone.call.pc.getStats()

// ---- signalling

function connect() {
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
  const ws = new WebSocket(url);
  phone.ws = ws;
  setConn('Connecting…');
  ws.onopen = () => setConn('Connected');
  ws.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch (e) { return; }
    handle(m);
  };
  ws.onclose = (ev) => {
    setConn('Disconnected' + (ev.reason ? ': ' + ev.reason : ev.code ? ' (' + ev.code + ')' : ''));
    endCallLocally('connection lost');
    if (phone.user) {
      phone.user = '';
      showSignin();
      alertMsg('The connection to the switch was lost. Sign in again.');
    }
    phone.ws = null;
    setTimeout(connect, 2000);
  };
}

function send(m) {
  if (phone.ws && phone.ws.readyState === WebSocket.OPEN) {
    phone.ws.send(JSON.stringify(m));
    return true;
  }
  alertMsg('Not connected to the switch.');
  return false;
}

function handle(m) {
  switch (m.type) {
    case 'hello': break;
    case 'logged_in':
      phone.user = m.user;
      phone.iceServers = m.iceServers || [];
      showPhone(m);
      break;
    case 'logged_out':
      phone.user = '';
      showSignin();
      break;
    case 'error': onError(m); break;
    case 'call_state': onCallState(m); break;
    case 'answer': onAnswer(m); break;
    case 'incoming': onIncoming(m); break;
    case 'hold_state': onHold(m); break;
    case 'dtmf': $('dtmf').textContent = 'Received digit ' + m.digit; break;
    case 'message': logMessage('From ' + (m.fromName || m.from) + ': ' + m.text); break;
    case 'message_sent': logMessage('Delivered to ' + m.to); break;
    case 'pong': break;
  }
}

function onError(m) {
  const text = errorText(m);
  alertMsg(text);
  if (m.id === 'login') {
    $('signin-btn').disabled = false;
  }
}

function errorText(m) {
  switch (m.code) {
    case 'auth_failed': return 'Wrong user name or password.';
    case 'rate_limited': return 'Too many failed sign-ins. Wait a minute and try again.';
    case 'no_common_codec': return 'The other side supports none of this browser\'s codecs.';
    case 'ice_failed': return 'No media connection: ' + m.message;
    case 'bad_address': return m.message;
  }
  return m.message || m.code;
}

// ---- sign-in

$('signin-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const user = $('user').value.trim();
  if (!user) return;
  alertMsg('');
  $('signin-btn').disabled = true;
  if (!send({ type: 'login', id: 'login', user, password: $('password').value })) {
    $('signin-btn').disabled = false;
  }
});

$('signout').addEventListener('click', () => {
  if (phone.call) hangup();
  send({ type: 'logout' });
});

function showPhone(m) {
  $('signin').hidden = true;
  $('phone').hidden = false;
  $('signin-btn').disabled = false;
  $('password').value = '';
  $('me').textContent = 'Signed in as ' + m.user + ' (' + m.aor + ')';
  setConn('Connected · registered');
  setCallState('Ready');
  loadRecent();
  $('address').focus();
}

function showSignin() {
  $('phone').hidden = true;
  $('signin').hidden = false;
  $('signin-btn').disabled = false;
  setConn(phone.ws && phone.ws.readyState === WebSocket.OPEN ? 'Connected' : 'Disconnected');
}

// ---- calls

function rtcConfig() {
  return { iceServers: phone.iceServers, iceTransportPolicy: phone.iceTransportPolicy, bundlePolicy: 'max-bundle' };
}

async function getMedia(video) {
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video: !!video });
  } catch (e) {
    if (video) {
      alertMsg('No camera available; calling with audio only.');
      return navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    }
    throw e;
  }
}

function newPC(call) {
  const pc = new RTCPeerConnection(rtcConfig());
  call.pc = pc;
  call.iceQueue = [];
  pc.onicecandidate = (e) => {
    const cand = e.candidate ? e.candidate.toJSON() : null;
    if (!cand) return;
    if (call.signalled) send({ type: 'ice', call: call.id, candidate: cand });
    else call.iceQueue.push(cand);
  };
  pc.ontrack = (e) => {
    if (e.track.kind === 'video') $('videos').hidden = false;
    const v = $('remote');
    const stream = e.streams[0] || new MediaStream([e.track]);
    if (v.srcObject !== stream) v.srcObject = stream;
    v.play().catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === 'failed') alertMsg('The media connection failed.');
  };
  return pc;
}

function flushICE(call) {
  call.signalled = true;
  for (const c of call.iceQueue) send({ type: 'ice', call: call.id, candidate: c });
  call.iceQueue = [];
}

function attachLocal(call, stream) {
  call.stream = stream;
  $('local').srcObject = stream.getVideoTracks().length ? stream : null;
  if (stream.getVideoTracks().length) $('videos').hidden = false;
  startMeter(stream);
}

async function placeCall(to) {
  if (phone.call || !to) return;
  alertMsg('');
  const call = { id: 'c' + Date.now().toString(36) + (++phone.seq), dir: 'out', peer: to, video: phone.wantVideo };
  phone.call = call;
  setInCall(true);
  setCallState('Calling ' + to + '…');
  try {
    const stream = await getMedia(phone.wantVideo);
    if (phone.call !== call) { stream.getTracks().forEach((t) => t.stop()); return; }
    attachLocal(call, stream);
    const pc = newPC(call);
    stream.getTracks().forEach((t) => pc.addTrack(t, stream));
    if (phone.wantVideo && !stream.getVideoTracks().length) pc.addTransceiver('video', { direction: 'recvonly' });
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (phone.call !== call) return;
    send({ type: 'call', call: call.id, to, sdp: pc.localDescription.sdp });
    flushICE(call);
  } catch (e) {
    alertMsg('Cannot start the call: ' + e.message);
    endCallLocally('failed');
  }
}

async function onAnswer(m) {
  const call = phone.call;
  if (!call || call.id !== m.call) return;
  try {
    await call.pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
  } catch (e) {
    alertMsg('Bad answer from the switch: ' + e.message);
    hangup();
  }
}

function onIncoming(m) {
  if (phone.call || phone.incoming) {
    send({ type: 'decline', call: m.call, reason: 'busy' });
    return;
  }
  phone.incoming = m;
  $('incoming-from').textContent = (m.fromName ? m.fromName + ' ' : '') + '<' + m.from + '>' + (m.video ? ' · video' : '');
  $('incoming').hidden = false;
  setCallState('Incoming call');
  $('answer').focus();
}

$('answer').addEventListener('click', async () => {
  const m = phone.incoming;
  if (!m) return;
  phone.incoming = null;
  $('incoming').hidden = true;
  const call = { id: m.call, dir: 'in', peer: m.fromName || m.from, video: !!m.video };
  phone.call = call;
  setInCall(true);
  setCallState('Answering…');
  try {
    const stream = await getMedia(m.video);
    attachLocal(call, stream);
    const pc = newPC(call);
    await pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
    stream.getTracks().forEach((t) => pc.addTrack(t, stream));
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    send({ type: 'answer', call: call.id, sdp: pc.localDescription.sdp });
    flushICE(call);
  } catch (e) {
    alertMsg('Cannot answer: ' + e.message);
    send({ type: 'decline', call: call.id });
    endCallLocally('failed');
  }
});

$('decline').addEventListener('click', () => {
  const m = phone.incoming;
  if (!m) return;
  send({ type: 'decline', call: m.call });
  phone.incoming = null;
  $('incoming').hidden = true;
  addRecent({ dir: 'in', peer: m.fromName || m.from, result: 'declined' });
  setCallState('Ready');
});

const stateText = {
  trying: 'Calling…', ringing: 'Ringing…', answered: 'In call', busy: 'Busy', declined: 'Declined',
  not_found: 'Not found', unavailable: 'Unavailable', failed: 'Call failed', cancelled: 'Cancelled',
  ended: 'Call ended', answered_elsewhere: 'Answered elsewhere',
};

function onCallState(m) {
  const inc = phone.incoming;
  if (inc && inc.call === m.call) {
    // The ringing call ended before we answered it.
    phone.incoming = null;
    $('incoming').hidden = true;
    addRecent({ dir: 'in', peer: inc.fromName || inc.from, result: m.state === 'answered_elsewhere' ? 'answered elsewhere' : 'missed' });
    setCallState(stateText[m.state] || m.state);
    return;
  }
  const call = phone.call;
  if (!call || call.id !== m.call) return;
  let text = stateText[m.state] || m.state;
  if (m.status && m.state !== 'answered' && m.state !== 'ringing' && m.state !== 'trying') text += ' (' + m.status + (m.reason ? ' ' + m.reason : '') + ')';
  if (m.state === 'ringing' && m.earlyMedia) text = 'Ringing (early media)…';
  setCallState(text);
  if (m.state === 'answered') {
    call.answeredAt = Date.now();
    if (m.peer) call.peer = m.peer;
    $('party').textContent = 'With ' + call.peer;
    $('mute').disabled = false;
    $('hold').disabled = false;
    tick();
  }
  if (['busy', 'declined', 'not_found', 'unavailable', 'failed', 'cancelled', 'ended', 'answered_elsewhere'].includes(m.state)) {
    endCallLocally(m.state, text);
  }
}

function onHold(m) {
  const call = phone.call;
  if (!call || call.id !== m.call) return;
  if (m.by === 'local') {
    call.held = m.held;
    $('hold').setAttribute('aria-pressed', String(m.held));
    $('hold').textContent = 'Hold';
    applyMute();
  } else {
    call.remoteHeld = m.held;
  }
  setCallState(call.held ? 'On hold' : call.remoteHeld ? 'Held by the other party' : 'In call');
}

function hangup() {
  const call = phone.call;
  if (!call) return;
  if (call.signalled) send({ type: 'hangup', call: call.id });
  endCallLocally('hung up', 'Call ended');
}

function endCallLocally(result, text) {
  const call = phone.call;
  if (!call) return;
  phone.call = null;
  if (call.pc) call.pc.close();
  if (call.stream) call.stream.getTracks().forEach((t) => t.stop());
  stopMeter();
  $('remote').srcObject = null;
  $('local').srcObject = null;
  $('videos').hidden = true;
  const secs = call.answeredAt ? Math.round((Date.now() - call.answeredAt) / 1000) : 0;
  addRecent({ dir: call.dir, peer: call.peer, result: call.answeredAt ? 'answered' : result, secs });
  setInCall(false);
  setCallState(text || 'Ready');
  $('party').textContent = '';
  $('duration').textContent = call.answeredAt ? 'Lasted ' + fmtDuration(secs) : '';
}

function setInCall(on) {
  $('call').disabled = on;
  $('hangup').disabled = !on;
  $('mute').disabled = true;
  $('hold').disabled = true;
  $('mute').setAttribute('aria-pressed', 'false');
  $('hold').setAttribute('aria-pressed', 'false');
  if (on) $('hangup').focus();
}

$('dial-form').addEventListener('submit', (e) => {
  e.preventDefault();
  placeCall($('address').value.trim());
});
$('hangup').addEventListener('click', hangup);

$('mute').addEventListener('click', () => {
  const call = phone.call;
  if (!call) return;
  call.muted = !call.muted;
  $('mute').setAttribute('aria-pressed', String(!!call.muted));
  applyMute();
});

function applyMute() {
  const call = phone.call;
  if (!call || !call.stream) return;
  for (const t of call.stream.getAudioTracks()) t.enabled = !call.muted && !call.held;
}

$('hold').addEventListener('click', () => {
  const call = phone.call;
  if (!call || !call.answeredAt) return;
  send({ type: call.held ? 'resume' : 'hold', call: call.id });
  $('hold').textContent = call.held ? 'Resuming…' : 'Holding…';
});

$('video').addEventListener('click', () => {
  const call = phone.call;
  if (call && call.stream && call.stream.getVideoTracks().length) {
    const tr = call.stream.getVideoTracks()[0];
    tr.enabled = !tr.enabled;
    $('video').setAttribute('aria-pressed', String(tr.enabled));
    return;
  }
  if (!call) {
    phone.wantVideo = !phone.wantVideo;
    $('video').setAttribute('aria-pressed', String(phone.wantVideo));
  }
});

// Keypad: dials when idle, sends RFC 4733 DTMF in a call.
for (const b of document.querySelectorAll('.keypad button')) {
  b.addEventListener('click', () => pressDigit(b.dataset.digit));
}

function pressDigit(d) {
  const call = phone.call;
  if (call && call.pc && call.answeredAt) {
    const sender = call.pc.getSenders().find((s) => s.track && s.track.kind === 'audio');
    if (sender && sender.dtmf && sender.dtmf.canInsertDTMF) {
      sender.dtmf.insertDTMF(d, 120, 80);
      $('dtmf').textContent = 'Sent digit ' + d;
    } else {
      alertMsg('This call cannot send tones.');
    }
    return;
  }
  $('address').value += d;
}

// ---- microphone level

function startMeter(stream) {
  stopMeter();
  if (!stream.getAudioTracks().length || !window.AudioContext) return;
  const ctx = new AudioContext();
  const src = ctx.createMediaStreamSource(stream);
  const an = ctx.createAnalyser();
  an.fftSize = 512;
  src.connect(an);
  const buf = new Float32Array(an.fftSize);
  const meter = { ctx, timer: 0 };
  meter.timer = setInterval(() => {
    an.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    const level = Math.min(1, Math.sqrt(sum / buf.length) * 3);
    $('mic').value = level;
    $('mic').textContent = level.toFixed(2);
  }, 100);
  phone.meter = meter;
}

function stopMeter() {
  if (!phone.meter) return;
  clearInterval(phone.meter.timer);
  phone.meter.ctx.close();
  phone.meter = null;
  $('mic').value = 0;
}

// ---- duration

function fmtDuration(s) {
  const m = Math.floor(s / 60), r = s % 60;
  return m + ':' + String(r).padStart(2, '0');
}

function tick() {
  const call = phone.call;
  if (!call || !call.answeredAt) return;
  $('duration').textContent = fmtDuration(Math.round((Date.now() - call.answeredAt) / 1000));
  setTimeout(tick, 1000);
}

// ---- messages

$('msg-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const to = $('msg-to').value.trim() || (phone.call ? phone.call.peer : '');
  const text = $('msg-text').value;
  if (!to || !text) { alertMsg('A message needs a recipient and a text.'); return; }
  if (send({ type: 'message', id: 'm' + (++phone.seq), to, text })) {
    logMessage('To ' + to + ': ' + text);
    $('msg-text').value = '';
  }
});

function logMessage(text) {
  const li = document.createElement('li');
  li.textContent = new Date().toLocaleTimeString() + ' ' + text;
  $('msglog').append(li);
  li.scrollIntoView({ block: 'nearest' });
}

// ---- recent calls (kept in this browser)

function recentKey() { return 'switchboard.recent.' + phone.user; }

function addRecent(r) {
  if (!phone.user) return;
  const list = JSON.parse(localStorage.getItem(recentKey()) || '[]');
  list.unshift({ ...r, at: Date.now() });
  localStorage.setItem(recentKey(), JSON.stringify(list.slice(0, 20)));
  loadRecent();
}

function loadRecent() {
  const ol = $('recent');
  ol.textContent = '';
  const list = JSON.parse(localStorage.getItem(recentKey()) || '[]');
  for (const r of list) {
    const li = document.createElement('li');
    const when = new Date(r.at).toLocaleString();
    const arrow = r.dir === 'in' ? '← ' : '→ ';
    li.append(arrow + r.peer + ' · ' + r.result + (r.secs ? ' · ' + fmtDuration(r.secs) : '') + ' · ' + when + ' ');
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = 'Redial';
    b.setAttribute('aria-label', 'Redial ' + r.peer);
    b.addEventListener('click', () => { $('address').value = r.peer; placeCall(r.peer); });
    li.append(b);
    ol.append(li);
  }
}

// ---- status

function setConn(t) { $('conn').textContent = t; }
function setCallState(t) { $('callstate').textContent = t; }
function alertMsg(t) { $('alert').textContent = t; }

// ---- secure context

// Browsers give a page the microphone only in a secure context (HTTPS, or
// the machine itself). Opened otherwise, the page says so and links to the
// switch's HTTPS port on the same host, which the switch writes into
// <html data-https-port>.
function checkSecure() {
  if (window.isSecureContext && navigator.mediaDevices) return;
  $('insecure').hidden = false;
  const port = document.documentElement.dataset.httpsPort;
  if (!port) {
    $('insecure-nohttps').hidden = false;
    return;
  }
  const u = new URL(location.href);
  u.protocol = 'https:';
  u.port = port;
  const a = $('insecure-link');
  a.href = u.href;
  a.textContent = u.href;
  $('insecure-https').hidden = false;
}

$('video').setAttribute('aria-pressed', String(phone.wantVideo));
checkSecure();
connect();
