// The legacy HTTP+SSE front (2024-11-05) of `serve`: GET /sse + POST /message?sessionId=ID,
// driven by the SDK's SSEClientTransport and by hand.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { CallToolResultSchema, CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';

import {
    IS_GATEWAY,
    assertCleanStop,
    connectClient,
    everythingSection,
    rawHttp,
    resultText,
    startDaemon,
    waitFor,
    within,
    withLog,
} from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 30000, skip };
let daemon;
const clients = [];
const wrap = (fn) => withLog(() => daemon, fn);
const ev = (n) => `everything__${n}`;

/** An SDK Client over SSEClientTransport, with every message recorded like connectClient's. */
async function legacyClient({ name = 'legacy-test', capabilities = { sampling: {} }, handlers } = {}) {
    const client = new Client({ name, version: '1.0.0' }, { capabilities });
    if (handlers) handlers(client);
    const transport = new SSEClientTransport(new URL(`http://127.0.0.1:${daemon.port}/sse`));
    const errors = [];
    client.onerror = (e) => errors.push(e);
    await within(15000, client.connect(transport), 'MCP initialize over legacy SSE');
    const inbox = [];
    const outbox = [];
    const onmessage = transport.onmessage;
    transport.onmessage = (m, extra) => {
        inbox.push(m);
        onmessage?.(m, extra);
    };
    const send = transport.send.bind(transport);
    transport.send = (m, opts) => {
        outbox.push(m);
        return send(m, opts);
    };
    const c = {
        client,
        transport,
        inbox,
        outbox,
        errors,
        notifications: (method) => inbox.filter((m) => m.method === method),
        async close() {
            try {
                await within(5000, client.close(), 'client close');
            } catch {
                /* ignore */
            }
        },
    };
    clients.push(c);
    return c;
}

/**
 * A raw GET /sse read incrementally: {status, headers, events: [{event, data}], until(pred), close()}.
 */
function rawSse(headers = { accept: 'text/event-stream' }) {
    return new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: daemon.port, method: 'GET', path: '/sse', headers });
        req.on('error', reject);
        req.on('response', (res) => {
            const out = { status: res.statusCode, headers: res.headers, events: [], raw: '', ended: false };
            let buf = '';
            const waiters = new Set();
            const check = () => {
                for (const w of waiters) if (w.pred(out.events)) {
                    waiters.delete(w);
                    w.resolve(out.events);
                }
            };
            res.setEncoding('utf8');
            res.on('data', (d) => {
                out.raw += d;
                buf += d;
                let i;
                while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
                    const block = buf.slice(0, i);
                    buf = buf.slice(i).replace(/^\r?\n\r?\n/, '');
                    let event = 'message';
                    const data = [];
                    for (const line of block.split(/\r?\n/)) {
                        if (line.startsWith('event:')) event = line.slice(6).trim();
                        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
                    }
                    if (data.length) out.events.push({ event, data: data.join('\n') });
                }
                check();
            });
            res.on('end', () => {
                out.ended = true;
                check();
            });
            res.on('error', () => {});
            out.until = (pred, ms = 10000) =>
                within(ms, new Promise((r) => {
                    waiters.add({ pred, resolve: r });
                    check();
                }), 'SSE events');
            out.close = () => req.destroy();
            resolve(out);
        });
        req.end();
    });
}

before(async () => {
    if (!IS_GATEWAY) return;
    daemon = await startDaemon({ config: '[gateway]\nlog_level = debug\n\n' + everythingSection(), tag: 'legacy-sse' });
});

after(async () => {
    for (const c of clients) await c.close();
    daemon?.kill();
});

