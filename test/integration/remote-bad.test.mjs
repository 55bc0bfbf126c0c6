// Remote upstreams that misbehave, next to ones that do not: an HTML 500 page, invalid JSON, a
// reply over max_frame, an SSE reply that stalls, a TLS certificate that does not verify (and
// the same server trusted through ca_file). Each gets a clear error and the daemon keeps
// serving the others. Then scale-out: an agentgate federating a second agentgate (`wrap` over
// HTTPS with a bearer token) with sampling and progress crossing both hops.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { CallToolResultSchema, CreateMessageRequestSchema, ListToolsResultSchema } from '@modelcontextprotocol/sdk/types.js';

import {
    BIN,
    EVERYTHING_JS,
    IS_GATEWAY,
    NODE,
    assertCleanStop,
    demoSection,
    makeTmp,
    resultText,
    testKit,
    unixFetch,
    waitFor,
} from './harness.mjs';

function hasOpenssl() {
    try {
        execFileSync('openssl', ['version'], { stdio: 'ignore' });
        return true;
    } catch {
        return false;
    }
}

const skip = (!IS_GATEWAY && 'gateway only') || (!hasOpenssl() && 'openssl is not installed');
const T = { timeout: 60000, skip };
const kit = testKit('remote-bad');
const { wrap } = kit;
const servers = [];
let certFile;
let keyFile;

async function toolNames(c) {
    const names = [];
    let cursor;
    let pages = 0;
    do {
        const r = await c.client.request({ method: 'tools/list', params: cursor ? { cursor } : {} }, ListToolsResultSchema);
        names.push(...r.tools.map((t) => t.name));
        cursor = r.nextCursor;
    } while (cursor && ++pages < 20);
    return names;
}

async function status(d) {
    const f = unixFetch(d.socket);
    try {
        return await (await f('http://localhost/agentgate/status')).json();
    } finally {
        await f.close?.();
    }
}

/**
 * A minimal Streamable HTTP server on 127.0.0.1 (http, or https with the test certificate):
 * initialize, notifications (202) and tools/list (one tool, `boom`) are answered properly;
 * tools/call goes to onCall(req, res, msg).
 */
async function tinyServer(onCall, { tls = false } = {}) {
    const handler = (req, res) => {
        let body = '';
        req.on('data', (d) => (body += d));
        req.on('end', () => {
            if (req.method !== 'POST') {
                res.writeHead(405).end();
                return;
            }
            const msg = JSON.parse(body);
            const reply = (result) => {
                res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'tiny-1' });
                res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }));
            };
            if (msg.method === 'initialize')
                return reply({ protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'tiny', version: '1' } });
            if (msg.id === undefined) return res.writeHead(202).end();
            if (msg.method === 'tools/list') return reply({ tools: [{ name: 'boom', inputSchema: { type: 'object' } }] });
            return onCall(req, res, msg);
        });
    };
    const srv = tls ? https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) }, handler) : http.createServer(handler);
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    servers.push(srv);
    return srv.address().port;
}

const okCall = (res, msg, text) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text }] } }));
};

let d;
let forgetfulInits = 0;

