// Drives headless Chromium for browser_test.go: one JSON request per line on
// stdin, one JSON reply per line on stdout ({id, ok, result} or {id, ok:
// false, error}); diagnostics go to stderr. It runs inside the test's network
// namespace (ip netns exec), like the switch and baresip, so Chromium sees
// only lo.
//
// Each "browser" is its own Chromium (launchPersistentContext), because the
// fake microphone (a WAV tone) is a launch flag and every user needs its own.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { build } from 'esbuild';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const browsers = new Map(); // name -> {ctx, page}
const servers = []; // HTTPS servers of test pages (serveJsSIP)

function log(...args) {
  process.stderr.write('[driver] ' + args.join(' ') + '\n');
}

// Flags from INTEROP.md: headless in a namespace with only lo.
function flags(tone) {
  return [
    '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-quic', '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream', `--use-file-for-fake-audio-capture=${tone}`,
    '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection',
    '--disable-features=WebRtcHideLocalIpsWithMdns',
  ];
}

function page(name) {
  const b = browsers.get(name);
  if (!b) throw new Error(`no browser ${name}`);
  return b.page;
}

// A phone-sized viewport: the web phone must work there.
const viewport = { width: 390, height: 844 };

const ops = {
  // args: more Chromium flags, e.g. --ignore-certificate-errors-spki-list.
  async launch({ name, tone, url, args }) {
    const dir = mkdtempSync(join(tmpdir(), `chromium-${name}-`));
    const ctx = await chromium.launchPersistentContext(dir, { executablePath, headless: true, args: [...flags(tone), ...(args || [])], viewport });
    const p = ctx.pages()[0] || await ctx.newPage();
    p.on('console', (m) => log(`${name} console.${m.type()}: ${m.text()}`));
    p.on('pageerror', (e) => log(`${name} page error: ${e.message}`));
    browsers.set(name, { ctx, page: p });
    if (url) await p.goto(url);
    return true;
  },
  async goto({ name, url }) {
    await page(name).goto(url);
    return true;
  },
  // Sign in through the form, by the controls' accessible names.
  async signin({ name, user, password }) {
    const p = page(name);
    await p.getByLabel('User name').fill(user);
    await p.getByLabel('Password').fill(password);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.getByText('Signed in as ' + user).waitFor({ timeout: 15000 });
    return true;
  },
  async fill({ name, label, value }) {
    await page(name).getByLabel(label, { exact: true }).fill(value);
    return true;
  },
  async click({ name, button }) {
    await page(name).getByRole('button', { name: button, exact: true }).click({ timeout: 15000 });
    return true;
  },
  // Waits until the call state line (role=status) contains text.
  async waitState({ name, text, timeout }) {
    const p = page(name);
    await p.waitForFunction((t) => document.getElementById('callstate').textContent.includes(t), text, { timeout: timeout || 20000 });
    return await p.evaluate(() => document.getElementById('callstate').textContent);
  },
  async waitText({ name, text, timeout }) {
    await page(name).getByText(text).first().waitFor({ timeout: timeout || 20000 });
    return true;
  },
  async text({ name, id }) {
    return await page(name).evaluate((i) => document.getElementById(i).textContent, id);
  },
  // getStats of the current call: inbound/outbound RTP per kind and the
  // type of the local candidate in use.
  async stats({ name }) {
    return await page(name).evaluate(async () => {
      const call = window.phone && window.phone.call;
      if (!call || !call.pc) return null;
      const report = await call.pc.getStats();
      const out = { connection: call.pc.connectionState, audioIn: null, videoIn: null, audioOut: null, videoOut: null, localCandidate: null };
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
        if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
      });
      if (!pairId) {
        report.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pairId = s.id; });
      }
      const pair = pairId && report.get(pairId);
      const local = pair && report.get(pair.localCandidateId);
      if (local) out.localCandidate = { type: local.candidateType, address: local.address, port: local.port, relayProtocol: local.relayProtocol };
      if (out.audioIn && out.audioIn.codecId) {
        const c = report.get(out.audioIn.codecId);
        out.audioCodec = c && c.mimeType;
      }
      return out;
    });
  },
  // By role and accessible name (a regular expression, pattern): the
  // text of the first match, the names of every match, a click on the
  // first match (the operations console's tests).
  async roleText({ name, role, pattern, timeout }) {
    const l = page(name).getByRole(role, { name: new RegExp(pattern) }).first();
    await l.waitFor({ timeout: timeout || 20000 });
    return await l.textContent();
  },
  async roleNames({ name, role, pattern }) {
    const out = [];
    for (const l of await page(name).getByRole(role, { name: new RegExp(pattern) }).all()) {
      out.push(await l.getAttribute('aria-label') || await l.textContent());
    }
    return out;
  },
  async clickRole({ name, role, pattern, timeout }) {
    await page(name).getByRole(role, { name: new RegExp(pattern) }).first().click({ timeout: timeout || 15000 });
    return true;
  },
  async viewport({ name, width, height }) {
    await page(name).setViewportSize({ width, height });
    return true;
  },
  async screenshot({ name, path }) {
    await page(name).screenshot({ path, fullPage: true });
    return path;
  },
  async eval({ name, expr }) {
    return await page(name).evaluate(expr);
  },
  // Serves a page with JsSIP (bundled here by esbuild: the npm package has
  // no browser build) over HTTPS on host:port (0: any free port) with the
  // given PEM files; returns the page's origin.
  async serveJsSIP({ host, port, cert, key }) {
    const out = await build({
      stdin: { contents: "import JsSIP from 'jssip'; window.JsSIP = JsSIP;", resolveDir: process.cwd() },
      bundle: true, write: false, format: 'iife', platform: 'browser', logLevel: 'error',
    });
    const js = out.outputFiles[0].contents;
    const html = '<!doctype html><meta charset="utf-8"><title>JsSIP</title><script src="/jssip.js"></script><p>JsSIP test page</p>';
    const srv = createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
      if (req.url === '/jssip.js') {
        res.writeHead(200, { 'Content-Type': 'text/javascript' });
        res.end(js);
      } else if (req.url === '/') {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end(html);
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port || 0, host, resolve);
    });
    servers.push(srv);
    return `https://${host}:${srv.address().port}`;
  },
  // Registers user with JsSIP in the page (a serveJsSIP page) over the
  // WebSocket url; {ok, detail}.
  async jssipRegister({ name, url, user, password, domain }) {
    return await page(name).evaluate(async ({ url, user, password, domain }) => {
      const ua = new window.JsSIP.UA({ sockets: [new window.JsSIP.WebSocketInterface(url)], uri: `sip:${user}@${domain}`,
        password, register: true, register_expires: 300 });
      const r = await new Promise((res) => {
        const timer = setTimeout(() => res({ ok: false, detail: 'no registration within 15s' }), 15000);
        const done = (v) => { clearTimeout(timer); res(v); };
        ua.on('registered', (e) => done({ ok: true, detail: 'registered: ' + e.response.status_code }));
        ua.on('registrationFailed', (e) => done({ ok: false, detail: `registrationFailed: ${e.cause}${e.response ? ' ' + e.response.status_code : ''}` }));
        ua.start();
      });
      ua.stop();
      return r;
    }, { url, user, password, domain });
  },
  async close({ name }) {
    const b = browsers.get(name);
    if (b) {
      browsers.delete(name);
      await b.ctx.close();
    }
    return true;
  },
};

async function handle(line) {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    return { id: null, ok: false, error: 'bad request: ' + e.message };
  }
  const op = ops[req.op];
  if (!op) return { id: req.id, ok: false, error: 'unknown op ' + req.op };
  try {
    return { id: req.id, ok: true, result: await op(req) };
  } catch (e) {
    return { id: req.id, ok: false, error: String(e && e.stack || e) };
  }
}

const rl = createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  if (!line.trim()) return;
  const reply = await handle(line);
  process.stdout.write(JSON.stringify(reply) + '\n');
});
rl.on('close', async () => {
  for (const name of [...browsers.keys()]) {
    try { await ops.close({ name }); } catch (e) { log('close', name, e.message); }
  }
  for (const srv of servers) srv.close();
  process.exit(0);
});
log('ready');
