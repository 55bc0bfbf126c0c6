// `agentgate probe URL`: the remote MCP client transport (transports/remote.c) against real
// peers: server-everything in its Streamable HTTP and legacy SSE modes, agentgate `wrap` over
// HTTPS with a bearer token, and small node HTTP servers for the failures no real server
// produces on demand (an HTML 500, a reply over max_frame, a stream cut before its response).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { BIN, NODE, freePort, makeTmp, runBin, startDaemon, waitFor } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const T = { timeout: 60000 };
const procs = [];
const servers = [];

function tcpAccepts(port) {
    return new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.on('connect', () => {
            s.destroy();
            resolve(true);
        });
        s.on('error', () => resolve(false));
    });
}

/** server-everything in `mode` on a free loopback port: {port, proc}. */
async function startEverything(mode) {
    const port = await freePort();
    const proc = spawn(NODE, [path.join(here, 'everything-http.mjs'), mode, String(port)], {
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    proc.stdout.on('data', (d) => (log += d));
    proc.stderr.on('data', (d) => (log += d));
    procs.push(proc);
    await waitFor(() => tcpAccepts(port), { timeout: 15000, what: `server-everything ${mode}: ${log}` });
    return { port, proc };
}

/** A node HTTP server on a free loopback port with handler(req, res, body): {port, url, hits}. */
async function startHttp(handler) {
    const hits = [];
    const srv = http.createServer((req, res) => {
        let body = '';
        req.on('data', (d) => (body += d));
        req.on('end', () => {
            hits.push({ method: req.method, url: req.url, headers: req.headers, body });
            handler(req, res, body);
        });
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    servers.push(srv);
    const { port } = srv.address();
    return { port, url: `http://127.0.0.1:${port}/mcp`, hits };
}

const INIT_RESULT = {
    protocolVersion: '2025-11-25',
    capabilities: { tools: {} },
    serverInfo: { name: 'tiny', version: '1' },
};

/** A tiny Streamable HTTP server answering initialize and tools/list with JSON, and tools/call
 * (and anything else) with whatever `onCall` does. */
function tinyServer(onCall, { tools = [{ name: 't', inputSchema: { type: 'object' } }] } = {}) {
    return startHttp((req, res, body) => {
        if (req.method !== 'POST') {
            res.writeHead(405).end();
            return;
        }
        const msg = JSON.parse(body);
        const reply = (result) => {
            res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'tiny-1' });
            res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }));
        };
        if (msg.method === 'initialize') return reply(INIT_RESULT);
        if (msg.id === undefined) return res.writeHead(202).end();
        if (msg.method === 'tools/list') return reply({ tools });
        return onCall(req, res, msg);
    });
}

const probe = (args, opts = {}) => runBin(['probe', ...args], { timeout: 20000, ...opts });

function parsed(r) {
    assert.equal(r.code, 0, `probe failed: ${r.stderr}`);
    return JSON.parse(r.stdout);
}

let streamable;
let sse;

before(async () => {
    [streamable, sse] = await Promise.all([startEverything('streamableHttp'), startEverything('sse')]);
});

after(async () => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
    for (const s of servers) s.close();
    servers.forEach((s) => s.closeAllConnections?.());
});

test('probe lists tools and calls echo over Streamable HTTP (server-everything)', T, async () => {
    const url = `http://127.0.0.1:${streamable.port}/mcp`;
    const out = parsed(await probe([url, '--call', 'echo', '--args', '{"message":"hi there"}']));
    assert.equal(out.transport, 'streamable-http');
    assert.equal(out.protocolVersion, '2025-11-25');
    assert.ok(out.serverInfo?.name, 'serverInfo');
    const names = out.tools.map((t) => t.name);
    assert.ok(names.includes('echo'), names.join(','));
    assert.ok(names.length > 5, 'all pages of tools');
    assert.equal(out.result.content[0].text, 'Echo: hi there');
});

