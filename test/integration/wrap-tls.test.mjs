// `agentgate wrap --tls-cert/--tls-key`: the wrapped server over HTTPS (mbedTLS), driven by the
// MCP SDK over undici with the test's own CA (the self-signed certificate) pinned.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Agent, fetch as undiciFetch } from 'undici';

import { BIN, IS_GATEWAY, assertCleanStop, freePort, makeTmp, resultText, runBin, startDaemon, waitFor, withLog } from './harness.mjs';

function hasOpenssl() {
    try {
        execFileSync('openssl', ['version'], { stdio: 'ignore' });
        return true;
    } catch {
        return false;
    }
}

const skip = (!IS_GATEWAY && 'gateway only') || (!hasOpenssl() && 'openssl is not installed (apt-get install openssl)');
const T = { timeout: 30000, skip };
const TOKEN = 'tls-token-0123456789';
let daemon;
let certPem;
let certFile;
let keyFile;
let agent;
const clients = [];
const wrap = (fn) => withLog(() => daemon, fn);

before(async () => {
    if (skip) return;
    const dir = makeTmp('wrap-tls-cert');
    certFile = path.join(dir, 'c.pem');
    keyFile = path.join(dir, 'k.pem');
    execFileSync('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-days', '1',
        '-keyout', keyFile, '-out', certFile,
    ], { stdio: 'ignore' });
    certPem = fs.readFileSync(certFile, 'utf8');
    agent = new Agent({ connect: { ca: certPem } });
    daemon = await startDaemon({
        tag: 'wrap-tls',
        argv: ({ port, stateDir }) => [
            'wrap', '--listen', `127.0.0.1:${port}`, '--token', TOKEN, '--state-dir', stateDir,
            '--tls-cert', certFile, '--tls-key', keyFile, '--', BIN, 'demo-server',
        ],
    });
});

after(async () => {
    for (const c of clients) await c.close().catch(() => {});
    daemon?.kill();
    await agent?.close().catch(() => {});
});

const httpsUrl = () => `https://127.0.0.1:${daemon.port}/mcp`;

async function connect() {
    const client = new Client({ name: 'wrap-tls-test', version: '1' }, { capabilities: {} });
    const transport = new StreamableHTTPClientTransport(new URL(httpsUrl()), {
        requestInit: { headers: { Authorization: `Bearer ${TOKEN}` } },
        fetch: (url, init) => undiciFetch(url, { ...init, dispatcher: agent }),
    });
    await client.connect(transport);
    clients.push(client);
    return client;
}

test('wrap over HTTPS: the banner shows https, the SDK lists tools and calls echo', T, wrap(async () => {
    // The banner follows the listen, so it may reach us a moment after the port accepts.
    const url = new RegExp(`https://127\\.0\\.0\\.1:${daemon.port}/mcp`);
    await waitFor(() => url.test(daemon.stdout), { timeout: 5000, what: `the https URL in the banner: ${daemon.stdout}` });
    const c = await connect();
    const names = (await c.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('echo'), names.join(','));
    assert.equal(resultText(await c.callTool({ name: 'echo', arguments: { message: 'over tls' } })), 'over tls');
    // A second call on the same (keep-alive) connection.
    assert.equal(resultText(await c.callTool({ name: 'echo', arguments: { message: 'again' } })), 'again');
}));

test('a legacy HTTP+SSE client works over HTTPS (a long-lived chunked stream)', T, wrap(async () => {
    const auth = { Authorization: `Bearer ${TOKEN}` };
    const tlsFetch = (url, init) => undiciFetch(url, { ...init, headers: { ...(init?.headers || {}), ...auth }, dispatcher: agent });
    const client = new Client({ name: 'wrap-tls-sse', version: '1' }, { capabilities: {} });
    const transport = new SSEClientTransport(new URL(`https://127.0.0.1:${daemon.port}/sse`), {
        requestInit: { headers: auth },
        fetch: tlsFetch,
        eventSourceInit: { fetch: tlsFetch },
    });
    await client.connect(transport);
    clients.push(client);
    assert.equal(resultText(await client.callTool({ name: 'echo', arguments: { message: 'legacy tls' } })), 'legacy tls');
}));

test('node:https verifies the certificate; no token gives 401 over TLS', T, wrap(async () => {
    const res = await new Promise((resolve, reject) => {
        const req = https.request({
            host: '127.0.0.1', port: daemon.port, path: '/mcp', method: 'POST', ca: certPem,
            headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        }, (r) => {
            const proto = r.socket.getProtocol();
            r.resume();
            r.on('end', () => resolve({ status: r.statusCode, proto }));
        });
        req.on('error', reject);
        req.end('{"jsonrpc":"2.0","id":1,"method":"ping"}');
    });
    assert.equal(res.status, 401);
    assert.equal(res.proto, 'TLSv1.2');
    // A client that does not trust the certificate is refused by the client side.
    await assert.rejects(undiciFetch(httpsUrl(), { method: 'POST', body: '{}' }), /fetch failed/);
}));

test('plain http:// on the TLS port fails; the daemon keeps serving', T, wrap(async () => {
    await assert.rejects(fetch(`http://127.0.0.1:${daemon.port}/mcp`, {
        method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: '{"jsonrpc":"2.0","id":1,"method":"ping"}', signal: AbortSignal.timeout(5000),
    }));
    // Garbage bytes, then an abrupt close in the middle of a handshake.
    await new Promise((resolve) => {
        const s = net.connect({ port: daemon.port, host: '127.0.0.1' }, () => s.end('\x16\x03\x01\x02\x00garbage'));
        s.on('close', resolve);
        s.on('error', resolve);
        s.resume();
    });
    const c = await connect();
    assert.equal(resultText(await c.callTool({ name: 'echo', arguments: { message: 'still here' } })), 'still here');
}));

test('--tls-cert without --tls-key and a missing certificate are refused', T, async () => {
    const one = await runBin(['wrap', '--tls-cert', certFile, '--', BIN, 'demo-server']);
    assert.equal(one.code, 2);
    assert.match(one.stderr, /--tls-cert and --tls-key go together/);
    const dir = makeTmp('wrap-tls-bad');
    const bad = await runBin(['wrap', '--listen', `127.0.0.1:${await freePort()}`, '--state-dir', path.join(dir, 'state'),
        '--tls-cert', path.join(dir, 'nope.pem'), '--tls-key', keyFile, '--', BIN, 'demo-server']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /cannot load the certificate .*nope\.pem/);
});

test('wrap over TLS stops cleanly on SIGTERM', T, wrap(async () => {
    for (const c of clients.splice(0)) await c.close().catch(() => {});
    await assertCleanStop(assert, daemon);
}));
