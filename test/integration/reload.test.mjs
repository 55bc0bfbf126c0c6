// Hot reload (`agentgate reload`, POST /agentgate/reload on the socket, SIGHUP) with a client
// that stays connected: added servers start (tools appear, list_changed), removed ones stop
// (their tools are unknown), unchanged ones keep running, a broken config is refused with
// FILE:LINE and the old config keeps serving, and a policy change applies to live sessions.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

import {
    IS_GATEWAY,
    bearer,
    clientSection,
    demoSection,
    procStat,
    randomToken,
    rawHttp,
    resultText,
    sha256Hex,
    sleep,
    testKit,
    untilTool,
    waitFor,
    assertCleanStop,
} from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 30000, skip };

const ALICE = randomToken('alice');
// Each server runs `demo-server` with distinct (harmless) options, so its process can be found.
const SERVERS = {
    one: demoSection('one', { args: ['--list-delay', '1'] }),
    two: demoSection('two', { args: ['--list-delay', '2'] }),
    three: demoSection('three', { args: ['--list-delay', '3'] }),
};
function config({ servers = ['one'], deny } = {}) {
    return (
        '[gateway]\nauth = token\nlog_level = debug\n\n' +
        clientSection('alice', { token_sha256: sha256Hex(ALICE), deny }) +
        '\n' +
        servers.map((s) => SERVERS[s]).join('\n')
    );
}

let d;
let c; // alice, connected for the whole file
let changed = 0;
const kit = testKit('reload');
const { wrap } = kit;
after(kit.cleanup);

const names = async () => (await c.client.listTools()).tools.map((t) => t.name);
const echo = async (prefix, message) => resultText(await c.client.callTool({ name: `${prefix}__echo`, arguments: { message } }));
/** pid of the daemon's child running demo-server for server NAME (by its --list-delay). */
function serverPid(name) {
    const delay = String({ one: 1, two: 2, three: 3 }[name]);
    const k = d.children().find((x) => x.argv.includes('demo-server') && x.argv[x.argv.indexOf('--list-delay') + 1] === delay);
    return k?.pid;
}
const alive = (pid) => {
    const st = procStat(pid);
    return st !== null && st.state !== 'Z' && st.state !== 'X';
};
async function reload() {
    const r = await d.cli(['reload']);
    assert.equal(r.code, 0, `agentgate reload exited ${r.code}: ${r.stderr}`);
    return r;
}

before(async () => {
    if (!IS_GATEWAY) return;
    d = await kit.start({ config: config(), auth: 'token' });
    c = await kit.client(d, {
        headers: bearer(ALICE),
        handlers: (cl) => cl.setNotificationHandler(ToolListChangedNotificationSchema, () => changed++),
    });
    await untilTool(c, 'one__echo');
    await sleep(300); // the GET stream is open
});

test('reload adds a server: its tools appear in the live session, list_changed is sent, the others keep running', T, wrap(async () => {
    const onePid = serverPid('one');
    assert.ok(onePid, 'server one runs');
    const before = changed;
    d.writeConfig(config({ servers: ['one', 'two'] }));
    await reload();
    await waitFor(async () => (await names()).includes('two__echo'), { timeout: 10000, interval: 100, what: 'two__echo after the reload' });
    await waitFor(() => changed > before, { timeout: 5000, what: 'notifications/tools/list_changed' });
    assert.equal(await echo('two', 'new server'), 'new server');
    assert.equal(await echo('one', 'old server'), 'old server');
    assert.equal(serverPid('one'), onePid, 'an unchanged server is not restarted');
}));

test('reload removes a server: its tools are gone and calling them is an unknown tool', T, wrap(async () => {
    const onePid = serverPid('one');
    assert.ok(onePid, 'server one runs');
    const before = changed;
    d.writeConfig(config({ servers: ['two'] }));
    await reload();
    await waitFor(async () => !(await names()).some((n) => n.startsWith('one__')), { timeout: 10000, interval: 100, what: 'one__* to disappear' });
    await waitFor(() => changed > before, { timeout: 5000, what: 'notifications/tools/list_changed' });
    const res = await c.client.callTool({ name: 'one__echo', arguments: { message: 'x' } });
    assert.equal(res.isError, true, JSON.stringify(res));
    assert.equal(resultText(res), 'Unknown tool: one__echo');
    await waitFor(() => !alive(onePid), { timeout: 10000, what: `the removed server's process ${onePid} to exit` });
    assert.equal(await echo('two', 'still here'), 'still here');
}));

