// Client identities: bearer tokens on TCP (auth = token), X-Agentgate-Client on the Unix
// socket, the socket's peer uid check, and `agentgate bridge --client NAME`.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

import {
    BIN,
    IS_GATEWAY,
    MCP_HEADERS,
    NODE,
    PROTOCOL_VERSION,
    bearer,
    clientSection,
    demoSection,
    randomToken,
    rawHttp,
    resultText,
    sanitizerReport,
    serveDaemonsFor,
    sha256Hex,
    testKit,
    untilTool,
    waitFor,
    within,
    withLog,
    assertCleanStop,
} from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 30000, skip };

const ALICE = randomToken('alice');
const initBody = {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'identity-test', version: '1' } },
};
const untilInit = (ms) => ms.some((m) => m.id === 1 && !m.method);

let tokenD; // auth = token, one client alice
let noneD; // auth = none, alice named by header
const kit = testKit('ident'); // both daemons and the SDK clients
const { client } = kit;
const bridges = [];
// Each test names the daemon whose log a failure shows.
const wrap = (getD, fn) => withLog(getD, fn);

before(async () => {
    if (!IS_GATEWAY) return;
    tokenD = await kit.start({
        auth: 'token',
        config: '[gateway]\nauth = token\n\n' + clientSection('alice', { token_sha256: sha256Hex(ALICE) }) + '\n' + demoSection(),
    });
    noneD = await kit.start({
        tag: 'ident-none',
        config: '[gateway]\nauth = none\n\n' + clientSection('alice', { token_sha256: sha256Hex(ALICE), deny: 'demo__sum' }) + '\n' + demoSection(),
    });
});

after(async () => {
    await kit.closeClients();
    for (const b of bridges) await b.close();
    // Only daemons a refused bridge may have started for our sockets (never ours).
    for (const d of kit.daemons) {
        for (const pid of serveDaemonsFor(d.socket)) {
            if (pid === d.pid) continue;
            try {
                process.kill(pid, 'SIGKILL');
            } catch {
                /* gone */
            }
        }
    }
    await kit.cleanup(); // kills both daemons, checks their stderr
    for (const b of bridges) {
        const report = sanitizerReport(b.stderr);
        assert.equal(report, null, `sanitizer report in a bridge's stderr:\n${report}`);
    }
});

// ------------------------------------------------------------------ TCP, auth = token

test('TCP without Authorization: 401 with WWW-Authenticate: Bearer realm="agentgate"', T, wrap(() => tokenD, async () => {
    const r = await rawHttp({ port: tokenD.port, headers: MCP_HEADERS, body: initBody });
    assert.equal(r.status, 401, r.text);
    assert.match(String(r.headers['www-authenticate']), /^Bearer\b/);
    assert.match(String(r.headers['www-authenticate']), /realm="agentgate"/);
    assert.equal(r.headers['mcp-session-id'], undefined, 'no session for an unauthenticated request');
}));

test('TCP with a wrong bearer token: 401', T, wrap(() => tokenD, async () => {
    for (const auth of [`Bearer ${ALICE}x`, `Bearer ${randomToken('other')}`, 'Bearer ', `Basic ${Buffer.from('alice:x').toString('base64')}`]) {
        const r = await rawHttp({ port: tokenD.port, headers: { ...MCP_HEADERS, authorization: auth }, body: initBody });
        assert.equal(r.status, 401, `${auth}: HTTP ${r.status} ${r.text}`);
        assert.match(String(r.headers['www-authenticate']), /^Bearer\b/);
    }
    // A valid-looking name header does not replace the bearer on TCP.
    const named = await rawHttp({ port: tokenD.port, headers: { ...MCP_HEADERS, 'x-agentgate-client': 'alice' }, body: initBody });
    assert.equal(named.status, 401, named.text);
}));