test('probe --transport streamable-http refuses to fall back to SSE', T, async () => {
    const r = await probe([`http://127.0.0.1:${sse.port}/sse`, '--transport', 'streamable-http']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /^agentgate probe: upstream answered HTTP 404/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
});

test('probe --transport sse talks legacy HTTP+SSE (server-everything sse mode)', T, async () => {
    const url = `http://127.0.0.1:${sse.port}/sse`;
    const out = parsed(await probe([url, '--transport', 'sse', '--call', 'echo', '--args', '{"message":"old"}']));
    assert.equal(out.transport, 'sse');
    assert.ok(out.tools.some((t) => t.name === 'echo'));
    assert.equal(out.result.content[0].text, 'Echo: old');
});

test('--transport auto picks Streamable HTTP, and falls back to SSE on an SSE-only server', T, async () => {
    const a = parsed(await probe([`http://127.0.0.1:${streamable.port}/mcp`]));
    assert.equal(a.transport, 'streamable-http');
    const b = parsed(await probe([`http://127.0.0.1:${sse.port}/sse`, '--call', 'echo', '--args', '{"message":"fb"}']));
    assert.equal(b.transport, 'sse');
    assert.equal(b.result.content[0].text, 'Echo: fb');
});

test('a dead port fails at once with a clear error and exit 1', T, async () => {
    const port = await freePort();
    const t0 = Date.now();
    const r = await probe([`http://127.0.0.1:${port}/mcp`]);
    assert.equal(r.code, 1);
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
    assert.match(r.stderr, /^agentgate probe: .*(refused|connect)/i);
    assert.equal(r.stdout, '');
});

test('bad usage exits 2', T, async () => {
    assert.equal((await probe([])).code, 2);
    assert.equal((await probe(['ftp://x/'])).code, 2);
    assert.equal((await probe(['http://127.0.0.1:1/', '--transport', 'carrier-pigeon'])).code, 2);
    assert.equal((await probe(['http://127.0.0.1:1/', '--call', 'x', '--args', '[1]'])).code, 2);
});

test('an HTML 500 on initialize: a clear session error', T, async () => {
    const srv = await startHttp((req, res) => {
        res.writeHead(500, { 'content-type': 'text/html' });
        res.end('<html><head><title>500 Internal Server Error</title></head>\n<body>oops</body></html>\n');
    });
    const r = await probe([srv.url]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^agentgate probe: upstream answered HTTP 500: <html><head><title>500 Internal Server Error/);
});

test('an HTML 500 on one call fails that call only, with the first line of the page', T, async () => {
    const srv = await tinyServer((req, res) => {
        res.writeHead(500, { 'content-type': 'text/html' });
        res.end('<!DOCTYPE html>\n<html>broken</html>');
    });
    const r = await probe([srv.url, '--call', 't']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tools\/call failed: upstream answered HTTP 500: <!DOCTYPE html>/);
    // The session went on: initialize, initialized, tools/list, the call, and a DELETE at the end
    // (initialized and tools/list are sent together, so they may arrive in either order).
    const methods = srv.hits.map((h) => (h.method === 'POST' ? JSON.parse(h.body).method : h.method)).filter((m) => m !== 'GET');
    assert.equal(methods[0], 'initialize');
    assert.deepEqual(methods.slice(1, 3).sort(), ['notifications/initialized', 'tools/list']);
    assert.deepEqual(methods.slice(3), ['tools/call', 'DELETE']);
    const del = srv.hits.find((h) => h.method === 'DELETE');
    assert.equal(del.headers['mcp-session-id'], 'tiny-1');
    const list = srv.hits.find((h) => h.method === 'POST' && JSON.parse(h.body).method === 'tools/list');
    assert.equal(list.headers['mcp-session-id'], 'tiny-1');
    assert.equal(list.headers['mcp-protocol-version'], '2025-11-25');
});

test('invalid JSON in a reply fails that call with a clear error', T, async () => {
    const srv = await tinyServer((req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"jsonrpc":"2.0", this is not json');
    });
    const r = await probe([srv.url, '--call', 't']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tools\/call failed: upstream sent invalid JSON/);
});

test('a reply larger than max_frame (4 MiB) is refused with a clear error', T, async () => {
    const big = 'x'.repeat(5 * 1024 * 1024);
    const srv = await tinyServer((req, res, msg) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: big }] } }));
    });
    const r = await probe([srv.url, '--call', 't']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tools\/call failed: upstream reply larger than max_frame \(4194304 bytes\)/);
    // The same over SSE: one event over the limit.
    const srv2 = await tinyServer((req, res, msg) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: big }] } })}\n\n`);
    });
    const r2 = await probe([srv2.url, '--call', 't']);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /tools\/call failed: upstream sent an SSE event larger than max_frame/);
});

test('an SSE reply carries server requests and a notification before the response; probe answers them minimally', T, async () => {
    const srv = await tinyServer((req, res, msg) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}\n\n`);
        res.write(`data: {"jsonrpc":"2.0","id":"s1","method":"ping"}\n\n`);
        res.write(`data: {"jsonrpc":"2.0","id":"s2","method":"elicitation/create","params":{"message":"?","requestedSchema":{"type":"object","properties":{}}}}\n\n`);
        res.write(`data: {"jsonrpc":"2.0","id":"s3","method":"sampling/createMessage","params":{"messages":[],"maxTokens":1}}\n\n`);
        res.write(`data: {"jsonrpc":"2.0","id":"s4","method":"roots/list"}\n\n`);
        setTimeout(() => res.end(`data: ${JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: 'done' }] } })}\n\n`), 100);
    });
    const out = parsed(await probe([srv.url, '--call', 't']));
    assert.equal(out.result.content[0].text, 'done');
    const answers = srv.hits.map((h) => (h.method === 'POST' ? JSON.parse(h.body) : {}));
    const to = (id) => answers.find((m) => m.id === id && !m.method);
    assert.deepEqual(to('s1'), { jsonrpc: '2.0', id: 's1', result: {} });
    assert.deepEqual(to('s2').result, { action: 'decline' });
    assert.equal(to('s3').error.code, -1);
    assert.equal(to('s4').error.code, -32601);
});

