// The Streamable HTTP front with hand-made requests: bad input, sessions, headers, ids.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
    IS_GATEWAY,
    MCP_HEADERS,
    PROTOCOL_VERSION,
    assertCleanStop,
    everythingSection,
    rawHttp,
    rawSession,
    reply,
    startTarget,
    waitFor,
    within,
    withLog,
} from './harness.mjs';

const T = { timeout: 20000 };
const gatewayOnly = { ...T, skip: !IS_GATEWAY && 'gateway only' };
// The spec (and the gateway) answer 404 for a session they do not know; server-everything's own
// HTTP wrapper, used only to check these tests (AGENTGATE_TARGET=reference), answers 400.
const UNKNOWN_SESSION = IS_GATEWAY ? 404 : 400;
let target;
let s; // one initialised raw session
const ev = (n) => target.name('everything', n);
const wrap = (fn) => withLog(() => target?.daemon, fn);
const initBody = (id = 1) => ({
    jsonrpc: '2.0',
    id,
    method: 'initialize',
    params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
});

before(async () => {
    target = await startTarget({ config: '[gateway]\nlog_level = debug\nmax_body = 64KiB\n\n' + everythingSection(), tag: 'http' });
    s = await rawSession(target);
    // Wait for the upstream to be federated.
    await waitFor(
        async () => {
            const r = await s.post({ jsonrpc: '2.0', id: 'probe', method: 'tools/list' });
            return reply(r, 'probe')?.result?.tools?.some((t) => t.name === ev('echo'));
        },
        { timeout: 20000, interval: 200, what: `${ev('echo')} in tools/list` },
    );
});

after(() => target?.daemon.kill());

test('initialize answers with a session id and the negotiated version', T, wrap(async () => {
    const r = await rawHttp({ port: target.port, headers: MCP_HEADERS, body: initBody(), until: (ms) => ms.some((m) => m.id === 1) });
    assert.equal(r.status, 200);
    assert.match(r.headers['mcp-session-id'] ?? '', /^[\x21-\x7e]{16,}$/, 'visible-ASCII session id of at least 128 bits');
    const res = reply(r, 1).result;
    assert.equal(res.protocolVersion, PROTOCOL_VERSION);
    assert.ok(res.capabilities.tools, 'tools capability from the upstream');
    assert.ok(res.serverInfo?.name);
}));

test('malformed JSON → JSON-RPC parse error -32700', T, wrap(async () => {
    const r = await s.post('{"jsonrpc":"2.0","id":5,"method":"tools/list"');
    assert.ok(r.status >= 400 && r.status < 500, `HTTP ${r.status}`);
    assert.equal(r.messages[0]?.error?.code, -32700, r.text);
    assert.equal(r.messages[0].id, null);
}));

test('unknown method → -32601 with the request id', T, wrap(async () => {
    const r = await s.post({ jsonrpc: '2.0', id: 77, method: 'no/such-method', params: {} });
    const m = reply(r, 77);
    assert.ok(m, `no reply with id 77: HTTP ${r.status} ${r.text}`);
    assert.equal(m.error?.code, -32601, r.text);
}));

// An error (JSON-RPC error or isError result) whose text names `mention`.
function assertToolError(r, id, mention) {
    const m = reply(r, id);
    assert.ok(m, `no reply with id ${id}: HTTP ${r.status} ${r.text}`);
    const text = m.error ? m.error.message + JSON.stringify(m.error.data ?? '') : JSON.stringify(m.result.content);
    if (!m.error) assert.equal(m.result.isError, true, r.text);
    assert.ok(text.includes(mention), `the error names ${mention}: ${r.text}`);
}

test('unknown tool → an error naming the tool', T, wrap(async () => {
    // A prefix no server has: the gateway itself must refuse, with the name the client used.
    const r1 = await s.post({ jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 'nosuch__tool', arguments: {} } });
    assertToolError(r1, 8, 'nosuch__tool');
    // A known prefix with a tool its server does not have.
    const r2 = await s.post({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: ev('no-such-tool'), arguments: {} } });
    assertToolError(r2, 9, 'no-such-tool');
}));

test('request ids come back with their exact JSON type and value', T, wrap(async () => {
    for (const id of ['17', 4294967297, -3, 0, 'req-ü"x']) {
        const r = await s.post({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: ev('echo'), arguments: { message: `id ${id}` } } });
        const m = reply(r, id);
        assert.ok(m, `no reply with id ${JSON.stringify(id)} (${typeof id}): ${r.text}`);
        assert.equal(m.result.content[0].text, `Echo: id ${id}`);
    }
}));

test('ping is answered', T, wrap(async () => {
    const r = await s.post({ jsonrpc: '2.0', id: 'p', method: 'ping' });
    assert.deepEqual(reply(r, 'p')?.result, {});
}));

