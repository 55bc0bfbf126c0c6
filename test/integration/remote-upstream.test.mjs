// Remote MCP upstreams ([server.NAME] url = ...): server-everything in its Streamable HTTP and
// legacy SSE modes federated by agentgate and driven by SDK clients through it: tools, the
// sampling relay, progress, cancellation, logging, resource subscriptions, status, the upstream
// restarted (a new session, transparently) and killed (a clear error at once, out of the lists,
// back when it returns); and a recording SDK server behind a bearer token: paging across the
// hop, per-client policy, and exactly the configured token upstream, never the client's.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { CallToolResultSchema, CreateMessageRequestSchema, ListToolsResultSchema } from '@modelcontextprotocol/sdk/types.js';

import {
    IS_GATEWAY,
    NODE,
    bearer,
    clientSection,
    freePort,
    rawSession,
    randomToken,
    reply,
    resultText,
    sha256Hex,
    sleep,
    testKit,
    unixFetch,
    waitFor,
} from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 60000, skip };
const procs = new Set();
const kit = testKit('remote-up');
const { wrap } = kit;

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

/** A node process of ours serving on 127.0.0.1:port once it accepts: {port, proc, out()}. */
async function startPeer(args, port, what) {
    const proc = spawn(NODE, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.add(proc);
    proc.on('exit', () => procs.delete(proc));
    let log = '';
    proc.stdout.on('data', (d) => (log += d));
    proc.stderr.on('data', (d) => (log += d));
    await waitFor(() => tcpAccepts(port), { timeout: 15000, what: `${what} on ${port}: ${log}` });
    return { port, proc, out: () => log };
}

const startEverything = async (mode, port) =>
    startPeer([path.join(here, 'everything-http.mjs'), mode, String(port ?? (await freePort()))], port, `server-everything ${mode}`);

async function everything(mode) {
    const port = await freePort();
    return startPeer([path.join(here, 'everything-http.mjs'), mode, String(port)], port, `server-everything ${mode}`);
}

async function stopPeer(p) {
    if (p.proc.exitCode !== null || p.proc.signalCode !== null) return;
    const gone = new Promise((r) => p.proc.once('exit', r));
    p.proc.kill('SIGKILL');
    await gone;
}

/** GET /agentgate/status over the daemon's socket. */
async function status(d) {
    const f = unixFetch(d.socket);
    try {
        const r = await f('http://localhost/agentgate/status');
        return await r.json();
    } finally {
        await f.close?.();
    }
}
const serverStatus = async (d, name) => (await status(d)).servers.find((s) => s.name === name);

/** Every page of tools/list. */
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

let evh; // server-everything, Streamable HTTP
let evs; // server-everything, legacy SSE
let d1;

before(async () => {
    if (skip) return;
    [evh, evs] = await Promise.all([everything('streamableHttp'), everything('sse')]);
    const config =
        '[gateway]\nlog_level = debug\n\n' +
        `[server.evh]\nurl = http://127.0.0.1:${evh.port}/mcp\ntransport = streamable-http\n\n` +
        `[server.evs]\nurl = http://127.0.0.1:${evs.port}/sse\ntransport = auto\n`;
    d1 = await kit.start({ config });
    const c = await kit.client(d1, { name: 'warmup' });
    await waitFor(async () => {
        const names = await toolNames(c);
        return names.includes('evh__echo') && names.includes('evs__echo');
    }, { timeout: 20000, interval: 100, what: 'evh__echo and evs__echo listed' });
});

after(async () => {
    await kit.cleanup();
    for (const p of [...procs]) p.kill('SIGKILL');
});

test('tools over Streamable HTTP and legacy SSE; status shows url, transport and state', T, wrap(async () => {
    const c = await kit.client(d1);
    const names = await toolNames(c);
    for (const n of ['echo', 'get-sum', 'trigger-sampling-request', 'trigger-long-running-operation'])
        for (const p of ['evh', 'evs']) assert.ok(names.includes(`${p}__${n}`), `${p}__${n} missing from ${names.join(',')}`);
    assert.equal(resultText(await c.client.callTool({ name: 'evh__echo', arguments: { message: 'over streamable ✓' } })), 'Echo: over streamable ✓');
    assert.equal(resultText(await c.client.callTool({ name: 'evs__echo', arguments: { message: 'over sse' } })), 'Echo: over sse');
    assert.equal(resultText(await c.client.callTool({ name: 'evs__get-sum', arguments: { a: 40, b: 2 } })), 'The sum of 40 and 2 is 42.');
    const h = await serverStatus(d1, 'evh');
    assert.deepEqual({ ...h, private_instances: undefined }, {
        name: 'evh', state: 'ready', url: `http://127.0.0.1:${evh.port}/mcp`, transport: 'streamable-http', private_instances: undefined,
    });
    const s = await serverStatus(d1, 'evs');
    assert.equal(s.transport, 'sse', 'auto fell back to the legacy transport');
    assert.equal(s.state, 'ready');
    assert.equal(s.last_error, undefined);
}));

test('sampling: the upstream asks, the SDK client answers, the answer reaches the tool (both transports)', T, wrap(async () => {
    const asked = [];
    const c = await kit.client(d1, {
        handlers: (cl) =>
            cl.setRequestHandler(CreateMessageRequestSchema, async (req) => {
                asked.push(req.params);
                return { model: 'remote-test-model', role: 'assistant', content: { type: 'text', text: `answer-${asked.length}` } };
            }),
    });
    for (const [p, n] of [['evh', 1], ['evs', 2]]) {
        const res = await c.client.callTool({ name: `${p}__trigger-sampling-request`, arguments: { prompt: `ping-${p}`, maxTokens: 11 } });
        assert.equal(asked.length, n, `${p}: the sampling request reached the client once`);
        assert.match(JSON.stringify(asked[n - 1].messages), new RegExp(`ping-${p}`));
        assert.equal(asked[n - 1].maxTokens, 11);
        assert.match(resultText(res), new RegExp(`answer-${n}`));
        assert.match(resultText(res), /remote-test-model/);
    }
}));

test('progress notifications cross the remote hop with the client\'s own token', T, wrap(async () => {
    const c = await kit.client(d1);
    for (const p of ['evh', 'evs']) {
        const seen = [];
        const res = await c.client.callTool(
            { name: `${p}__trigger-long-running-operation`, arguments: { duration: 1, steps: 4 } },
            CallToolResultSchema,
            { onprogress: (x) => seen.push(x), timeout: 20000 },
        );
        assert.match(resultText(res), /Duration: 1 seconds, Steps: 4/);
        assert.ok(seen.length >= 2, `${p}: progress notifications: ${JSON.stringify(seen)}`);
        assert.ok(seen.every((x) => x.total === 4));
        const sent = c.outbox.filter((m) => m.method === 'tools/call' && m.params?.name === `${p}__trigger-long-running-operation`).at(-1);
        const token = sent.params._meta.progressToken;
        const raw = c.notifications('notifications/progress').filter((m) => m.params.progressToken === token);
        assert.equal(raw.length, seen.length, 'every progress notification carries the token the client sent');
    }
}));

test('cancellation: notifications/cancelled ends the remote call at once and reaches the upstream', T, wrap(async () => {
    const s = await rawSession(d1);
    const slow = s.post({ jsonrpc: '2.0', id: 'slow-r', method: 'tools/call', params: { name: 'evh__trigger-long-running-operation', arguments: { duration: 6, steps: 6 } } });
    await sleep(400);
    const t0 = Date.now();
    const n = await s.post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'slow-r', reason: 'test' } });
    assert.equal(n.status, 202);
    const res = await slow;
    assert.ok(Date.now() - t0 < 1500, 'the cancelled call did not end promptly');
    assert.equal(reply(res, 'slow-r').error.code, -32800);
    assert.match(d1.stderr, /cancel of tools\/call forwarded to evh as \d+/);
    const e = await s.post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'evh__echo', arguments: { message: 'after cancel' } } });
    assert.equal(reply(e, 2).result.content[0].text, 'Echo: after cancel');
}));