test('a JSON array reply (2025-03-26 servers) is split into its messages', T, async () => {
    const srv = await tinyServer((req, res, msg) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify([
            { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'x' } },
            { jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: 'from a batch' }] } },
        ]));
    });
    const out = parsed(await probe([srv.url, '--call', 't']));
    assert.equal(out.result.content[0].text, 'from a batch');
});

test('a tool result with isError: printed, and exit 1', T, async () => {
    const srv = await tinyServer((req, res, msg) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { isError: true, content: [{ type: 'text', text: 'no such thing' }] } }));
    });
    const r = await probe([srv.url, '--call', 't']);
    assert.equal(r.code, 1);
    assert.equal(JSON.parse(r.stdout).result.isError, true);
    assert.match(r.stderr, /tool 't' returned an error: no such thing/);
});

test('401 without OAuth: a clear authorization error; --bearer-env and --header are sent', T, async () => {
    const srv = await startHttp((req, res, body) => {
        if (req.headers.authorization !== 'Bearer s3cret') {
            res.writeHead(401, { 'www-authenticate': 'Bearer realm="x"' }).end();
            return;
        }
        if (req.method !== 'POST') return res.writeHead(405).end();
        const msg = JSON.parse(body);
        if (msg.id === undefined) return res.writeHead(202).end();
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: msg.method === 'initialize' ? INIT_RESULT : { tools: [] } }));
    });
    const r = await probe([srv.url]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /requires authorization \(HTTP 401\)/);
    // 401 is an authorization problem, never a reason to try the legacy SSE transport.
    assert.equal(srv.hits.filter((h) => h.method === 'GET' && h.url === '/mcp').length, 0);
    const hitsBefore = srv.hits.length;
    const ok = parsed(await probe([srv.url, '--bearer-env', 'PROBE_TOKEN', '--header', 'X-Team:core'], { env: { PROBE_TOKEN: 's3cret' } }));
    assert.deepEqual(ok.tools, []);
    assert.ok(srv.hits.slice(hitsBefore).every((h) => h.headers.authorization === 'Bearer s3cret' && h.headers['x-team'] === 'core'));
});

test('--timeout bounds a run whose call is never answered', T, async () => {
    const srv = await tinyServer(() => {}); // the call's request is left hanging
    const t0 = Date.now();
    const r = await probe([srv.url, '--call', 't', '--timeout', '1000']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no answer within 1000 ms \(waiting for the tools\/call result\)/);
    assert.ok(Date.now() - t0 < 4000, `took ${Date.now() - t0} ms`);
});

test('a session that expires (404 on its id) is reported as such', T, async () => {
    const srv = await tinyServer((req, res) => res.writeHead(404).end('no session'));
    const r = await probe([srv.url, '--call', 't']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /session expired/);
});

test('a POST stream that ends before its response is resumed with GET + Last-Event-ID after retry', T, async () => {
    let pending = null;
    let closedAt = 0;
    let resumedAt = 0;
    const srv = await startHttp((req, res, body) => {
        if (req.method === 'GET' && req.headers['last-event-id']) {
            resumedAt = Date.now();
            res.writeHead(200, { 'content-type': 'text/event-stream' });
            res.write(`id: e2\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: pending, result: { content: [{ type: 'text', text: `resumed after ${req.headers['last-event-id']}` }] } })}\n\n`);
            return;
        }
        if (req.method === 'GET') return res.writeHead(405).end();
        if (req.method === 'DELETE') return res.writeHead(200).end();
        const msg = JSON.parse(body);
        const json = (result) => {
            res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 's' });
            res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }));
        };
        if (msg.method === 'initialize') return json(INIT_RESULT);
        if (msg.id === undefined) return res.writeHead(202).end();
        if (msg.method === 'tools/list') return json({ tools: [] });
        pending = msg.id;
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('id: e1\nretry: 300\ndata: \n\n');
        setTimeout(() => {
            closedAt = Date.now();
            res.end();
        }, 50);
    });
    const out = parsed(await probe([srv.url, '--call', 'slow']));
    assert.equal(out.result.content[0].text, 'resumed after e1');
    const waited = resumedAt - closedAt;
    assert.ok(waited >= 250 && waited < 1500, `resumed ${waited} ms after the close (retry: 300)`);
});

