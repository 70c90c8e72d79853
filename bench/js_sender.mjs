// Drive the official JS SDK's createWebhookEmitter (@adcp/sdk 6.11) like `adcp-webhook bench`
// drives ours.
//
// Usage: ADCP_JS_DIR=<dir with node_modules/@adcp/sdk> node bench/js_sender.mjs \
//          --url URL [-n N] [-c C] [--alg ed25519|es256]
//
// Uses the emitter's default fetch (globalThis.fetch, keep-alive, no SSRF pinning) and one
// attempt per webhook. Prints one JSON line with the same fields as `adcp-webhook bench`.

import { createRequire } from 'node:module';
import { generateKeyPairSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import path from 'node:path';

const dir = process.env.ADCP_JS_DIR;
if (!dir) {
  console.error('set ADCP_JS_DIR to a directory where `npm install @adcp/sdk@6.11` ran');
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(dir), 'package.json'));
const { createWebhookEmitter } = require('@adcp/sdk/server');
const sdkVersion = require('@adcp/sdk/package.json').version;

const args = { url: null, n: 1000, c: 32, alg: 'ed25519' };
for (let i = 2; i < process.argv.length; i += 2) {
  const [flag, value] = [process.argv[i], process.argv[i + 1]];
  if (flag === '--url') args.url = value;
  else if (flag === '-n') args.n = Number(value);
  else if (flag === '-c') args.c = Number(value);
  else if (flag === '--alg') args.alg = value;
  else {
    console.error(`unknown flag ${flag}`);
    process.exit(2);
  }
}
if (!args.url) {
  console.error('pass --url');
  process.exit(2);
}

const alg = args.alg === 'es256' ? 'ecdsa-p256-sha256' : 'ed25519';
const { privateKey } =
  alg === 'ed25519'
    ? generateKeyPairSync('ed25519')
    : generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: 'bench-key',
  alg: alg === 'ed25519' ? 'EdDSA' : 'ES256',
  use: 'sig',
  key_ops: ['sign'],
  adcp_use: 'webhook-signing',
};
const emitter = createWebhookEmitter({
  signerKey: { keyid: 'bench-key', alg, privateKey: jwk },
  retries: { maxAttempts: 1 },
});

const pad = (i) => String(i).padStart(8, '0');
const payload = (i) => ({
  task_id: `task_${pad(i)}`,
  task_type: 'create_media_buy',
  status: 'completed',
  timestamp: new Date().toISOString(),
  message: 'Media buy created: 2 packages, creatives due 2026-01-30',
  context_id: 'ctx_7f3a9c2e',
  operation_id: `op_${pad(i)}`,
  protocol: 'media-buy',
  result: {
    media_buy_id: `mb_${pad(i)}`,
    buyer_ref: 'nike_q1_campaign_2026',
    creative_deadline: '2026-01-30T23:59:59Z',
    packages: [
      { package_id: 'pkg_ctv_001', buyer_ref: 'nike_ctv_sports', budget: 60000 },
      { package_id: 'pkg_audio_001', buyer_ref: 'nike_audio_drive', budget: 40000 },
    ],
  },
});

let next = 0;
let ok = 0;
let failed = 0;
let firstError = null;
const latencies = [];

async function worker() {
  while (next < args.n) {
    const i = next++;
    const t0 = performance.now();
    try {
      const r = await emitter.emit({ url: args.url, payload: payload(i), operation_id: `op_${pad(i)}` });
      if (r.delivered) ok++;
      else {
        failed++;
        firstError ??= `status ${r.final_status}: ${r.errors.join('; ')}`;
      }
    } catch (e) {
      failed++;
      firstError ??= String(e);
    }
    latencies.push(performance.now() - t0);
  }
}

const started = performance.now();
await Promise.all(Array.from({ length: Math.min(args.c, args.n) }, worker));
const seconds = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p) => {
  if (!latencies.length) return null;
  const rank = Math.min(latencies.length, Math.max(1, Math.ceil((p / 100) * latencies.length)));
  return Math.round(latencies[rank - 1] * 1000) / 1000;
};
const round3 = (x) => Math.round(x * 1000) / 1000;
console.log(
  JSON.stringify({
    impl: `@adcp/sdk ${sdkVersion} (node ${process.versions.node})`,
    mode: 'signed',
    alg,
    n: args.n,
    concurrency: args.c,
    ok,
    failed,
    seconds: round3(seconds),
    per_sec: round3(ok / seconds),
    p50_ms: pct(50),
    p99_ms: pct(99),
    peak_rss_mb: round3(process.resourceUsage().maxRSS / 1024),
    first_error: firstError,
  }),
);
process.exit(failed === 0 ? 0 : 1);
