// `agentgate wrap -- CMD`: one stdio server as a remote target behind a bearer token.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { BIN, IS_GATEWAY, MCP_HEADERS, assertCleanStop, rawHttp, resultText, runBin, startDaemon, waitFor, withLog } from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 30000, skip };
const TOKEN = 'test-token-0123456789';
let daemon;
const clients = [];
const wrap = (fn) => withLog(() => daemon, fn);

before(async () => {
    if (!IS_GATEWAY) return;
    daemon = await startDaemon({
        tag: 'wrap',
        argv: ({ port, stateDir }) => ['wrap', '--listen', `127.0.0.1:${port}`, '--token', TOKEN, '--state-dir', stateDir, '--', BIN, 'demo-server'],
    });
});

after(async () => {
    for (const c of clients) await c.close().catch(() => {});
    daemon?.kill();
});

async function connect(token = TOKEN) {
    const client = new Client({ name: 'wrap-test', version: '1' }, { capabilities: {} });
    const transport = new StreamableHTTPClientTransport(new URL(daemon.url), {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
    });
    await client.connect(transport);
    clients.push(client);
    return client;
}

const initBody = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } };

test('wrap prints the URL and the token, and refuses requests without it (401)', T, wrap(async () => {
    await waitFor(() => daemon.stdout.includes(TOKEN), { what: 'the banner' });
    assert.match(daemon.stdout, new RegExp(`http://127\\.0\\.0\\.1:${daemon.port}/mcp`));
    const none = await rawHttp({ port: daemon.port, headers: MCP_HEADERS, body: initBody });
    assert.equal(none.status, 401);
    assert.match(String(none.headers['www-authenticate']), /^Bearer/);
    const wrong = await rawHttp({ port: daemon.port, headers: { ...MCP_HEADERS, authorization: 'Bearer nope' }, body: initBody });
    assert.equal(wrong.status, 401);
    const ok = await rawHttp({ port: daemon.port, headers: { ...MCP_HEADERS, authorization: `Bearer ${TOKEN}` }, body: initBody });
    assert.equal(ok.status, 200);
    await assert.rejects(connect('bad-token'));
}));

test('two clients share one child; tools keep their own names', T, wrap(async () => {
    const a = await connect();
    const b = await connect();
    const names = (await a.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('echo') && names.includes('sleep'), names.join(','));
    assert.equal(resultText(await a.callTool({ name: 'echo', arguments: { message: 'from a' } })), 'from a');
    assert.equal(resultText(await b.callTool({ name: 'echo', arguments: { message: 'from b' } })), 'from b');
    const kids = daemon.children().filter((c) => c.argv.includes('demo-server'));
    assert.equal(kids.length, 1);
}));

test('a legacy HTTP+SSE client reaches the same child at /sse with the token', T, wrap(async () => {
    const auth = { Authorization: `Bearer ${TOKEN}` };
    const client = new Client({ name: 'wrap-sse', version: '1' }, { capabilities: {} });
    const transport = new SSEClientTransport(new URL(`http://127.0.0.1:${daemon.port}/sse`), {
        requestInit: { headers: auth },
        eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers || {}), ...auth } }) },
    });
    await client.connect(transport);
    clients.push(client);
    assert.equal(resultText(await client.callTool({ name: 'echo', arguments: { message: 'legacy' } })), 'legacy');
    const bare = await rawHttp({ port: daemon.port, method: 'GET', path: '/sse', headers: { accept: 'text/event-stream' } });
    assert.equal(bare.status, 401);
}));

test('the child crashing mid-call gives an error, then the server recovers', T, wrap(async () => {
    const c = await connect();
    const child = daemon.child('demo-server');
    const slow = c.callTool({ name: 'sleep', arguments: { ms: 5000 } });
    await new Promise((r) => setTimeout(r, 200));
    process.kill(child.pid, 'SIGKILL');
    await assert.rejects(slow, /exited/);
    const r = await waitFor(async () => {
        try {
            return await c.callTool({ name: 'echo', arguments: { message: 'back' } });
        } catch {
            return null;
        }
    }, { timeout: 5000, what: 'a call after the restart' });
    assert.equal(resultText(r), 'back');
}));

test('--no-auth is refused on a non-loopback address', T, async () => {
    const r = await runBin(['wrap', '--no-auth', '--listen', '0.0.0.0:9', '--', BIN, 'demo-server']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--no-auth is refused/);
});

test('wrap stops cleanly on SIGTERM', T, wrap(async () => {
    await assertCleanStop(assert, daemon);
}));
