// A client that pipelines requests behind initialize while the upstreams are still starting gets
// initialize answered first, and its next requests after it, against ready upstreams.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';

import { BIN, IS_GATEWAY, serverSection, startDaemon, withLog } from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
let daemon;
after(() => daemon?.kill());

test('requests pipelined behind a deferred initialize are answered after it, in order', { timeout: 30000, skip }, withLog(() => daemon, async () => {
    // The upstream takes 600 ms to start, so initialize waits for it.
    const config = '[gateway]\nlog_level = debug\n\n' + serverSection('demo', { command: 'sh', args: ['-c', `sleep 0.6; exec '${BIN}' demo-server`], prefix: 'demo' });
    daemon = await startDaemon({ config, tag: 'pipe' });
    const sock = net.connect(daemon.socket);
    await new Promise((r) => sock.once('connect', r));
    const lines = [];
    let buf = '';
    sock.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
            lines.push(JSON.parse(buf.slice(0, i)));
            buf = buf.slice(i + 1);
        }
    });
    const frames = [
        { 'agentgate-bridge': 1, client: 'pipeline' },
        { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'p', version: '1' } } },
        { jsonrpc: '2.0', method: 'notifications/initialized' },
        { jsonrpc: '2.0', id: 2, method: 'tools/list' },
        { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'demo__echo', arguments: { message: 'after init' } } },
    ];
    sock.write(frames.map((f) => JSON.stringify(f)).join('\n') + '\n');
    // Responses only: list_changed notifications may come too once the upstream's lists are in.
    const replies = () => lines.filter((l) => l.id !== undefined);
    const t0 = Date.now();
    while (replies().length < 3 && Date.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 20));
    sock.destroy();
    const got = replies();
    assert.deepEqual(got.map((l) => l.id), [1, 2, 3], JSON.stringify(lines));
    lines.splice(0, lines.length, ...got);
    assert.ok(lines[0].result.capabilities.tools, 'initialize waited for the upstream: tools is advertised');
    assert.ok(lines[1].result.tools.some((t) => t.name === 'demo__echo'), JSON.stringify(lines[1]));
    assert.equal(lines[2].result.content[0].text, 'after init');
}));
