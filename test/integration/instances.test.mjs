// Children per client and per session are bounded (issue 9, item 7): max_instances per server
// with a clear error past it, no child for a server the client's policy excludes, and a session
// that can no longer be used (its tokens expired, or ended) stops its children at once.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import {
    BIN,
    IS_GATEWAY,
    MCP_HEADERS,
    PROTOCOL_VERSION,
    clientSection,
    rawHttp,
    resultText,
    serverSection,
    sleep,
    testKit,
    waitFor,
} from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 40000, skip };
const kit = testKit('inst');
after(kit.cleanup);

const initBody = {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};
const init = (d, headers = {}) =>
    rawHttp({ port: d.port, headers: { ...MCP_HEADERS, ...headers }, body: initBody, until: (ms) => ms.some((m) => m.id === 1 && !m.method) });
const mineChildren = (d) => d.children().filter((c) => c.argv.includes('demo-server') && c.argv.includes('--list-delay'));

test('max_instances: past it a new session is refused with an error naming the limit; ending one makes room', T, kit.wrap(async () => {
    const config =
        '[gateway]\nlog_level = debug\n\n' +
        serverSection('mine', { command: BIN, args: ['demo-server', '--list-delay', '1'], prefix: 'mine', extra: { isolation: 'session', max_instances: 2 } });
    const d = await kit.start({ config });
    const a = await init(d);
    const b = await init(d);
    assert.equal(a.status, 200, a.text);
    assert.equal(b.status, 200, b.text);
    await waitFor(() => mineChildren(d).length === 2, { what: 'two isolated children' });
    const c = await init(d);
    assert.equal(c.status, 503, c.text);
    assert.equal(c.json?.id, 1);
    assert.match(c.json?.error?.message ?? '', /'mine' runs 2 instances already \(its max_instances\)/);
    assert.equal(mineChildren(d).length, 2, 'a third child was started');
    // Ending a session stops its child and makes room for another.
    const del = await rawHttp({ port: d.port, method: 'DELETE', headers: { 'mcp-session-id': a.headers['mcp-session-id'] } });
    assert.equal(del.status, 200);
    await waitFor(() => mineChildren(d).length === 1, { what: 'the ended session\'s child to stop' });
    const again = await init(d);
    assert.equal(again.status, 200, again.text);
    await waitFor(() => mineChildren(d).length === 2, { what: 'a child for the new session' });
}));

test('forty initialize requests start at most max_instances children (default 16)', T, kit.wrap(async () => {
    const config = serverSection('mine', { command: BIN, args: ['demo-server', '--list-delay', '1'], prefix: 'mine', extra: { isolation: 'session' } });
    const d = await kit.start({ config });
    const results = await Promise.all(Array.from({ length: 40 }, () => init(d)));
    const ok = results.filter((r) => r.status === 200).length;
    assert.equal(ok, 16, results.map((r) => r.status).join(','));
    assert.ok(results.every((r) => r.status === 200 || r.status === 503));
    await sleep(300);
    assert.equal(mineChildren(d).length, 16);
}));

test('no child is started for a server the client\'s policy excludes', T, kit.wrap(async () => {
    const config =
        '[gateway]\nauth = none\n\n' +
        clientSection('alice', { servers: 'other' }) +
        clientSection('bob', {}) +
        serverSection('mine', { command: BIN, args: ['demo-server', '--list-delay', '1'], prefix: 'mine', extra: { isolation: 'session' } }) +
        serverSection('other', { command: BIN, args: ['demo-server'], prefix: 'other', extra: { isolation: 'shared' } });
    const d = await kit.start({ config, auth: null });
    const a = await init(d, { 'x-agentgate-client': 'alice' });
    assert.equal(a.status, 200, a.text);
    await sleep(500);
    assert.equal(mineChildren(d).length, 0, 'alice may not use mine, yet it was started for her');
    const b = await init(d, { 'x-agentgate-client': 'bob' });
    assert.equal(b.status, 200, b.text);
    await waitFor(() => mineChildren(d).length === 1, { what: "bob's child of mine" });
}));

test('a session whose tokens have expired stops its children at once', T, kit.wrap(async () => {
    const config =
        '[gateway]\nsession_ttl = 2s\n\n' +
        serverSection('mine', { command: BIN, args: ['demo-server', '--list-delay', '1'], prefix: 'mine', extra: { isolation: 'session' } });
    const d = await kit.start({ config });
    const c = await kit.client(d);
    await waitFor(async () => (await c.client.listTools()).tools.some((t) => t.name === 'mine__echo'), { what: 'mine__echo' });
    assert.equal(resultText(await c.client.callTool({ name: 'mine__echo', arguments: { message: 'x' } })), 'x');
    assert.equal(mineChildren(d).length, 1);
    // Idle past its TTL: nobody can use it any more, so its child goes now, not after an hour.
    await waitFor(() => mineChildren(d).length === 0, { timeout: 6000, what: 'the expired session\'s child to stop' });
    assert.match(d.stderr, /its tokens expired; ended/);
}));
