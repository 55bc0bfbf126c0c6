// A server flooding notifications while clients stop reading must not grow the daemon without
// bound (issue 9, item 6): what it holds for streams that do not drain is counted in bytes
// allocated and bounded per stream and in total, the excess is dropped with one warning per
// stream (not one log line per notification), and everyone else is still served.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, test } from 'node:test';

import { IS_GATEWAY, NODE, PROTOCOL_VERSION, rawHttp, rawSession, resultText, serverSection, sleep, testKit, untilTool, waitFor } from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const HOSTILE = path.join(path.dirname(new URL(import.meta.url).pathname), 'hostile-server.mjs');
const kit = testKit('flood');
after(kit.cleanup);

const rssMiB = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
/** The daemon's own account of its memory (GET /agentgate/status on the socket), in MiB: what
 * its heap holds (exact under sanitizers too, unlike RSS) and what it holds for clients. */
async function memory(d) {
    const r = await rawHttp({ socketPath: d.socket, method: 'GET', path: '/agentgate/status' });
    assert.equal(r.status, 200, r.text);
    const m = r.json.memory;
    return { live: m.live_bytes / 2 ** 20, held: m.held_for_clients / 2 ** 20, dropped: m.notifications_dropped };
}
const lines = (text) => text.split('\n').length;

/** A raw HTTP request on its own socket that is never read: the daemon's writes to it stall. */
function stalled(port, head, body = '') {
    return new Promise((resolve, reject) => {
        const s = net.connect({ port, host: '127.0.0.1' }, () => {
            s.write(head + body);
            s.pause(); // no more reading: the kernel buffers fill, then the daemon's queue
            resolve(s);
        });
        s.on('error', reject);
    });
}

test('stalled GET streams and a stalled POST stream under a notification flood: memory stays bounded, logs stay short', { timeout: 240000, skip }, kit.wrap(async () => {
    const config = '[gateway]\naudit = off\n\n' + serverSection('evil', { command: NODE, args: [HOSTILE], prefix: 'evil' });
    const d = await kit.start({ config });
    const ctl = await kit.client(d, { name: 'controller' });
    await untilTool(ctl, 'evil__flood');
    await ctl.client.setLoggingLevel('emergency'); // the controller does not want the flood itself
    // Four sessions whose GET streams nobody reads.
    const sockets = [];
    for (let i = 0; i < 4; i++) {
        const r = await rawSession(d);
        sockets.push(
            await stalled(
                d.port,
                `GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:${d.port}\r\nAccept: text/event-stream\r\nMcp-Session-Id: ${r.sid}\r\nMCP-Protocol-Version: ${PROTOCOL_VERSION}\r\n\r\n`,
            ),
        );
    }
    // And a session whose own call's response stream nobody reads: the flood rides on it.
    const p = await rawSession(d);
    const body = JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'evil__flood', arguments: { count: 60000, size: 200 } } });
    await sleep(300);
    const rss0 = rssMiB(d.pid);
    const mem0 = await memory(d);
    const log0 = lines(d.stderr);
    sockets.push(
        await stalled(
            d.port,
            `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${d.port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: ${p.sid}\r\nMCP-Protocol-Version: ${p.version}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`,
            body,
        ),
    );
    // The controller's own flood reaches the four GET streams (its own level filters it out).
    const t0 = Date.now();
    const r = await ctl.client.callTool({ name: 'evil__flood', arguments: { count: 150000, size: 100 } }, undefined, { timeout: 200000 });
    assert.equal(resultText(r), 'flooded');
    await sleep(1000);
    const rss = rssMiB(d.pid) - rss0;
    const mem = await memory(d);
    const grown = mem.live - mem0.live;
    const logged = lines(d.stderr) - log0;
    console.log(`# flood: heap grew ${grown.toFixed(1)} MiB (RSS ${rss.toFixed(1)}), holding ${mem.held.toFixed(1)} MiB for clients, ${mem.dropped} dropped, ${logged} log lines, ${Date.now() - t0} ms`);
    // 150,000 notifications to each of four streams and 60,000 of 200 bytes on the POST
    // stream: about 70 MB of events, hundreds of MB at one pooled block each. Bounded: 1 MiB a
    // stream.
    assert.ok(mem.held <= 6, `${mem.held.toFixed(1)} MiB held for clients that do not read`);
    assert.ok(grown < 16, `the daemon's heap grew by ${grown.toFixed(1)} MiB under the flood`);
    assert.ok(mem.dropped > 100000, `only ${mem.dropped} notifications were dropped`);
    assert.ok(logged < 100, `the flood wrote ${logged} daemon log lines`);
    assert.match(d.stderr, /the client is not reading .*notifications are dropped until it catches up/);
    // Everyone else is still served at once.
    const echo = await ctl.client.callTool({ name: 'evil__echo', arguments: { still: 'here' } });
    assert.match(resultText(echo), /"still":"here"/);
    for (const s of sockets) s.destroy();
}));