test('logging/setLevel and resource subscriptions across the hop', T, wrap(async () => {
    const a = await kit.client(d1, { name: 'sub' });
    const b = await kit.client(d1, { name: 'bystander' });
    await sleep(300); // GET streams open
    await a.client.setLoggingLevel('debug');
    await b.client.setLoggingLevel('emergency');
    const uri = 'demo://resource/dynamic/text/4';
    await a.client.subscribeResource({ uri });
    // server-everything logs (info) every subscribe it gets: the gateway passed it on.
    await waitFor(() => a.notifications('notifications/message').some((m) => String(m.params.data).includes(`Subscribe Resource request for URI: ${uri}`)), {
        timeout: 8000,
        what: 'the upstream\'s log message about the subscribe',
    });
    const on = await a.client.callTool({ name: 'evh__toggle-subscriber-updates', arguments: {} });
    assert.match(resultText(on), /Started simulated resource updated notifications/);
    try {
        await waitFor(() => a.notifications('notifications/resources/updated').some((n) => n.params.uri === uri), {
            timeout: 15000,
            what: `notifications/resources/updated for ${uri}`,
        });
        await sleep(300);
        assert.deepEqual(b.notifications('notifications/resources/updated'), [], 'a session that did not subscribe got updates');
        assert.deepEqual(b.notifications('notifications/message').filter((m) => m.params.level !== 'emergency'), [], 'level emergency got less');
    } finally {
        await a.client.callTool({ name: 'evh__toggle-subscriber-updates', arguments: {} });
    }
}));

