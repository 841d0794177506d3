// Drives headless Chromium for sipclients_test.go, like driver.mjs: one JSON
// request per line on stdin, one JSON reply per line on stdout ({id, ok,
// result} or {id, ok: false, error}); diagnostics go to stderr. It runs inside
// the test's network namespace, so Chromium sees only lo.
//
// Unlike driver.mjs there is one Chromium for every user: each user is a
// browser context of its own (its own cookies and storage) with one page.
// The JsSIP and SIP.js pages make their microphone a WebAudio oscillator, so
// the launch flag's fake microphone file (a WAV tone) is only the web
// phone's. Every page gets pages/sipclients.js (window.t) as an init script.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { build } from 'esbuild';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const helper = readFileSync(new URL('./pages/sipclients.js', import.meta.url), 'utf8');
let browser = null;
const users = new Map(); // name -> {ctx, page}
const servers = [];

function log(...args) {
  process.stderr.write('[sipclients] ' + args.join(' ') + '\n');
}

// Flags from INTEROP.md: headless in a namespace with only lo; no
// throttling of pages that are not in front (every user is one).
function flags(tone) {
  return [
    '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-quic', '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream', `--use-file-for-fake-audio-capture=${tone}`,
    '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection',
    '--disable-features=WebRtcHideLocalIpsWithMdns', '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows',
  ];
}

function page(name) {
  const u = users.get(name);
  if (!u) throw new Error(`no user ${name}`);
  return u.page;
}

const ops = {
  // Serves the test page (JsSIP and SIP.js bundled by esbuild: the jssip
  // package has no browser build) over plain HTTP on host:port (0: any free
  // port); returns the page's origin.
  async serve({ host, port }) {
    const out = await build({
      stdin: { contents: "import JsSIP from 'jssip'; import * as SIP from 'sip.js'; window.JsSIP = JsSIP; window.SIP = SIP;", resolveDir: process.cwd() },
      bundle: true, write: false, format: 'iife', platform: 'browser', logLevel: 'error',
    });
    const js = out.outputFiles[0].contents;
    const html = '<!doctype html><meta charset="utf-8"><title>SIP clients</title><script src="/sip.js"></script><p>JsSIP and SIP.js test page</p>';
    const srv = createServer((req, res) => {
      if (req.url === '/sip.js') {
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
    return `http://${host}:${srv.address().port}`;
  },
  async launch({ tone, args }) {
    browser = await chromium.launch({ executablePath, headless: true, args: [...flags(tone), ...(args || [])] });
    return browser.version();
  },
  // A new user: a context of its own with one page at url.
  async open({ name, url }) {
    const ctx = await browser.newContext({ viewport: { width: 390, height: 844 } });
    await ctx.addInitScript({ content: helper });
    const p = await ctx.newPage();
    p.on('console', (m) => { if (m.type() !== 'debug') log(`${name} console.${m.type()}: ${m.text()}`); });
    p.on('pageerror', (e) => log(`${name} page error: ${e.message}`));
    users.set(name, { ctx, page: p });
    await p.goto(url);
    return true;
  },
  // Runs window.t[fn](arg) in the user's page.
  async t({ name, fn, arg }) {
    return await page(name).evaluate(([f, a]) => window.t[f](a), [fn, arg || {}]);
  },
  // The web phone's controls, as driver.mjs drives them.
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
  async click({ name, button, timeout }) {
    await page(name).getByRole('button', { name: button, exact: true }).click({ timeout: timeout || 15000 });
    return true;
  },
  async waitState({ name, text, timeout }) {
    const p = page(name);
    await p.waitForFunction((s) => document.getElementById('callstate').textContent.includes(s), text, { timeout: timeout || 20000 });
    return await p.evaluate(() => document.getElementById('callstate').textContent);
  },
  async waitText({ name, text, timeout }) {
    await page(name).getByText(text).first().waitFor({ timeout: timeout || 20000 });
    return true;
  },
  async screenshot({ name, path }) {
    await page(name).screenshot({ path, fullPage: true });
    return path;
  },
  async close({ name }) {
    const u = users.get(name);
    if (u) {
      users.delete(name);
      await u.ctx.close();
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
  for (const name of [...users.keys()]) {
    try { await ops.close({ name }); } catch (e) { log('close', name, e.message); }
  }
  if (browser) await browser.close().catch((e) => log('browser close', e.message));
  for (const srv of servers) srv.close();
  process.exit(0);
});
log('ready');