/** A tiny legacy HTTP+SSE server: GET /sse sends `endpoint` (what endpointOf(port) returns),
 * then behaves per `mode`: 'ok' answers POSTs on the stream, 'drop' closes the stream at the
 * first POST without answering. */
async function legacyServer(endpointOf, mode = 'ok') {
    let stream = null;
    const srv = await startHttp((req, res, body) => {
        if (req.method === 'GET') {
            res.writeHead(200, { 'content-type': 'text/event-stream' });
            res.write(`event: endpoint\ndata: ${endpointOf(srv.port)}\n\n`);
            stream = res;
            return;
        }
        res.writeHead(202).end('Accepted');
        const msg = JSON.parse(body);
        if (mode === 'drop') return stream.end();
        if (msg.id === undefined) return;
        const result = msg.method === 'initialize' ? INIT_RESULT : { tools: [{ name: 'legacy_tool', inputSchema: { type: 'object' } }] };
        stream.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: msg.id, result })}\n\n`);
    });
    return srv;
}

test('legacy SSE: a relative endpoint works; one on another origin is refused', T, async () => {
    const good = await legacyServer(() => 'messages?session=1');
    const out = parsed(await probe([`http://127.0.0.1:${good.port}/sse`, '--transport', 'sse']));
    assert.deepEqual(out.tools.map((t) => t.name), ['legacy_tool']);
    assert.ok(good.hits.filter((h) => h.method === 'POST').every((h) => h.url === '/messages?session=1'));
    const evil = await legacyServer(() => 'http://evil.example:8080/messages');
    const r = await probe([`http://127.0.0.1:${evil.port}/sse`, '--transport', 'sse']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /legacy SSE endpoint http:\/\/evil\.example:8080\/messages is not on the server's origin/);
    assert.equal(evil.hits.filter((h) => h.method === 'POST').length, 0, 'nothing was posted to the other origin');
    const other = await legacyServer((port) => `http://127.0.0.1:${port + 1}/messages`);
    assert.equal((await probe([`http://127.0.0.1:${other.port}/sse`, '--transport', 'sse'])).code, 1);
});

test('legacy SSE: the stream closing is the end of the session', T, async () => {
    const srv = await legacyServer(() => '/m', 'drop');
    const t0 = Date.now();
    const r = await probe([`http://127.0.0.1:${srv.port}/sse`, '--transport', 'sse']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /legacy SSE stream closed by the server/);
    assert.ok(Date.now() - t0 < 5000);
});

function hasOpenssl() {
    try {
        execFileSync('openssl', ['version'], { stdio: 'ignore' });
        return true;
    } catch {
        return false;
    }
}

test('HTTPS with a self-signed certificate: refused without --ca-file, accepted with it', { ...T, skip: !hasOpenssl() && 'no openssl' }, async () => {
    const dir = makeTmp('probe-tls');
    const cert = path.join(dir, 'c.pem');
    const key = path.join(dir, 'k.pem');
    execFileSync('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-days', '1',
        '-keyout', key, '-out', cert,
    ], { stdio: 'ignore' });
    const token = 'probe-tls-token-0123456789';
    const daemon = await startDaemon({
        tag: 'probe-tls',
        argv: ({ port, stateDir }) => [
            'wrap', '--listen', `127.0.0.1:${port}`, '--token', token, '--state-dir', stateDir,
            '--tls-cert', cert, '--tls-key', key, '--', BIN, 'demo-server',
        ],
    });
    try {
        const url = `https://127.0.0.1:${daemon.port}/mcp`;
        const env = { PROBE_TOKEN: token };
        const bad = await probe([url, '--bearer-env', 'PROBE_TOKEN'], { env });
        assert.equal(bad.code, 1);
        assert.match(bad.stderr, /certificate|SSL|TLS/i);
        const good = parsed(await probe([url, '--bearer-env', 'PROBE_TOKEN', '--ca-file', cert, '--call', 'echo', '--args', '{"message":"tls"}'], { env }));
        assert.equal(good.transport, 'streamable-http');
        assert.ok(good.tools.some((t) => t.name === 'echo'));
        assert.ok(JSON.stringify(good.result).includes('tls'));
    } finally {
        daemon.kill();
    }
    assert.ok(fs.existsSync(cert));
});
