// Slow clients (issue 9, item 8): many unauthenticated TCP connections trickling header bytes
// must neither lock out a client that sends its request at once (over TCP or the Unix socket)
// nor hold their connections past the header deadline. The attacker keeps more connections open
// than the daemon's 64 untrusted slots, reconnecting whenever one is closed.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';

import { IS_GATEWAY, demoSection, rawHttp, resultText, sleep, testKit, untilTool, waitFor, within } from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const kit = testKit('slowloris');
after(() => kit.cleanup());

const HEADER_MS = 1500; // header_timeout below; the default is 10s
const SLOW = 80; // > 64, the daemon's cap of unauthenticated TCP connections
const TRICKLE_MS = 200; // one byte per connection this often: each once moved the idle deadline

/** Opens SLOW connections that send a request line and then one header byte at a time. */
function attack(port) {
    const live = new Set();
    const closed = []; // {ms: how long it lived after its first byte, answer: what it got}
    let on = true;
    let connected = 0;
    const open = () => {
        const rec = { sock: net.connect({ port, host: '127.0.0.1' }), t0: 0, data: '' };
        rec.sock.on('connect', () => {
            rec.t0 = Date.now();
            connected++;
            rec.sock.write('GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
        });
        rec.sock.on('data', (d) => (rec.data += d));
        rec.sock.on('error', () => {});
        rec.sock.on('close', () => {
            live.delete(rec);
            if (rec.t0) closed.push({ ms: Date.now() - rec.t0, answer: rec.data });
            // Reconnect, a little later so the churn stays moderate.
            if (on) setTimeout(() => on && open(), 100);
        });
        live.add(rec);
    };
    for (let i = 0; i < SLOW; i++) open();
    const trickle = setInterval(() => {
        for (const r of live) if (r.t0 && !r.sock.destroyed) r.sock.write('a');
    }, TRICKLE_MS);
    return {
        live,
        closed,
        get connected() {
            return connected;
        },
        stop() {
            on = false;
        },
        end() {
            on = false;
            clearInterval(trickle);
            for (const r of live) r.sock.destroy();
        },
    };
}

test('slow header senders are cut off at the header deadline and lock out nobody', { timeout: 60000, skip }, kit.wrap(async () => {
    const d = await kit.start({ config: `[gateway]\nheader_timeout = ${HEADER_MS}ms\n\n${demoSection()}` });
    const first = await kit.client(d, { via: 'unix' });
    await untilTool(first);
    await first.close();

    const a = attack(d.port);
    try {
        // The attacker fills its slots, and more: the oldest unauthenticated connections are
        // closed to make room (without an answer) while it keeps reconnecting.
        await waitFor(() => a.connected >= SLOW, { timeout: 10000, what: 'the slow connections to open' });
        await waitFor(() => a.closed.some((c) => c.answer === ''), { timeout: 5000, what: 'a slow connection closed to make room' });

        // Meanwhile clients that send their requests at once get in, over TCP and the socket.
        const t0 = Date.now();
        const health = await rawHttp({ port: d.port, method: 'GET', path: '/healthz', timeout: 5000 });
        assert.equal(health.status, 200);
        const tcp = await within(10000, kit.client(d), 'an MCP client over TCP during the attack');
        const viaTcp = await within(5000, tcp.client.callTool({ name: 'demo__echo', arguments: { message: 'tcp' } }), 'tools/call over TCP');
        assert.equal(resultText(viaTcp), 'tcp');
        const unix = await within(10000, kit.client(d, { via: 'unix' }), 'an MCP client over the Unix socket during the attack');
        const viaUnix = await within(5000, unix.client.callTool({ name: 'demo__echo', arguments: { message: 'unix' } }), 'tools/call over the socket');
        assert.equal(resultText(viaUnix), 'unix');
        assert.ok(Date.now() - t0 < 15000);
        assert.ok(a.live.size > 0, 'the attack was still going on');

        // The authenticated client keeps working while the churn goes on.
        await sleep(HEADER_MS);
        const again = await within(5000, tcp.client.callTool({ name: 'demo__echo', arguments: { message: 'still' } }), 'tools/call later');
        assert.equal(resultText(again), 'still');

        // Once the attacker stops reconnecting, every slow connection is gone within the header
        // deadline (plus the lazy timer's slack), whatever it kept sending.
        a.stop();
        await waitFor(() => a.live.size === 0, { timeout: HEADER_MS + 3000, what: 'the slow connections to be closed' });
        const timedOut = a.closed.filter((c) => c.answer.startsWith('HTTP/1.1 408 '));
        assert.ok(timedOut.length > 0, 'some ran into the header deadline');
        for (const c of timedOut) assert.ok(c.ms >= HEADER_MS - 100 && c.ms < HEADER_MS + 1500, `408 after ${c.ms} ms`);
        const longest = Math.max(...a.closed.map((c) => c.ms));
        assert.ok(longest < HEADER_MS + 1500, `a slow connection lived ${longest} ms`);
        for (const c of a.closed) assert.ok(c.answer === '' || c.answer.startsWith('HTTP/1.1 408 '), c.answer.slice(0, 80));

        // Evictions and refusals are logged as a few summaries, not one line per connection.
        const reports = d.stderr.split('\n').filter((l) => l.includes('connection limits reached'));
        assert.ok(reports.length >= 1 && reports.length <= 2, reports.join('\n'));
        assert.ok(a.closed.length > SLOW, `${a.closed.length} slow connections closed in all`);
    } finally {
        a.end();
    }
}));