test('TCP with the right bearer token: the SDK client works', T, wrap(() => tokenD, async () => {
    const ok = await rawHttp({ port: tokenD.port, headers: { ...MCP_HEADERS, ...bearer(ALICE) }, body: initBody, until: untilInit });
    assert.equal(ok.status, 200, ok.text);
    assert.ok(ok.headers['mcp-session-id']);
    const c = await client(tokenD, { headers: bearer(ALICE) });
    await untilTool(c);
    assert.equal(resultText(await c.client.callTool({ name: 'demo__echo', arguments: { message: 'alice over tcp' } })), 'alice over tcp');
}));

test('/healthz needs no token', T, wrap(() => tokenD, async () => {
    const r = await rawHttp({ port: tokenD.port, method: 'GET', path: '/healthz' });
    assert.equal(r.status, 200, r.text);
}));

// ------------------------------------------------------------------ TCP, auth = none

test('auth = none with [client.*] sections: no token needed, but the client must be named (X-Agentgate-Client applies its policy)', T, wrap(() => noneD, async () => {
    // Unnamed, a TCP request would have no policy at all: refused like on the socket.
    const anon = await rawHttp({ port: noneD.port, headers: MCP_HEADERS, body: initBody });
    assert.equal(anon.status, 401, anon.text);
    assert.match(anon.text, /name your client/);
    const unknown = await rawHttp({ port: noneD.port, headers: { ...MCP_HEADERS, 'x-agentgate-client': 'mallory' }, body: initBody });
    assert.equal(unknown.status, 401, unknown.text);

    const alice = await client(noneD, { headers: { 'X-Agentgate-Client': 'alice' } });
    const an = (await alice.client.listTools()).tools.map((t) => t.name);
    assert.ok(an.includes('demo__echo'), an.join(', '));
    assert.ok(!an.includes('demo__sum'), `alice's deny = demo__sum not applied: ${an.join(', ')}`);
}));

// ------------------------------------------------------------------ the Unix socket

test('Unix socket with [client.*] configured: no name -> 401, unknown name -> 401, X-Agentgate-Client: alice works', T, wrap(() => tokenD, async () => {
    const none = await rawHttp({ socketPath: tokenD.socket, headers: MCP_HEADERS, body: initBody });
    assert.equal(none.status, 401, none.text);
    assert.match(none.text, /client/i, 'the refusal says to name the client');
    const unknown = await rawHttp({ socketPath: tokenD.socket, headers: { ...MCP_HEADERS, 'x-agentgate-client': 'mallory' }, body: initBody });
    assert.equal(unknown.status, 401, unknown.text);

    const named = await rawHttp({ socketPath: tokenD.socket, headers: { ...MCP_HEADERS, 'x-agentgate-client': 'alice' }, body: initBody, until: untilInit });
    assert.equal(named.status, 200, named.text);
    const c = await client(tokenD, { via: 'unix', headers: { 'X-Agentgate-Client': 'alice' } });
    await untilTool(c);
    assert.equal(resultText(await c.client.callTool({ name: 'demo__echo', arguments: { message: 'alice over the socket' } })), 'alice over the socket');

    // A bearer token is accepted on the socket instead of a name.
    const tok = await rawHttp({ socketPath: tokenD.socket, headers: { ...MCP_HEADERS, ...bearer(ALICE) }, body: initBody, until: untilInit });
    assert.equal(tok.status, 200, tok.text);
}));