before(async () => {
    if (skip) return;
    const dir = makeTmp('remote-bad-cert');
    certFile = path.join(dir, 'c.pem');
    keyFile = path.join(dir, 'k.pem');
    execFileSync('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-days', '1',
        '-keyout', keyFile, '-out', certFile,
    ], { stdio: 'ignore' });
    const html = await tinyServer((req, res) => {
        res.writeHead(500, { 'content-type': 'text/html' });
        res.end('<html><body><h1>Internal Server Error</h1><p>nginx</p></body></html>');
    });
    const badjson = await tinyServer((req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"jsonrpc":"2.0","id":');
    });
    const big = await tinyServer((req, res, msg) => okCall(res, msg, 'x'.repeat(200 * 1024)));
    const stall = await tinyServer((req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(': opened\n\n'); // then nothing, ever
    });
    const good = await tinyServer((req, res, msg) => okCall(res, msg, 'good answer'));
    // Forgets every session at once: each request after initialize gets 404.
    const forgetful = http.createServer((req, res) => {
        let body = '';
        req.on('data', (x) => (body += x));
        req.on('end', () => {
            const msg = req.method === 'POST' ? JSON.parse(body) : {};
            if (msg.method === 'initialize') {
                forgetfulInits++;
                res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': `s${forgetfulInits}` });
                res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'forgetful', version: '1' } } }));
                return;
            }
            res.writeHead(404).end('no such session');
        });
    });
    await new Promise((r) => forgetful.listen(0, '127.0.0.1', r));
    servers.push(forgetful);
    const tlsPort = await tinyServer((req, res, msg) => okCall(res, msg, 'over tls'), { tls: true });
    const config =
        '[gateway]\nlog_level = debug\n\n' +
        demoSection('demo') +
        `\n[server.html]\nurl = http://127.0.0.1:${html}/mcp\n` +
        `\n[server.badjson]\nurl = http://127.0.0.1:${badjson}/mcp\n` +
        `\n[server.big]\nurl = http://127.0.0.1:${big}/mcp\nmax_frame = 64KiB\n` +
        `\n[server.stall]\nurl = http://127.0.0.1:${stall}/mcp\nrequest_timeout = 1500ms\n` +
        `\n[server.good]\nurl = http://127.0.0.1:${good}/mcp\ntransport = streamable-http\n` +
        `\n[server.forgetful]\nurl = http://127.0.0.1:${forgetful.address().port}/mcp\n` +
        `\n[server.untrusted]\nurl = https://127.0.0.1:${tlsPort}/mcp\n` +
        `\n[server.trusted]\nurl = https://127.0.0.1:${tlsPort}/mcp\nca_file = ${certFile}\n`;
    d = await kit.start({ config });
    const c = await kit.client(d, { name: 'warmup' });
    await waitFor(async () => {
        const names = await toolNames(c);
        return ['demo__echo', 'html__boom', 'badjson__boom', 'big__boom', 'stall__boom', 'good__boom', 'trusted__boom'].every((n) => names.includes(n));
    }, { timeout: 20000, interval: 100, what: 'every sound server listed' });
});

after(async () => {
    await kit.cleanup();
    for (const s of servers) {
        s.closeAllConnections?.();
        s.close();
    }
});

async function stillServing(c) {
    assert.equal(resultText(await c.client.callTool({ name: 'demo__echo', arguments: { message: 'still here' } })), 'still here');
    assert.equal(resultText(await c.client.callTool({ name: 'good__boom', arguments: {} })), 'good answer');
}

test('an HTML 500 page: a clear error for that call, the server stays, the others serve', T, wrap(async () => {
    const c = await kit.client(d);
    await assert.rejects(c.client.callTool({ name: 'html__boom', arguments: {} }), (e) => {
        assert.match(e.message, /upstream answered HTTP 500: <html><body><h1>Internal Server Error/);
        return true;
    });
    assert.ok((await toolNames(c)).includes('html__boom'), 'one bad reply does not take the server away');
    await stillServing(c);
}));

test('invalid JSON in a reply: a clear error', T, wrap(async () => {
    const c = await kit.client(d);
    await assert.rejects(c.client.callTool({ name: 'badjson__boom', arguments: {} }), /upstream sent invalid JSON \(HTTP 200\)/);
    await stillServing(c);
}));

test('a reply over max_frame: a clear error, and memory stays bounded', T, wrap(async () => {
    const c = await kit.client(d);
    const before = (await status(d)).memory.live_bytes;
    await assert.rejects(c.client.callTool({ name: 'big__boom', arguments: {} }), /larger than max_frame \(65536 bytes\)/);
    const afterBytes = (await status(d)).memory.live_bytes;
    assert.ok(afterBytes - before < 150 * 1024, `the daemon grew by ${afterBytes - before} bytes`);
    await stillServing(c);
}));

test('an SSE reply that stalls: the call ends at request_timeout with a clear error', T, wrap(async () => {
    const c = await kit.client(d);
    const t0 = Date.now();
    await assert.rejects(c.client.callTool({ name: 'stall__boom', arguments: {} }, undefined, { timeout: 10000 }), /server 'stall' did not answer in time/);
    const ms = Date.now() - t0;
    assert.ok(ms >= 1400 && ms < 4000, `ended after ${ms} ms`);
    await stillServing(c);
}));