test('the upstream restarted mid-session: the gateway opens a new session by itself; the next call succeeds', T, wrap(async () => {
    const c = await kit.client(d1);
    assert.equal(resultText(await c.client.callTool({ name: 'evh__echo', arguments: { message: 'before' } })), 'Echo: before');
    const readies = (d1.stderr.match(/evh: ready \(/g) ?? []).length;
    const port = evh.port;
    await stopPeer(evh);
    evh = await startEverything('streamableHttp', port);
    // The old session is gone upstream (404 on its id, or the refused reconnects): the gateway
    // initialises a new one without any client doing anything.
    await waitFor(() => (d1.stderr.match(/evh: ready \(/g) ?? []).length > readies, { timeout: 20000, what: 'evh ready again' });
    const res = await c.client.callTool({ name: 'evh__echo', arguments: { message: 'after restart' } });
    assert.equal(resultText(res), 'Echo: after restart');
    assert.equal(c.transport.sessionId, c.sessionId, 'the client kept its own session');
    assert.equal((await serverStatus(d1, 'evh')).state, 'ready');
}));

test('the upstream killed: calls fail within 1 s naming the server and the reason; out of the lists; back when it returns', T, wrap(async () => {
    const c = await kit.client(d1);
    assert.equal(resultText(await c.client.callTool({ name: 'evh__echo', arguments: { message: 'alive' } })), 'Echo: alive');
    const port = evh.port;
    await stopPeer(evh);
    const t0 = Date.now();
    await assert.rejects(c.client.callTool({ name: 'evh__echo', arguments: { message: 'dead?' } }), (e) => {
        assert.match(e.message, /server 'evh' is unavailable: .*(refused|connect|closed|broke)/i);
        return true;
    });
    assert.ok(Date.now() - t0 < 1000, `the error took ${Date.now() - t0} ms`);
    const names = await toolNames(c);
    assert.ok(!names.some((n) => n.startsWith('evh__')), `evh tools still listed: ${names.filter((n) => n.startsWith('evh__'))}`);
    assert.ok(names.includes('evs__echo'), 'the other remote server stays listed');
    assert.equal(resultText(await c.client.callTool({ name: 'evs__echo', arguments: { message: 'still here' } })), 'Echo: still here');
    const st = await serverStatus(d1, 'evh');
    assert.ok(['backoff', 'starting', 'initializing'].includes(st.state), JSON.stringify(st));
    assert.match(st.last_error ?? '', /refused|connect/i);
    const cli = await d1.cli(['status']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, new RegExp(`evh\\s+(backoff|starting|initializing)\\s+streamable-http\\s+http://127\\.0\\.0\\.1:${port}/mcp`));
    assert.match(cli.stdout, /last error: .*(refused|connect)/i);
    assert.match(cli.stdout, /evs\s+ready\s+sse\s+http/);
    // The second call names the reason too, without waiting.
    await assert.rejects(c.client.callTool({ name: 'evh__echo', arguments: { message: 'x' } }), /server 'evh' is unavailable: .*refused/i);

    evh = await startEverything('streamableHttp', port);
    await waitFor(async () => (await toolNames(c)).includes('evh__echo'), { timeout: 20000, interval: 200, what: 'evh__echo back in the list' });
    assert.equal(resultText(await c.client.callTool({ name: 'evh__echo', arguments: { message: 'back' } })), 'Echo: back');
    assert.equal((await serverStatus(d1, 'evh')).last_error, undefined);
}));

test('the legacy SSE upstream killed: its stream ends, the server leaves the lists at once', T, wrap(async () => {
    const c = await kit.client(d1);
    await waitFor(async () => (await toolNames(c)).includes('evs__echo'), { timeout: 15000, what: 'evs listed' });
    const port = evs.port;
    await stopPeer(evs);
    await waitFor(async () => !(await toolNames(c)).includes('evs__echo'), { timeout: 1000, interval: 50, what: 'evs out of the list within 1 s' });
    await assert.rejects(c.client.callTool({ name: 'evs__echo', arguments: { message: 'x' } }), /server 'evs' is unavailable/);
    evs = await startEverything('sse', port);
    await waitFor(async () => (await toolNames(c)).includes('evs__echo'), { timeout: 20000, interval: 200, what: 'evs back' });
    assert.equal(resultText(await c.client.callTool({ name: 'evs__echo', arguments: { message: 'sse back' } })), 'Echo: sse back');
}));

// ---------------------------------------------------------------- bearer, paging, policy

const UP_TOKEN = randomToken('upstream');
const TOK = { alice: randomToken('alice'), bob: randomToken('bob') };
let rec;
let d2;

test('auth = bearer: the upstream sees exactly the configured token, never a client\'s', T, wrap(async () => {
    const port = await freePort();
    rec = await startPeer([path.join(here, 'recorder-server.mjs'), String(port), `Bearer ${UP_TOKEN}`], port, 'recorder');
    const config =
        '[gateway]\nauth = token\nlog_level = debug\n\n' +
        clientSection('alice', { token_sha256: sha256Hex(TOK.alice), allow: 'rec__*' }) +
        clientSection('bob', { token_sha256: sha256Hex(TOK.bob), deny: 'rec__tool-0*, rec__whoami' }) +
        `\n[server.rec]\nurl = http://127.0.0.1:${port}/mcp\nauth = bearer\ntoken_env = REC_UP_TOKEN\nisolation = shared\n` +
        `\n[server.evh]\nurl = http://127.0.0.1:${evh.port}/mcp\n`;
    d2 = await kit.start({ config, auth: 'token', env: { REC_UP_TOKEN: UP_TOKEN } });
    const alice = await kit.client(d2, { name: 'alice', headers: bearer(TOK.alice) });
    await waitFor(async () => (await toolNames(alice)).includes('rec__whoami'), { timeout: 15000, what: 'rec listed' });
    assert.equal(resultText(await alice.client.callTool({ name: 'rec__whoami', arguments: {} })), 'called whoami');
    const seen = rec.out().split('\n').filter((l) => l.startsWith('AUTH ')).map((l) => l.slice(5));
    assert.ok(seen.length >= 3, `requests seen: ${seen.length}`);
    assert.deepEqual([...new Set(seen)], [`Bearer ${UP_TOKEN}`], 'every request carried the configured token and nothing else');
    assert.ok(!rec.out().includes(TOK.alice), 'the client\'s token reached the upstream');
    // The other remote server gets no Authorization at all (server-everything does not care,
    // but the gateway's own log says what it sent: nothing to check there), and the token is
    // not in the daemon's log.
    assert.ok(!d2.stderr.includes(UP_TOKEN), 'the upstream token is in the daemon log');
}));

test('paging across the remote hop: every page of the upstream\'s list reaches the client', T, wrap(async () => {
    const alice = await kit.client(d2, { name: 'alice', headers: bearer(TOK.alice) });
    const first = await alice.client.request({ method: 'tools/list', params: {} }, ListToolsResultSchema);
    assert.equal(first.tools.length, 10, 'the upstream\'s first page');
    assert.ok(first.nextCursor, 'a cursor for the next page');
    const names = await toolNames(alice);
    const pages = 3;
    const rec25 = Array.from({ length: 25 }, (_, i) => `rec__tool-${String(i).padStart(2, '0')}`);
    assert.deepEqual(names.filter((n) => n.startsWith('rec__tool-')), rec25, `pages: ${pages}`);
    assert.ok(names.includes('rec__whoami'));
    assert.ok(!names.some((n) => n.startsWith('evh__')), 'alice\'s allow list hides evh');
}));

test('per-client policy on a remote server: hidden tools are unknown, allowed ones work', T, wrap(async () => {
    const bob = await kit.client(d2, { name: 'bob', headers: bearer(TOK.bob) });
    await waitFor(async () => (await toolNames(bob)).includes('evh__echo'), { timeout: 15000, what: 'evh listed for bob' });
    const names = await toolNames(bob);
    assert.ok(!names.includes('rec__tool-03') && !names.includes('rec__whoami'), 'deny hides rec__tool-0* and rec__whoami');
    assert.ok(names.includes('rec__tool-13'));
    const hidden = await bob.client.callTool({ name: 'rec__whoami', arguments: {} });
    assert.equal(hidden.isError, true);
    assert.equal(resultText(hidden), 'Unknown tool: rec__whoami');
    assert.equal(resultText(await bob.client.callTool({ name: 'rec__tool-13', arguments: {} })), 'called tool-13');
    assert.equal(resultText(await bob.client.callTool({ name: 'evh__echo', arguments: { message: 'bob' } })), 'Echo: bob');
    // isolation = client (the default with clients) gives each client its own remote session.
    const st = await serverStatus(d2, 'evh');
    assert.ok(st.private_instances >= 1, JSON.stringify(st));
    // And still no client token upstream.
    assert.ok(!rec.out().includes(TOK.bob));
}));

test('a refused bearer token: the server is unavailable with the reason, the others keep serving', T, wrap(async () => {
    const port = await freePort();
    const strict = await startPeer([path.join(here, 'recorder-server.mjs'), String(port), 'Bearer something-else'], port, 'strict recorder');
    const config =
        `[server.strict]\nurl = http://127.0.0.1:${port}/mcp\nauth = bearer\ntoken_env = REC_UP_TOKEN\n\n` +
        `[server.evh]\nurl = http://127.0.0.1:${evh.port}/mcp\n`;
    const d = await kit.start({ config, env: { REC_UP_TOKEN: UP_TOKEN } });
    const c = await kit.client(d);
    await waitFor(async () => (await toolNames(c)).includes('evh__echo'), { timeout: 15000, what: 'evh listed' });
    const st = await waitFor(async () => {
        const s = await serverStatus(d, 'strict');
        return s.last_error ? s : null;
    }, { timeout: 10000, what: 'strict down with a reason' });
    assert.match(st.last_error, /refused the bearer token from REC_UP_TOKEN \(HTTP 401\)/);
    await assert.rejects(c.client.callTool({ name: 'strict__whoami', arguments: {} }), /server 'strict' is unavailable: the server refused the bearer token/);
    assert.equal(resultText(await c.client.callTool({ name: 'evh__echo', arguments: { message: 'fine' } })), 'Echo: fine');
    assert.ok(!d.stderr.includes(UP_TOKEN), 'the token is in the log');
    await stopPeer(strict);
}));