test('a broken config: reload exits 1 with FILE:LINE, the daemon keeps serving the old config', T, wrap(async () => {
    const good = config({ servers: ['two'] });
    const line = good.split('\n').length; // the line the broken header lands on
    d.writeConfig(good + '[server.broken\ncommand = /nonexistent\n' + SERVERS.three);
    const r = await d.cli(['reload']);
    assert.equal(r.code, 1, `agentgate reload of a broken config: code ${r.code}, stderr ${r.stderr}`);
    assert.ok(r.stderr.includes(`agentgate.ini:${line}`), `stderr names agentgate.ini:${line}: ${r.stderr}`);
    // The control endpoint itself: 400 {"ok":false,"error":"FILE:LINE: ..."}.
    const raw = await rawHttp({ socketPath: d.socket, path: '/agentgate/reload', headers: { 'content-type': 'application/json' }, body: {} });
    assert.equal(raw.status, 400, raw.text);
    assert.equal(raw.json?.ok, false, raw.text);
    assert.ok(String(raw.json?.error).includes(`agentgate.ini:${line}`), raw.text);
    // Nothing of the broken file was applied.
    assert.ok(d.alive);
    assert.equal(await echo('two', 'old config'), 'old config');
    const n = await names();
    assert.ok(!n.some((x) => x.startsWith('three__')), n.join(', '));
    // Control endpoints are not served on TCP.
    const tcp = await rawHttp({ port: d.port, path: '/agentgate/reload', headers: { ...bearer(ALICE), 'content-type': 'application/json' }, body: {} });
    assert.notEqual(tcp.status, 200, `POST /agentgate/reload over TCP: ${tcp.status} ${tcp.text}`);
    d.writeConfig(good);
}));

test('SIGHUP reloads too', T, wrap(async () => {
    d.writeConfig(config({ servers: ['two', 'three'] }));
    const before = changed;
    process.kill(d.pid, 'SIGHUP');
    await waitFor(async () => (await names()).includes('three__echo'), { timeout: 10000, interval: 100, what: 'three__echo after SIGHUP' });
    assert.ok(d.alive, 'the daemon survives SIGHUP');
    assert.equal(await echo('three', 'hup'), 'hup');
    await waitFor(() => changed > before, { timeout: 5000, what: 'notifications/tools/list_changed' });
    // A good reload over the socket answers 200 {"ok":true}.
    const raw = await rawHttp({ socketPath: d.socket, path: '/agentgate/reload', headers: { 'content-type': 'application/json' }, body: {} });
    assert.equal(raw.status, 200, raw.text);
    assert.equal(raw.json?.ok, true, raw.text);
}));

test('a policy change by reload applies to the live session', T, wrap(async () => {
    assert.ok((await names()).includes('two__echo'));
    const twoPid = serverPid('two');
    const before = changed;
    d.writeConfig(config({ servers: ['two', 'three'], deny: 'two__echo' }));
    await reload();
    await waitFor(async () => !(await names()).includes('two__echo'), { timeout: 5000, interval: 100, what: 'two__echo to be hidden from alice' });
    const n = await names();
    assert.ok(n.includes('two__sum') && n.includes('three__echo'), n.join(', '));
    const res = await c.client.callTool({ name: 'two__echo', arguments: { message: 'x' } });
    assert.equal(res.isError, true);
    assert.equal(resultText(res), 'Unknown tool: two__echo');
    await waitFor(() => changed > before, { timeout: 5000, what: 'notifications/tools/list_changed after the policy change' });
    assert.equal(serverPid('two'), twoPid, 'a client policy change does not restart servers');
    // And back.
    d.writeConfig(config({ servers: ['two', 'three'] }));
    await reload();
    await waitFor(async () => (await names()).includes('two__echo'), { timeout: 5000, interval: 100, what: 'two__echo to be listed again' });
    assert.equal(await echo('two', 'allowed again'), 'allowed again');
}));

test('after all those reloads the daemon stops cleanly (exit 0, no sanitizer report, no child left)', T, wrap(async () => {
    await c.close();
    await assertCleanStop(assert, d);
}));
