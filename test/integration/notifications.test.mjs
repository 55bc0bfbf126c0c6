// Gateway-made messages, against the built-in demo server: merged list_changed on the GET
// stream, re-subscription and list_changed after an upstream restart, cancellation, batches.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
    BIN,
    IS_GATEWAY,
    connectClient,
    rawSession,
    reply,
    resultText,
    serverSection,
    sleep,
    startDaemon,
    waitFor,
    withLog,
} from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 30000, skip };
let daemon;
const clients = [];
const wrap = (fn) => withLog(() => daemon, fn);

async function client(opts) {
    const c = await connectClient(daemon, opts);
    clients.push(c);
    return c;
}

before(async () => {
    if (!IS_GATEWAY) return;
    const config = '[gateway]\nlog_level = debug\n\n' + serverSection('demo', { command: BIN, args: ['demo-server'], prefix: 'demo' });
    daemon = await startDaemon({ config, tag: 'notif' });
});

after(async () => {
    for (const c of clients) await c.close();
    daemon?.kill();
});

const toolNames = async (c) => (await c.client.listTools()).tools.map((t) => t.name);
const listChanged = (c) => c.notifications('notifications/tools/list_changed').length;

test('an upstream list change reaches every session as one tools/list_changed, and the list follows', T, wrap(async () => {
    const a = await client({ name: 'a' });
    const b = await client({ name: 'b' });
    await sleep(300); // both GET streams open
    const before = [listChanged(a), listChanged(b)];
    assert.ok(!(await toolNames(a)).includes('demo__extra'));
    assert.equal(resultText(await a.client.callTool({ name: 'demo__toggle', arguments: {} })), 'extra on');
    await waitFor(() => listChanged(a) > before[0] && listChanged(b) > before[1], { what: 'list_changed on both sessions' });
    assert.ok((await toolNames(b)).includes('demo__extra'));
    assert.equal(resultText(await b.client.callTool({ name: 'demo__extra', arguments: {} })), 'extra');
    await sleep(200);
    assert.equal(listChanged(a) - before[0], 1, 'one change, one notification');
    assert.equal(resultText(await a.client.callTool({ name: 'demo__toggle', arguments: {} })), 'extra off');
    await waitFor(() => listChanged(b) > before[1] + 1, { what: 'the second list_changed' });
}));

test('after an upstream crash: subscriptions are renewed and a changed list is announced', T, wrap(async () => {
    const a = await client({ name: 'subscriber' });
    await sleep(300);
    await a.client.subscribeResource({ uri: 'demo://readme' });
    let r = await a.client.callTool({ name: 'demo__touch', arguments: { uri: 'demo://readme' } });
    assert.equal(resultText(r), 'touched demo://readme');
    await waitFor(() => a.notifications('notifications/resources/updated').length === 1, { what: 'the first update' });
    // Turn `extra` on, so the restarted server (which starts with it off) has a different list.
    await a.client.callTool({ name: 'demo__toggle', arguments: {} });
    await waitFor(async () => (await toolNames(a)).includes('demo__extra'), { what: 'extra listed' });
    const changes = listChanged(a);
    const child = daemon.child('demo-server');
    process.kill(child.pid, 'SIGKILL');
    await waitFor(() => daemon.child('demo-server') && daemon.child('demo-server').pid !== child.pid, { what: 'a new child' });
    await waitFor(() => listChanged(a) > changes, { timeout: 5000, what: 'list_changed after the restart' });
    assert.ok(!(await toolNames(a)).includes('demo__extra'));
    // The new child only sends updates for URIs it was subscribed to: the gateway renewed it.
    r = await waitFor(async () => {
        try {
            return await a.client.callTool({ name: 'demo__touch', arguments: { uri: 'demo://readme' } });
        } catch {
            return null;
        }
    }, { what: 'touch after the restart' });
    assert.equal(resultText(r), 'touched demo://readme');
    await waitFor(() => a.notifications('notifications/resources/updated').length === 2, { what: 'an update after the restart' });
}));

test('notifications/cancelled ends the call at once with -32800 and the upstream request is dropped', T, wrap(async () => {
    const s = await rawSession(daemon);
    const slow = s.post({ jsonrpc: '2.0', id: 'slow-1', method: 'tools/call', params: { name: 'demo__sleep', arguments: { ms: 5000 } } });
    await sleep(200);
    const t0 = Date.now();
    const n = await s.post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'slow-1', reason: 'test' } });
    assert.equal(n.status, 202);
    const res = await slow;
    assert.ok(Date.now() - t0 < 1500, 'the cancelled call did not end promptly');
    assert.equal(reply(res, 'slow-1').error.code, -32800);
    // The gateway still serves the session, and the upstream answers new calls.
    const e = await s.post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'demo__echo', arguments: { message: 'after' } } });
    assert.equal(reply(e, 2).result.content[0].text, 'after');
    assert.match(daemon.stderr, /cancel of tools\/call forwarded to demo as \d+/);
}));

test('JSON-RPC batches: answered as one array for 2025-03-26 sessions, refused for later ones', T, wrap(async () => {
    const old = await rawSession(daemon, { protocolVersion: '2025-03-26' });
    assert.equal(old.version, '2025-03-26');
    const batch = [
        { jsonrpc: '2.0', id: 'p', method: 'ping' },
        { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'demo__sum', arguments: { a: 2, b: 3 } } },
        { jsonrpc: '2.0', method: 'notifications/initialized' },
    ];
    const r = await old.post(batch);
    assert.equal(r.status, 200);
    assert.ok(Array.isArray(r.json), r.text);
    assert.equal(r.json.length, 2);
    assert.deepEqual(r.json.find((m) => m.id === 'p').result, {});
    assert.equal(r.json.find((m) => m.id === 7).result.structuredContent.sum, 5);
    const notes = await old.post([{ jsonrpc: '2.0', method: 'notifications/initialized' }]);
    assert.equal(notes.status, 202);

    const cur = await rawSession(daemon, { protocolVersion: '2025-06-18' });
    const refused = await cur.post(batch);
    assert.equal(refused.status, 400);
    assert.equal(refused.json.error.code, -32600);
}));
