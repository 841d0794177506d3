// Registers a user with JsSIP and with SIP.js over SIP over WebSocket
// (RFC 7118), with the libraries' own SIP stacks and digest code — what their
// browser builds run — and Node's ws package standing in for the browser's
// WebSocket. Prints one JSON line per library: {"lib", "ok", "detail"}.
// Usage: node register.mjs WS_URL USER PASSWORD DOMAIN
import { WebSocket } from 'ws';
globalThis.WebSocket = WebSocket;
const [url, user, password, domain] = process.argv.slice(2);
const timeout = (ms) => new Promise((_, rej) => setTimeout(() => rej(new Error('timeout')), ms));

async function jssip() {
  const JsSIP = (await import('jssip')).default;
  const socket = new JsSIP.WebSocketInterface(url);
  const ua = new JsSIP.UA({ sockets: [socket], uri: `sip:${user}@${domain}`, password, register: true, register_expires: 300 });
  const done = new Promise((res) => {
    ua.on('registered', () => res({ ok: true, detail: 'registered' }));
    ua.on('registrationFailed', (e) => res({ ok: false, detail: `registrationFailed: ${e.cause}${e.response ? ' ' + e.response.status_code : ''}` }));
  });
  ua.start();
  try { return await Promise.race([done, timeout(10000)]); } finally { ua.stop(); }
}

async function sipjs() {
  const { UserAgent, Registerer, RegistererState } = await import('sip.js');
  const ua = new UserAgent({ uri: UserAgent.makeURI(`sip:${user}@${domain}`), authorizationUsername: user, authorizationPassword: password,
    transportOptions: { server: url }, logLevel: 'error' });
  await ua.start();
  const reg = new Registerer(ua, { expires: 300 });
  const done = new Promise((res) => {
    reg.stateChange.addListener((s) => { if (s === RegistererState.Registered) res({ ok: true, detail: 'registered' }); });
  });
  try {
    let rejected;
    const refused = new Promise((res) => { rejected = res; });
    await reg.register({ requestDelegate: { onReject: (r) => rejected({ ok: false, detail: 'rejected ' + r.message.statusCode }) } });
    return await Promise.race([done, refused, timeout(10000)]);
  } catch (e) { return { ok: false, detail: String(e.message || e) }; }
  finally { await ua.stop().catch(() => {}); }
}

for (const [lib, f] of [['jssip', jssip], ['sip.js', sipjs]]) {
  let r;
  try { r = await f(); } catch (e) { r = { ok: false, detail: String(e.message || e) }; }
  console.log(JSON.stringify({ lib, ...r }));
}
process.exit(0);
