// Remote servers and the rest of the engine: reload adds, changes and removes them like stdio
// ones (a removed or changed one ends its session with DELETE); a changed tool definition on a
// remote server is quarantined like a stdio one's; remote calls are audited with their server.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { ListToolsResultSchema } from '@modelcontextprotocol/sdk/types.js';

import { IS_GATEWAY, NODE, assertCleanStop, freePort, resultText, testKit, waitFor } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 60000, skip };
const kit = testKit('remote-reload');
const { wrap } = kit;
const procs = new Set();

function tcpAccepts(port) {
    return new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.on('connect', () => {
            s.destroy();
            resolve(true);
        });
        s.on('error', () => resolve(false));
    });
}

/** recorder-server.mjs on `port`: {port, proc, out(), methods()}. */
async function recorder(port, suffix = '') {
    port = port ?? (await freePort());
    const proc = spawn(NODE, [path.join(here, 'recorder-server.mjs'), String(port), '-', suffix], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.add(proc);
    proc.on('exit', () => procs.delete(proc));
    let log = '';
    proc.stdout.on('data', (d) => (log += d));
    proc.stderr.on('data', (d) => (log += d));
    await waitFor(() => tcpAccepts(port), { timeout: 15000, what: `recorder on ${port}: ${log}` });
    return { port, proc, out: () => log, methods: () => log.split('\n').filter((l) => l.startsWith('METHOD ')).map((l) => l.slice(7)) };
}

async function stop(r) {
    if (r.proc.exitCode !== null || r.proc.signalCode !== null) return;
    const gone = new Promise((res) => r.proc.once('exit', res));
    r.proc.kill('SIGKILL');
    await gone;
}

async function toolNames(c) {
    const names = [];
    let cursor;
    let pages = 0;
    do {
        const r = await c.client.request({ method: 'tools/list', params: cursor ? { cursor } : {} }, ListToolsResultSchema);
        names.push(...r.tools.map((t) => t.name));
        cursor = r.nextCursor;
    } while (cursor && ++pages < 20);
    return names;
}

const section = (name, port) => `\n[server.${name}]\nurl = http://127.0.0.1:${port}/mcp\n`;

let a;
let b;
let a2;
let d;

before(async () => {
    if (skip) return;
    [a, b, a2] = await Promise.all([recorder(), recorder(), recorder()]);
    d = await kit.start({ config: '[gateway]\nlog_level = debug\n' + section('ra', a.port) });
});

after(async () => {
    await kit.cleanup();
    for (const p of [...procs]) p.kill('SIGKILL');
});

test('reload adds, changes and removes remote servers; removed sessions end with DELETE', T, wrap(async () => {
    const c = await kit.client(d);
    await waitFor(async () => (await toolNames(c)).includes('ra__whoami'), { timeout: 15000, what: 'ra listed' });
    // Add rb.
    d.writeConfig('[gateway]\nlog_level = debug\n' + section('ra', a.port) + section('rb', b.port));
    let r = await d.cli(['reload']);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(async () => (await toolNames(c)).includes('rb__whoami'), { timeout: 15000, what: 'rb listed after the reload' });
    assert.equal(resultText(await c.client.callTool({ name: 'rb__whoami', arguments: {} })), 'called whoami');
    // Change ra's url (to a2) and remove rb.
    const aPosts = a.methods().length;
    d.writeConfig('[gateway]\nlog_level = debug\n' + section('ra', a2.port));
    r = await d.cli(['reload']);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(async () => !(await toolNames(c)).includes('rb__whoami'), { timeout: 10000, what: 'rb gone' });
    await waitFor(() => b.methods().includes('DELETE'), { timeout: 5000, what: 'the removed server\'s session ended with DELETE' });
    await waitFor(() => a.methods().slice(aPosts).includes('DELETE'), { timeout: 5000, what: 'the changed server\'s old session ended with DELETE' });
    const before2 = a2.methods().length;
    await waitFor(async () => (await toolNames(c)).includes('ra__whoami'), { timeout: 15000, what: 'ra back' });
    assert.equal(resultText(await c.client.callTool({ name: 'ra__whoami', arguments: {} })), 'called whoami');
    assert.ok(a2.methods().length > before2 || a2.methods().includes('POST'), 'ra now talks to the new url');
    const aAfter = a.methods().length;
    await c.client.callTool({ name: 'ra__whoami', arguments: {} });
    assert.equal(a.methods().length, aAfter, 'the old url gets nothing more');
}));

test('remote calls are audited with their server and tool', T, wrap(async () => {
    const file = path.join(d.stateDir, 'audit.jsonl');
    const recs = await waitFor(() => {
        if (!fs.existsSync(file)) return null;
        const rs = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
        return rs.filter((x) => x.server === 'ra' || x.server === 'rb').length >= 2 ? rs : null;
    }, { timeout: 5000, what: 'audit lines for the remote calls' });
    const rb = recs.find((x) => x.server === 'rb');
    assert.equal(rb.tool, 'rb__whoami');
    assert.equal(rb.outcome, 'ok');
}));

test('a changed tool definition on a remote server is quarantined until approved', T, wrap(async () => {
    const c = await kit.client(d);
    await waitFor(async () => (await toolNames(c)).includes('ra__whoami'), { timeout: 15000, what: 'ra listed' });
    // The server restarts with a different description of whoami: a new session, a new list.
    const port = a2.port;
    await stop(a2);
    a2 = await recorder(port, ' (and now something else)');
    // The gateway notices the restart (a 404 on its old session, on the GET stream's reconnect
    // or on this call, which may fail) and initialises a new session.
    await c.client.callTool({ name: 'ra__tool-01', arguments: {} }).catch(() => {});
    await waitFor(() => /tool whoami changed since it was pinned/.test(d.stderr), { timeout: 20000, interval: 200, what: 'the quarantine' });
    await waitFor(async () => {
        const names = await toolNames(c);
        return names.includes('ra__tool-01') && !names.includes('ra__whoami');
    }, { timeout: 10000, what: 'whoami hidden, the others listed' });
    const hidden = await c.client.callTool({ name: 'ra__whoami', arguments: {} });
    assert.equal(hidden.isError, true);
    const r = await d.cli(['approve', 'ra', 'whoami']);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(async () => (await toolNames(c)).includes('ra__whoami'), { timeout: 10000, what: 'whoami back after approve' });
    assert.equal(resultText(await c.client.callTool({ name: 'ra__whoami', arguments: {} })), 'called whoami');
}));

test('isolation = session: one remote MCP session per client session, ended with it', T, wrap(async () => {
    const r = await recorder();
    const sessions = () => r.out().split('\n').filter((l) => l.startsWith('SESSION ')).map((l) => l.slice(8));
    const di = await kit.start({ tag: 'remote-iso', config: '[gateway]\nlog_level = debug\n' + section('iso', r.port) + 'isolation = session\n' });
    const c1 = await kit.client(di);
    const c2 = await kit.client(di);
    for (const c of [c1, c2]) {
        await waitFor(async () => (await toolNames(c)).includes('iso__whoami'), { timeout: 15000, what: 'iso listed' });
        assert.equal(resultText(await c.client.callTool({ name: 'iso__whoami', arguments: {} })), 'called whoami');
    }
    const ids = sessions();
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(ids.length >= 2, `remote sessions: ${ids.length}`);
    const st = await (async () => {
        const res = await di.cli(['status', '--json']);
        assert.equal(res.code, 0, res.stderr);
        return JSON.parse(res.stdout).servers.find((s) => s.name === 'iso');
    })();
    assert.ok(st.private_instances >= 2, JSON.stringify(st));
    const deletes = r.methods().filter((m) => m === 'DELETE').length;
    await c1.transport.terminateSession(); // DELETE /mcp: the client's session ends
    await c1.close();
    await waitFor(() => r.methods().filter((m) => m === 'DELETE').length > deletes, { timeout: 5000, what: 'the ended session\'s remote session deleted' });
    assert.equal(resultText(await c2.client.callTool({ name: 'iso__whoami', arguments: {} })), 'called whoami', 'the other session keeps its own');
    // The server goes away: status tells why, for per-session instances too.
    await stop(r);
    await assert.rejects(c2.client.callTool({ name: 'iso__whoami', arguments: {} }), /server 'iso' is unavailable/);
    const down = await di.cli(['status']);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /iso\s+private\s+auto\s+http:\/\/127\.0\.0\.1:\d+\/mcp\s+\(1 private instance\(s\)\)/);
    assert.match(down.stdout, /last error: connect to 127\.0\.0\.1:\d+ failed/);
    await kit.closeClients();
    await assertCleanStop(assert, di);
}));

test('the daemon stops cleanly and ends its remote sessions', T, wrap(async () => {
    await kit.closeClients();
    const n = a2.methods().filter((m) => m === 'DELETE').length;
    await assertCleanStop(assert, d);
    // Best effort within the shutdown: the DELETE may or may not have gone out; the daemon
    // never waits long for it.
    assert.ok(a2.methods().filter((m) => m === 'DELETE').length >= n);
}));