test('sessions without a GET stream queue a bounded amount each, and all of them together too', { timeout: 120000, skip }, kit.wrap(async () => {
    const config = '[gateway]\naudit = off\n\n' + serverSection('evil', { command: NODE, args: [HOSTILE], prefix: 'evil' });
    const d = await kit.start({ config });
    const ctl = await kit.client(d, { name: 'controller' });
    await untilTool(ctl, 'evil__flood');
    await ctl.client.setLoggingLevel('emergency');
    // 200 sessions that never open a GET stream: their notifications are kept for them.
    for (let i = 0; i < 200; i++) await rawSession(d);
    await sleep(300);
    const mem0 = await memory(d);
    const r = await ctl.client.callTool({ name: 'evil__flood', arguments: { count: 20000, size: 300 } }, undefined, { timeout: 100000 });
    assert.equal(resultText(r), 'flooded');
    await sleep(500);
    const mem = await memory(d);
    const grown = mem.live - mem0.live;
    console.log(`# queues: heap grew ${grown.toFixed(1)} MiB, holding ${mem.held.toFixed(1)} MiB, ${mem.dropped} dropped`);
    // Unbounded (1 MiB a session before), 200 sessions hold 200 MiB; bounded, 256 KiB each.
    assert.ok(mem.held <= 51, `${mem.held.toFixed(1)} MiB held in queues`);
    assert.ok(grown < 60, `the daemon's heap grew by ${grown.toFixed(1)} MiB`);
    await waitFor(() => /notifications are dropped/.test(d.stderr), { what: 'the drop warning' });
}));

test('a flood of list_changed from a server makes the gateway fetch its list a few times, not once each', { timeout: 60000, skip }, kit.wrap(async () => {
    const config = '[gateway]\naudit = off\n\n' + serverSection('evil', { command: NODE, args: [HOSTILE], prefix: 'evil' });
    const d = await kit.start({ config });
    const c = await kit.client(d, { name: 'relister' });
    await untilTool(c, 'evil__relist');
    const count = async () => Number(resultText(await c.client.callTool({ name: 'evil__lists', arguments: {} })));
    const before = await count();
    assert.equal(resultText(await c.client.callTool({ name: 'evil__relist', arguments: { count: 20000 } })), 'relisted');
    await sleep(1000);
    const fetched = (await count()) - before;
    console.log(`# list_changed flood: ${fetched} fetches`);
    // One fetch under way and one after it for all the announcements that came meanwhile;
    // a few more when the flood comes in bursts. Never one per announcement.
    assert.ok(fetched >= 1 && fetched < 100, `${fetched} tools/list fetches for 20,000 list_changed`);
    const mem = await memory(d);
    assert.ok(mem.live < 64, `${mem.live.toFixed(1)} MiB heap after the flood`);
}));