test('notifications get 202 Accepted', T, wrap(async () => {
    const r = await s.post({ jsonrpc: '2.0', method: 'notifications/roots/list_changed' });
    assert.equal(r.status, 202);
}));

test('body over max_body → 413', gatewayOnly, wrap(async () => {
    const big = JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: ev('echo'), arguments: { message: 'x'.repeat(100 * 1024) } } });
    const r = await s.post(big);
    assert.equal(r.status, 413);
    // Just under the limit is fine.
    const ok = await s.post({ jsonrpc: '2.0', id: 10, method: 'tools/call', params: { name: ev('echo'), arguments: { message: 'y'.repeat(60 * 1024) } } });
    assert.equal(reply(ok, 10)?.result?.content?.[0]?.text.length, 'Echo: '.length + 60 * 1024);
}));

test('Origin: http://evil.example → 403; a loopback Origin is accepted', gatewayOnly, wrap(async () => {
    const bad = await rawHttp({ port: target.port, headers: { ...MCP_HEADERS, origin: 'http://evil.example' }, body: initBody() });
    assert.equal(bad.status, 403);
    const badOnSession = await s.post({ jsonrpc: '2.0', id: 3, method: 'ping' }, { origin: 'http://evil.example' });
    assert.equal(badOnSession.status, 403);
    const good = await rawHttp({
        port: target.port,
        headers: { ...MCP_HEADERS, origin: `http://localhost:${target.port}` },
        body: initBody(),
        until: (ms) => ms.some((m) => m.id === 1),
    });
    assert.equal(good.status, 200);
}));

test('Host other than localhost/127.0.0.1/[::1] → 403', gatewayOnly, wrap(async () => {
    const bad = await rawHttp({ port: target.port, headers: { ...MCP_HEADERS, host: `evil.example:${target.port}` }, body: initBody() });
    assert.equal(bad.status, 403);
    const good = await rawHttp({ port: target.port, headers: { ...MCP_HEADERS, host: `localhost:${target.port}` }, body: initBody(), until: (ms) => ms.some((m) => m.id === 1) });
    assert.equal(good.status, 200);
}));

test('unknown Mcp-Session-Id → 404', T, wrap(async () => {
    const r = await rawHttp({
        port: target.port,
        headers: { ...MCP_HEADERS, 'mcp-session-id': '0123456789abcdef0123456789abcdef', 'mcp-protocol-version': s.version },
        body: { jsonrpc: '2.0', id: 4, method: 'tools/list' },
    });
    assert.equal(r.status, UNKNOWN_SESSION);
}));

test('missing Mcp-Session-Id on a non-initialize request → 400', T, wrap(async () => {
    const r = await rawHttp({ port: target.port, headers: { ...MCP_HEADERS, 'mcp-protocol-version': s.version }, body: { jsonrpc: '2.0', id: 4, method: 'tools/list' } });
    assert.equal(r.status, 400);
}));

test('unsupported MCP-Protocol-Version header → 400', T, wrap(async () => {
    const r = await s.post({ jsonrpc: '2.0', id: 6, method: 'tools/list' }, { 'mcp-protocol-version': '1999-01-01' });
    assert.equal(r.status, 400);
}));

test('DELETE ends the session; it is unknown afterwards', T, wrap(async () => {
    const mine = await rawSession(target);
    const del = await rawHttp({ port: target.port, method: 'DELETE', headers: { 'mcp-session-id': mine.sid, 'mcp-protocol-version': mine.version } });
    assert.ok(del.status >= 200 && del.status < 300, `DELETE → HTTP ${del.status}`);
    const r = await mine.post({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
    assert.equal(r.status, UNKNOWN_SESSION);
}));

test('the same checks hold on the Unix socket', T, wrap(async () => {
    const u = await rawSession(target, { via: 'unix' });
    const r = await u.post({ jsonrpc: '2.0', id: 'u1', method: 'tools/call', params: { name: ev('get-sum'), arguments: { a: 1, b: 2 } } });
    assert.equal(reply(r, 'u1')?.result?.content?.[0]?.text, 'The sum of 1 and 2 is 3.');
    const bad = await u.post('{not json');
    assert.equal(bad.messages[0]?.error?.code, -32700);
    const unknown = await rawHttp({
        socketPath: target.socket,
        headers: { ...MCP_HEADERS, 'mcp-session-id': 'ffffffffffffffffffffffffffffffff', 'mcp-protocol-version': u.version },
        body: { jsonrpc: '2.0', id: 4, method: 'tools/list' },
    });
    assert.equal(unknown.status, UNKNOWN_SESSION);
}));

test('daemon stops on SIGTERM: exit 0, socket removed, no child left, no sanitizer report', { timeout: 30000, skip: !IS_GATEWAY && 'gateway only' }, async () => {
    await within(20000, assertCleanStop(assert, target.daemon), 'clean stop');
});
