// The upstream supervisor: a crash mid-call, the restart, and the shutdown ladder on SIGTERM.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { CallToolResultSchema, McpError } from '@modelcontextprotocol/sdk/types.js';

import {
    IS_GATEWAY,
    connectClient,
    everythingSection,
    groupExists,
    liveInGroup,
    procStat,
    resultText,
    sanitizerReport,
    serverSection,
    sleep,
    startDaemon,
    waitFor,
    withLog,
} from './harness.mjs';

const STUBBORN_JS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'stubborn-server.mjs');
const skip = !IS_GATEWAY && 'gateway only';
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
    const config =
        '[gateway]\nlog_level = debug\n\n' + everythingSection() + '\n' + serverSection('stubborn', { args: [STUBBORN_JS], prefix: 'stubborn' });
    daemon = await startDaemon({ config, tag: 'sup' });
    const c = await client({ name: 'setup' });
    await waitFor(
        async () => {
            const names = (await c.client.listTools()).tools.map((t) => t.name);
            return names.includes('everything__echo') && names.includes('stubborn__pids');
        },
        { timeout: 20000, interval: 200, what: 'everything__echo and stubborn__pids' },
    );
});

after(async () => {
    for (const c of clients) await c.close();
    daemon?.kill();
});

test('each upstream runs as a direct child of the daemon in its own process group', { timeout: 20000, skip }, wrap(async () => {
    const ev = await waitFor(() => daemon.child('server-everything'), { what: 'the server-everything child' });
    const st = await waitFor(() => daemon.child('stubborn-server'), { what: 'the stubborn child' });
    for (const c of [ev, st]) {
        assert.equal(c.pgid, c.pid, `child ${c.pid} (${c.argv.join(' ')}) leads its own process group`);
        assert.notEqual(c.pgid, procStat(daemon.pid).pgid);
    }
}));

test('SIGKILL of the upstream mid-call: the call errors within 1 s, ready again within 2 s', { timeout: 30000, skip }, wrap(async () => {
    const c = await client({ name: 'victim' });
    const before_ = daemon.child('server-everything');
    assert.ok(before_, 'server-everything child found');
    let firstProgress;
    const progressed = new Promise((r) => (firstProgress = r));
    const call = c.client.callTool(
        { name: 'everything__trigger-long-running-operation', arguments: { duration: 20, steps: 40 } },
        CallToolResultSchema,
        { onprogress: () => firstProgress(), timeout: 25000 },
    );
    const settled = call.then(
        (v) => ({ ok: true, v, at: Date.now() }),
        (e) => ({ ok: false, e, at: Date.now() }),
    );
    await Promise.race([progressed, sleep(5000).then(() => assert.fail('no progress before the kill: the call is not in flight'))]);

    const t0 = Date.now();
    process.kill(before_.pid, 'SIGKILL');
    const r = await Promise.race([settled, sleep(3000).then(() => null)]);
    assert.ok(r, 'the in-flight call did not settle within 3 s of the kill');
    assert.equal(r.ok, false, `the call succeeded after its server was killed: ${JSON.stringify(r.v)}`);
    assert.ok(r.at - t0 <= 1000, `the call failed ${r.at - t0} ms after the kill (limit 1000)`);
    assert.ok(r.e instanceof McpError, `a JSON-RPC error, not a transport failure: ${r.e}`);
    assert.match(r.e.message, /everything/, 'the error names the server');

    // Ready again within 2 s of the kill.
    let ok = null;
    while (Date.now() - t0 < 2000) {
        try {
            const res = await c.client.callTool({ name: 'everything__echo', arguments: { message: 'back' } }, CallToolResultSchema, { timeout: 2000 - (Date.now() - t0) + 50 });
            if (!res.isError) {
                ok = res;
                break;
            }
        } catch {
            /* still restarting */
        }
        await sleep(50);
    }
    assert.ok(ok, `server-everything was not answering again ${Date.now() - t0} ms after the kill (limit 2000)`);
    assert.equal(resultText(ok), 'Echo: back');
    const after_ = daemon.child('server-everything');
    assert.ok(after_ && after_.pid !== before_.pid, 'a new child process serves the upstream');
    const next = await c.client.callTool({ name: 'everything__get-sum', arguments: { a: 20, b: 22 } });
    assert.equal(resultText(next), 'The sum of 20 and 22 is 42.');
    // A session opened after the restart works too.
    const fresh = await client({ name: 'after-restart' });
    const echo = await fresh.client.callTool({ name: 'everything__echo', arguments: { message: 'new session' } });
    assert.equal(resultText(echo), 'Echo: new session');
}));

test('SIGTERM: in-flight calls fail, every child process group is emptied, socket removed, exit 0', { timeout: 40000, skip }, wrap(async () => {
    const c = await client({ name: 'shutdown' });
    const pids = JSON.parse(resultText(await c.client.callTool({ name: 'stubborn__pids', arguments: {} })));
    const kids = daemon.children();
    const groups = new Set(kids.map((k) => k.pgid));
    assert.ok(kids.length >= 2, `children: ${JSON.stringify(kids)}`);
    const gc = procStat(pids.grandchild);
    assert.ok(gc && groups.has(gc.pgid), 'the stubborn server helper shares its parent group');
    for (const g of groups) assert.ok(groupExists(g), `group ${g} alive before SIGTERM`);

    const inflight = c.client
        .callTool({ name: 'everything__trigger-long-running-operation', arguments: { duration: 30, steps: 30 } }, CallToolResultSchema, { timeout: 35000 })
        .then(
            () => ({ ok: true }),
            (e) => ({ ok: false, e }),
        );
    await sleep(300);
    const t0 = Date.now();
    daemon.proc.kill('SIGTERM');
    const r = await Promise.race([inflight, sleep(5000).then(() => null)]);
    assert.ok(r && !r.ok, 'the in-flight call was failed within 5 s of SIGTERM');

    const exit = await Promise.race([daemon.exited, sleep(15000).then(() => null)]);
    assert.ok(exit, `daemon still running 15 s after SIGTERM\n${daemon.tail()}`);
    const ms = Date.now() - t0;
    const report = sanitizerReport(daemon.stderr);
    assert.equal(report, null, `sanitizer report:\n${report}`);
    assert.deepEqual(exit, { code: 0, signal: null }, `daemon exit after SIGTERM\n${daemon.tail()}`);
    // The stubborn group needed the whole ladder: stdin close, 2 s, SIGTERM, 2 s, SIGKILL.
    assert.ok(ms >= 3500, `exit after ${ms} ms: the stubborn group cannot have had both grace periods`);
    assert.ok(!fs.existsSync(daemon.socket), 'the Unix socket is removed');
    for (const g of groups) {
        const left = liveInGroup(g);
        assert.deepEqual(left, [], `processes left in process group ${g}`);
        if (groupExists(g)) {
            // Only zombies (not reaped by an init that does not reap) may remain.
            assert.ok(liveInGroup(g).length === 0);
        }
    }
}));