test('a certificate that does not verify: the server is unavailable with the reason; ca_file trusts it', T, wrap(async () => {
    const c = await kit.client(d);
    const names = await toolNames(c);
    assert.ok(!names.some((n) => n.startsWith('untrusted__')), 'the untrusted server is not listed');
    assert.ok(names.includes('trusted__boom'));
    assert.equal(resultText(await c.client.callTool({ name: 'trusted__boom', arguments: {} })), 'over tls');
    await assert.rejects(c.client.callTool({ name: 'untrusted__boom', arguments: {} }), /server 'untrusted' is unavailable: .*TLS certificate of 127\.0\.0\.1:\d+ did not verify/);
    const st = (await status(d)).servers.find((s) => s.name === 'untrusted');
    assert.match(st.last_error, /did not verify/);
    assert.notEqual(st.state, 'ready');
    await stillServing(c);
}));

test('a server that forgets every session at once backs off instead of looping', T, wrap(async () => {
    const c = await kit.client(d);
    const n0 = forgetfulInits;
    await new Promise((r) => setTimeout(r, 2000));
    const n = forgetfulInits - n0;
    assert.ok(n <= 6, `${n} new sessions in 2 s`);
    const st = (await status(d)).servers.find((s) => s.name === 'forgetful');
    assert.notEqual(st.state, 'ready');
    assert.match(st.last_error ?? '', /session expired/);
    assert.ok(!(await toolNames(c)).some((x) => x.startsWith('forgetful__')));
    await stillServing(c);
}));

test('the daemon with every kind of bad upstream stops cleanly', T, wrap(async () => {
    await kit.closeClients();
    await assertCleanStop(assert, d);
}));

// ---------------------------------------------------------------- scale-out

const TEAM_TOKEN = 'team-gateway-token-5f0c2a';

test('scale-out: agentgate federates a second agentgate over HTTPS with a bearer; sampling and progress cross both hops', T, wrap(async () => {
    // The team gateway: `agentgate wrap` of server-everything (stdio) over TLS with a token.
    const team = await kit.start({
        tag: 'team',
        argv: ({ port, stateDir }) => [
            'wrap', '--listen', `127.0.0.1:${port}`, '--token', TEAM_TOKEN, '--state-dir', stateDir,
            '--tls-cert', certFile, '--tls-key', keyFile, '--', NODE, EVERYTHING_JS, 'stdio',
        ],
    });
    const config =
        '[gateway]\nlog_level = debug\n\n' +
        `[server.team]\nurl = https://127.0.0.1:${team.port}/mcp\nca_file = ${certFile}\nauth = bearer\ntoken_env = TEAM_TOKEN\n`;
    const local = await kit.start({ tag: 'local', config, env: { TEAM_TOKEN } });
    const asked = [];
    const c = await kit.client(local, {
        handlers: (cl) =>
            cl.setRequestHandler(CreateMessageRequestSchema, async (req) => {
                asked.push(req.params);
                return { model: 'two-hop-model', role: 'assistant', content: { type: 'text', text: 'answer across two gateways' } };
            }),
    });
    await waitFor(async () => (await toolNames(c)).includes('team__trigger-sampling-request'), { timeout: 20000, interval: 200, what: 'the team gateway\'s tools' });
    assert.equal(resultText(await c.client.callTool({ name: 'team__echo', arguments: { message: 'two hops' } })), 'Echo: two hops');

    const res = await c.client.callTool({ name: 'team__trigger-sampling-request', arguments: { prompt: 'from the far side', maxTokens: 9 } });
    assert.equal(asked.length, 1, 'the sampling request crossed both hops to this client');
    assert.match(JSON.stringify(asked[0].messages), /from the far side/);
    assert.match(resultText(res), /answer across two gateways/);
    assert.match(resultText(res), /two-hop-model/);

    const seen = [];
    const long = await c.client.callTool(
        { name: 'team__trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
        CallToolResultSchema,
        { onprogress: (p) => seen.push(p), timeout: 20000 },
    );
    assert.match(resultText(long), /Steps: 3/);
    assert.ok(seen.length >= 2, `progress across both hops: ${JSON.stringify(seen)}`);
    assert.ok(seen.every((p) => p.total === 3));
    const st = (await status(local)).servers.find((s) => s.name === 'team');
    assert.equal(st.transport, 'streamable-http');
    assert.equal(st.state, 'ready');
    assert.ok(!local.stderr.includes(TEAM_TOKEN), 'the team token is not in the log');
    await kit.closeClients();
    await assertCleanStop(assert, local);
}));