test('Unix socket peer with another uid: 403', { ...T, skip: skip || (process.getuid?.() !== 0 && 'needs root to run a child as uid 65534') }, wrap(() => tokenD, async () => {
    // Let uid 65534 reach the socket at all: the refusal must come from the daemon's peer check.
    // The modes are put back afterwards: the bridge tests below refuse a socket directory that
    // others can write to.
    const modes = [tokenD.socket, path.dirname(tokenD.socket), tokenD.dir].map((p) => [p, fs.statSync(p).mode & 0o7777]);
    fs.chmodSync(tokenD.dir, 0o755);
    fs.chmodSync(path.dirname(tokenD.socket), 0o777);
    fs.chmodSync(tokenD.socket, 0o666);
    try {
        const script = `
            const http = require('node:http');
            const body = ${JSON.stringify(JSON.stringify(initBody))};
            const req = http.request({ socketPath: ${JSON.stringify(tokenD.socket)}, method: 'POST', path: '/mcp',
                headers: { host: 'localhost', 'content-type': 'application/json', accept: 'application/json, text/event-stream',
                           'x-agentgate-client': 'alice', 'content-length': Buffer.byteLength(body) } },
                (res) => { console.log('STATUS ' + res.statusCode + ' UID ' + process.getuid()); res.resume(); res.on('end', () => process.exit(0)); });
            req.on('error', (e) => { console.log('ERROR ' + e.code + ' ' + e.message); process.exit(0); });
            req.end(body);
            setTimeout(() => { console.log('TIMEOUT'); process.exit(0); }, 5000);
        `;
        const out = await new Promise((resolve, reject) => {
            const p = spawn(NODE, ['-e', script], { uid: 65534, gid: 65534, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
            let o = '';
            p.stdout.on('data', (d) => (o += d));
            p.stderr.on('data', (d) => (o += d));
            p.on('error', reject);
            p.on('exit', () => resolve(o));
        });
        assert.match(out, /UID 65534/, `the child ran as uid 65534: ${out}`);
        assert.match(out, /STATUS 403/, `a peer with another uid: ${out}`);
        // The daemon is unharmed, and a same-uid peer still works.
        const named = await rawHttp({ socketPath: tokenD.socket, headers: { ...MCP_HEADERS, 'x-agentgate-client': 'alice' }, body: initBody, until: untilInit });
        assert.equal(named.status, 200, named.text);
    } finally {
        for (const [p, m] of modes) fs.chmodSync(p, m);
    }
}));

// ------------------------------------------------------------------ the bridge

async function bridgeClient(d, name) {
    const client = new Client({ name: 'identity-bridge', version: '1.0.0' }, { capabilities: {} });
    const transport = new StdioClientTransport({
        command: BIN,
        args: ['bridge', '--socket', d.socket, '--client', name, '--state-dir', path.join(d.dir, 'bridge-state')],
        env: { ...process.env, ...d.env },
        stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (x) => (stderr += x));
    const b = {
        client,
        get stderr() {
            return stderr;
        },
        async close() {
            try {
                await within(5000, client.close(), 'bridge client close');
            } catch {
                /* ignore */
            }
        },
    };
    bridges.push(b);
    b.connected = within(10000, client.connect(transport), `bridge --client ${name} initialize`);
    return b;
}

test('bridge --client alice works with the SDK stdio client', T, wrap(() => tokenD, async () => {
    const b = await bridgeClient(tokenD, 'alice');
    try {
        await b.connected;
    } catch (e) {
        e.message += `\n--- bridge stderr ---\n${b.stderr}`;
        throw e;
    }
    await waitFor(async () => (await b.client.listTools()).tools.some((t) => t.name === 'demo__echo'), { timeout: 10000, what: 'demo__echo via the bridge' });
    assert.equal(resultText(await b.client.callTool({ name: 'demo__echo', arguments: { message: 'bridged alice' } })), 'bridged alice');
}));

test('bridge --client nobody (not configured) is refused with a clear error', T, wrap(() => tokenD, async () => {
    const b = await bridgeClient(tokenD, 'nobody');
    await assert.rejects(b.connected, (e) => !/did not finish within/.test(e.message), 'initialize through a refused bridge must fail, not hang');
    await waitFor(() => /nobody/.test(b.stderr), { timeout: 3000, what: `the bridge's stderr to name the client 'nobody' (got: ${b.stderr})` });
    assert.ok(tokenD.alive, 'the daemon is still running');
    assert.deepEqual(serveDaemonsFor(tokenD.socket), [tokenD.pid], 'the refused bridge did not start another daemon');
}));

test('both daemons stop cleanly (exit 0, no sanitizer report)', T, wrap(() => tokenD, async () => {
    await kit.closeClients();
    for (const b of bridges) await b.close();
    await assertCleanStop(assert, tokenD);
    await assertCleanStop(assert, noneD);
}));