test('initialize and tools/list over SSEClientTransport, with prefixed names', T, wrap(async () => {
    const c = await legacyClient();
    const names = await waitFor(
        async () => {
            const { tools } = await c.client.listTools();
            const n = tools.map((t) => t.name);
            return n.includes(ev('echo')) && n;
        },
        { timeout: 20000, interval: 200, what: `${ev('echo')} in tools/list` },
    );
    assert.ok(names.every((n) => n.startsWith('everything__')), names.join(', '));
    assert.ok(c.client.getServerCapabilities()?.tools, 'tools capability');
}));

test('a tool call is answered on the stream', T, wrap(async () => {
    const c = await legacyClient();
    const echo = await c.client.callTool({ name: ev('echo'), arguments: { message: 'legacy ✓ "quoted"' } });
    assert.equal(resultText(echo), 'Echo: legacy ✓ "quoted"');
    const sum = await c.client.callTool({ name: ev('get-sum'), arguments: { a: 2, b: 40 } });
    assert.equal(resultText(sum), 'The sum of 2 and 40 is 42.');
}));

test('progress notifications of a long-running operation arrive on the stream', T, wrap(async () => {
    const c = await legacyClient();
    const seen = [];
    const res = await c.client.callTool(
        { name: ev('trigger-long-running-operation'), arguments: { duration: 1, steps: 4 } },
        CallToolResultSchema,
        { onprogress: (p) => seen.push(p), timeout: 20000 },
    );
    assert.match(resultText(res), /Duration: 1 seconds, Steps: 4/);
    assert.ok(seen.length >= 1, 'no progress notification reached the client');
    assert.ok(seen.every((p) => p.total === 4), JSON.stringify(seen));
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i].progress > seen[i - 1].progress, 'progress increases');
}));

test('sampling round trip: the server asks over the stream, the client answers with a POST', T, wrap(async () => {
    const asked = [];
    const c = await legacyClient({
        handlers: (cl) =>
            cl.setRequestHandler(CreateMessageRequestSchema, async (req) => {
                asked.push(req.params);
                return { model: 'legacy-model', role: 'assistant', content: { type: 'text', text: 'sampled-legacy-91b2' } };
            }),
    });
    const res = await c.client.callTool({ name: ev('trigger-sampling-request'), arguments: { prompt: 'legacy-prompt', maxTokens: 13 } });
    assert.equal(asked.length, 1, 'the sampling request reached this client once');
    assert.match(JSON.stringify(asked[0].messages), /legacy-prompt/);
    const text = resultText(res);
    assert.match(text, /sampled-legacy-91b2/);
    assert.match(text, /legacy-model/);
}));

test('Streamable HTTP and legacy SSE clients on one daemon at the same time', T, wrap(async () => {
    const modern = await connectClient(daemon, { name: 'modern' });
    clients.push(modern);
    const legacy = await legacyClient({ name: 'legacy' });
    const [a, b] = await Promise.all([
        modern.client.callTool({ name: ev('echo'), arguments: { message: 'from-modern' } }),
        legacy.client.callTool({ name: ev('echo'), arguments: { message: 'from-legacy' } }),
    ]);
    assert.equal(resultText(a), 'Echo: from-modern');
    assert.equal(resultText(b), 'Echo: from-legacy');
    // Neither sees the other's response.
    assert.ok(!legacy.inbox.some((m) => JSON.stringify(m).includes('from-modern')));
    assert.ok(!modern.inbox.some((m) => JSON.stringify(m).includes('from-legacy')));
    // A Streamable HTTP session id is not a legacy session.
    const r = await rawHttp({
        port: daemon.port,
        path: `/message?sessionId=${modern.sessionId}`,
        headers: { 'content-type': 'application/json' },
        body: { jsonrpc: '2.0', id: 1, method: 'ping' },
    });
    assert.equal(r.status, 404, r.text);
}));

test('unknown sessionId → 404, missing → 400, wrong method → 405', T, wrap(async () => {
    const body = { jsonrpc: '2.0', id: 1, method: 'ping' };
    const headers = { 'content-type': 'application/json' };
    const unknown = await rawHttp({ port: daemon.port, path: '/message?sessionId=0123456789abcdef0123456789abcdef', headers, body });
    assert.equal(unknown.status, 404, unknown.text);
    const missing = await rawHttp({ port: daemon.port, path: '/message', headers, body });
    assert.equal(missing.status, 400, missing.text);
    const get = await rawHttp({ port: daemon.port, method: 'GET', path: '/message?sessionId=x' });
    assert.equal(get.status, 405);
    const post = await rawHttp({ port: daemon.port, path: '/sse', headers, body });
    assert.equal(post.status, 405);
    const html = await rawHttp({ port: daemon.port, method: 'GET', path: '/sse', headers: { accept: 'text/html' } });
    assert.equal(html.status, 406);
}));

test('a raw GET /sse: endpoint event first, then a 2024-11-05 session by hand', T, wrap(async () => {
    const s = await rawSse();
    try {
        assert.equal(s.status, 200);
        assert.match(String(s.headers['content-type']), /^text\/event-stream/);
        assert.equal(s.headers['cache-control'], 'no-cache');
        await s.until((es) => es.length >= 1);
        assert.equal(s.events[0].event, 'endpoint');
        const m = /^\/message\?sessionId=([0-9a-f]{32})$/.exec(s.events[0].data);
        assert.ok(m, `endpoint data: ${s.events[0].data}`);
        const post = (body) =>
            rawHttp({ port: daemon.port, path: s.events[0].data, headers: { 'content-type': 'application/json' }, body });
        const msgs = () => s.events.filter((e) => e.event === 'message').map((e) => JSON.parse(e.data));

        const init = await post({
            jsonrpc: '2.0',
            id: 1,
            method: 'initialize',
            params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'raw-legacy', version: '1' } },
        });
        assert.equal(init.status, 202);
        assert.equal(init.text, 'Accepted');
        await s.until(() => msgs().some((x) => x.id === 1));
        assert.equal(msgs().find((x) => x.id === 1).result.protocolVersion, '2024-11-05');
        assert.equal((await post({ jsonrpc: '2.0', method: 'notifications/initialized' })).status, 202);

        // A batch (allowed in 2024-11-05): each reply arrives as its own event.
        const batch = await post([
            { jsonrpc: '2.0', id: 'b1', method: 'ping' },
            { jsonrpc: '2.0', id: 'b2', method: 'tools/list' },
            { jsonrpc: '2.0', method: 'notifications/initialized' },
        ]);
        assert.equal(batch.status, 202);
        await s.until(() => msgs().some((x) => x.id === 'b1') && msgs().some((x) => x.id === 'b2'));
        assert.deepEqual(msgs().find((x) => x.id === 'b1').result, {});

        // Malformed JSON: 400 with a JSON-RPC parse error.
        const bad = await post('{"jsonrpc":"2.0","id":5,');
        assert.equal(bad.status, 400);
        assert.equal(bad.json?.error?.code, -32700, bad.text);
    } finally {
        s.close();
    }
    // The stream closing ends the session.
    const sid = /sessionId=(\w+)/.exec(s.events[0].data)[1];
    await waitFor(
        async () =>
            (await rawHttp({ port: daemon.port, path: `/message?sessionId=${sid}`, headers: { 'content-type': 'application/json' }, body: { jsonrpc: '2.0', id: 9, method: 'ping' } }))
                .status === 404,
        { what: 'the session to end with its stream' },
    );
}));

test('the daemon stops cleanly with a legacy client connected', T, wrap(async () => {
    const c = await legacyClient({ name: 'stays' });
    assert.equal(resultText(await c.client.callTool({ name: ev('echo'), arguments: { message: 'x' } })), 'Echo: x');
    const s = await rawSse();
    await s.until((es) => es.length >= 1);
    const ended = s.until(() => s.ended, 12000);
    await assertCleanStop(assert, daemon);
    await ended; // the gateway ended the stream itself
}));
