// `agentgate bridge`: the SDK's StdioClientTransport spawns the bridge exactly as Claude Desktop
// does, and the MCP Inspector's CLI drives it too. Covers pass-through (tools, progress,
// sampling, elicitation), starting the daemon when none runs (one daemon for two bridges),
// surviving a SIGKILLed daemon without the client re-initialising, and stdin EOF.
//
// Daemons the bridge starts are found through /proc by their --socket argument (always inside
// this test's temporary directories) and stopped by pid.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
    CallToolResultSchema,
    CreateMessageRequestSchema,
    ElicitRequestSchema,
    ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

import {
    BIN,
    FULL_CAPS,
    IS_GATEWAY,
    TEST_DIR,
    everythingSection,
    makeTmp,
    procStat,
    resultText,
    sanitizerReport,
    serverSection,
    sleep,
    startDaemon,
    waitFor,
    serveDaemonsFor,
    within,
} from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 30000, skip };
const INSPECTOR = path.join(TEST_DIR, 'node_modules', '.bin', 'mcp-inspector');

let daemon;
const clients = [];
const started = new Set(); // pids of daemons the bridge started

const demoSection = () => serverSection('demo', { command: BIN, args: ['demo-server'], prefix: 'demo' });

before(async () => {
    if (!IS_GATEWAY) return;
    daemon = await startDaemon({ config: demoSection() + '\n' + everythingSection(), tag: 'bridge' });
});

after(async () => {
    for (const c of clients) await c.close();
    daemon?.kill();
    for (const pid of started) await stopPid(pid);
    for (const c of clients) {
        const report = sanitizerReport(c.stderr);
        assert.equal(report, null, `sanitizer report in a bridge's stderr:\n${report}`);
    }
});

/** A bridge spawned by the SDK's stdio transport, with its stderr collected. */
async function bridgeClient(args, { env = {}, capabilities = FULL_CAPS, handlers, name = 'bridge-test' } = {}) {
    const client = new Client({ name, version: '1.0.0' }, { capabilities });
    if (handlers) handlers(client);
    const transport = new StdioClientTransport({
        command: BIN,
        args: ['bridge', ...args],
        env: { ...process.env, ...env },
        stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (d) => (stderr += d));
    const c = {
        client,
        transport,
        get stderr() {
            return stderr;
        },
        async close() {
            try {
                await within(5000, client.close(), 'client close');
            } catch {
                /* ignore */
            }
        },
    };
    clients.push(c);
    try {
        await within(15000, client.connect(transport), 'MCP initialize through the bridge');
    } catch (e) {
        e.message += `\n--- bridge stderr ---\n${stderr}`;
        throw e;
    }
    return c;
}

const viaDaemon = (opts) => bridgeClient(['--socket', daemon.socket, '--client', 'test'], opts);

function alive(pid) {
    const st = procStat(pid);
    return st !== null && st.state !== 'Z' && st.state !== 'X';
}

async function stopPid(pid) {
    if (!alive(pid)) return;
    try {
        process.kill(pid, 'SIGTERM');
    } catch {
        return;
    }
    const gone = await waitFor(() => !alive(pid), { timeout: 8000, what: `pid ${pid} to exit` }).catch(() => false);
    if (!gone) {
        try {
            process.kill(pid, 'SIGKILL');
        } catch {
            /* gone */
        }
    }
}

/** A directory, config (demo server only, no TCP) and bridge arguments for a daemon the bridge starts. */
function ownDaemonSetup(tag) {
    const dir = makeTmp(tag);
    const sock = path.join(dir, 'run', 'agentgate.sock');
    const config = path.join(dir, 'agentgate.ini');
    fs.writeFileSync(config, '[gateway]\nlisten = off\n\n' + demoSection());
    const stateDir = path.join(dir, 'state');
    const env = {
        XDG_RUNTIME_DIR: path.join(dir, 'xdg-run'),
        XDG_STATE_HOME: path.join(dir, 'xdg-state'),
        XDG_CONFIG_HOME: path.join(dir, 'xdg-config'),
    };
    return { dir, sock, stateDir, env, args: ['--socket', sock, '--config', config, '--state-dir', stateDir, '--client', tag] };
}

// ------------------------------------------------------------------ pass-through

test('tools/list through the bridge shows the prefixed tools of every server', T, async () => {
    const c = await viaDaemon();
    const names = (await c.client.listTools()).tools.map((t) => t.name);
    for (const n of ['demo__echo', 'demo__sleep', 'everything__echo', 'everything__trigger-sampling-request'])
        assert.ok(names.includes(n), `${n} missing from ${names.join(', ')}`);
    const res = await c.client.callTool({ name: 'demo__echo', arguments: { message: 'through the bridge ✓ "q"' } });
    assert.equal(resultText(res), 'through the bridge ✓ "q"');
    const sum = await c.client.callTool({ name: 'everything__get-sum', arguments: { a: 2, b: 40 } });
    assert.match(resultText(sum), /42/);
});

test('progress notifications reach the client through the bridge', T, async () => {
    const c = await viaDaemon();
    const seen = [];
    const res = await c.client.callTool({ name: 'demo__sleep', arguments: { ms: 450 } }, CallToolResultSchema, {
        onprogress: (p) => seen.push(p),
        timeout: 10000,
    });
    assert.equal(res.isError ?? false, false);
    assert.ok(seen.length >= 2, `progress seen: ${JSON.stringify(seen)}`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i].progress >= seen[i - 1].progress);
    const seen2 = [];
    await c.client.callTool({ name: 'everything__trigger-long-running-operation', arguments: { duration: 1, steps: 3 } }, CallToolResultSchema, {
        onprogress: (p) => seen2.push(p),
        timeout: 15000,
    });
    assert.ok(seen2.length >= 1 && seen2.every((p) => p.total === 3), JSON.stringify(seen2));
});

test('sampling round trip: bridge -> daemon -> server-everything -> client and back', T, async () => {
    const asked = [];
    const c = await viaDaemon({
        handlers: (cl) =>
            cl.setRequestHandler(CreateMessageRequestSchema, async (req) => {
                asked.push(req.params);
                return { model: 'bridge-model', role: 'assistant', content: { type: 'text', text: 'bridge-sampled-91c2' } };
            }),
    });
    const res = await c.client.callTool({ name: 'everything__trigger-sampling-request', arguments: { prompt: 'via-bridge', maxTokens: 9 } });
    assert.equal(asked.length, 1);
    assert.match(JSON.stringify(asked[0].messages), /via-bridge/);
    assert.match(resultText(res), /bridge-sampled-91c2/);
    assert.match(resultText(res), /bridge-model/);
});

test('elicitation round trip through the bridge', T, async () => {
    const asked = [];
    const c = await viaDaemon({
        handlers: (cl) =>
            cl.setRequestHandler(ElicitRequestSchema, async (req) => {
                asked.push(req.params);
                return { action: 'accept', content: { name: 'Grace Hopper', check: true, integer: 11 } };
            }),
    });
    const res = await c.client.callTool({ name: 'everything__trigger-elicitation-request', arguments: {} });
    assert.equal(asked.length, 1);
    const text = resultText(res);
    assert.match(text, /Grace Hopper/);
    assert.match(text, /Favorite Integer: 11/);
});

// ------------------------------------------------------------------ the MCP Inspector CLI

function runInspector(args, { timeout = 20000 } = {}) {
    return new Promise((resolve, reject) => {
        const dir = makeTmp('insp');
        const proc = spawn(INSPECTOR, ['--cli', BIN, 'bridge', '--socket', daemon.socket, '--client', 'inspector', ...args], {
            cwd: dir,
            stdio: ['ignore', 'pipe', 'pipe'],
            env: { ...process.env, HOME: dir, MCP_CATALOG_PATH: path.join(dir, 'catalog.json') },
        });
        let stdout = '';
        let stderr = '';
        proc.stdout.on('data', (d) => (stdout += d));
        proc.stderr.on('data', (d) => (stderr += d));
        const timer = setTimeout(() => {
            proc.kill('SIGKILL');
            reject(new Error(`mcp-inspector did not exit within ${timeout} ms; stderr: ${stderr}`));
        }, timeout);
        proc.on('error', (e) => {
            clearTimeout(timer);
            reject(e);
        });
        proc.on('exit', (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, stdout, stderr });
        });
    });
}

test('the MCP Inspector CLI lists tools through the bridge', T, async () => {
    const r = await runInspector(['--method', 'tools/list']);
    assert.equal(r.code, 0, r.stderr);
    const names = JSON.parse(r.stdout).tools.map((t) => t.name);
    assert.ok(names.includes('demo__echo') && names.includes('everything__echo'), names.join(', '));
});

test('the MCP Inspector CLI calls a tool through the bridge', T, async () => {
    const r = await runInspector(['--method', 'tools/call', '--tool-name', 'demo__echo', '--tool-arg', 'message=hi']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).content, [{ type: 'text', text: 'hi' }]);
});

// ------------------------------------------------------------------ lifecycle

test('stdin EOF: the bridge ends its session and exits 0', T, async () => {
    const proc = spawn(BIN, ['bridge', '--socket', daemon.socket], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => (out += d));
    const exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
    proc.stdin.write(
        JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'eof', version: '1' } } }) + '\n',
    );
    await waitFor(() => out.includes('"id":1'), { what: 'the initialize reply' });
    // A request still in flight at EOF gets its reply before the bridge exits.
    proc.stdin.end(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }) + '\n');
    const r = await within(5000, exited, 'bridge exit after stdin EOF');
    assert.deepEqual(r, { code: 0, signal: null });
    const lines = out.trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.find((m) => m.id === 2)?.result?.tools?.length > 0, 'tools/list answered before exit');
});

test('no daemon running: the bridge starts one, detached, logging to the state dir', T, async () => {
    const s = ownDaemonSetup('bstart');
    const t0 = Date.now();
    const c = await bridgeClient(s.args, { env: s.env });
    const pids = serveDaemonsFor(s.sock);
    for (const p of pids) started.add(p);
    assert.equal(pids.length, 1, `daemons for ${s.sock}: ${pids}`);
    assert.equal(resultText(await c.client.callTool({ name: 'demo__echo', arguments: { message: 'cold' } })), 'cold');
    assert.ok(Date.now() - t0 < 10000);
    const st = procStat(pids[0]);
    assert.equal(st.pgid, pids[0], 'the daemon leads its own process group (setsid)');
    assert.ok(fs.existsSync(path.join(s.stateDir, 'daemon.log')), 'daemon.log in the state dir');
    // The daemon outlives the bridge.
    await c.close();
    await sleep(200);
    assert.ok(alive(pids[0]), 'the daemon keeps running after the bridge exits');
    await stopPid(pids[0]);
});

test('no --config: the bridge reads the default config file and finds the socket it names', T, async () => {
    const s = ownDaemonSetup('bdefault');
    // The socket is named only in $XDG_CONFIG_HOME/agentgate/agentgate.ini, not where the
    // default socket would be.
    const file = path.join(s.env.XDG_CONFIG_HOME, 'agentgate', 'agentgate.ini');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, `[gateway]\nlisten = off\nsocket = ${s.sock}\n\n` + demoSection());
    const c = await bridgeClient(['--state-dir', s.stateDir], { env: s.env });
    const pids = serveDaemonsFor(s.sock);
    for (const p of pids) started.add(p);
    assert.equal(pids.length, 1, `daemons for ${s.sock}: ${pids}\n${c.stderr}`);
    assert.equal(resultText(await c.client.callTool({ name: 'demo__echo', arguments: { message: 'default config' } })), 'default config');
    await c.close();
    await stopPid(pids[0]);
});

test('two bridges starting at once start exactly one daemon', T, async () => {
    const s = ownDaemonSetup('btwo');
    const [a, b] = await Promise.all([bridgeClient(s.args, { env: s.env }), bridgeClient(s.args, { env: s.env })]);
    const pids = serveDaemonsFor(s.sock);
    for (const p of pids) started.add(p);
    assert.equal(pids.length, 1, `daemons for ${s.sock}: ${pids}\n${a.stderr}\n${b.stderr}`);
    assert.equal(resultText(await a.client.callTool({ name: 'demo__echo', arguments: { message: 'a' } })), 'a');
    assert.equal(resultText(await b.client.callTool({ name: 'demo__echo', arguments: { message: 'b' } })), 'b');
    await a.close();
    await b.close();
    await stopPid(pids[0]);
});

test('daemon SIGKILLed: requests in flight fail, the next call succeeds on the same client', { ...T, timeout: 40000 }, async () => {
    const s = ownDaemonSetup('bkill');
    const updates = [];
    const c = await bridgeClient(s.args, {
        env: s.env,
        handlers: (cl) => cl.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => updates.push(n.params.uri)),
    });
    const [first] = serveDaemonsFor(s.sock);
    started.add(first);
    assert.ok(first, 'a daemon was started');
    await c.client.subscribeResource({ uri: 'demo://readme' });
    await c.client.setLoggingLevel('debug');
    assert.equal(resultText(await c.client.callTool({ name: 'demo__echo', arguments: { message: 'before' } })), 'before');

    const inflight = c.client.callTool({ name: 'demo__sleep', arguments: { ms: 8000 } }, CallToolResultSchema, { timeout: 20000 });
    await sleep(300);
    process.kill(first, 'SIGKILL');
    await assert.rejects(within(5000, inflight, 'the in-flight call'), /daemon went away/);

    // The same Client object, no new initialize: the bridge restarted the daemon and replayed.
    const res = await within(10000, c.client.callTool({ name: 'demo__echo', arguments: { message: 'after' } }), 'the call after the restart');
    assert.equal(resultText(res), 'after');
    const now = serveDaemonsFor(s.sock);
    for (const p of now) started.add(p);
    assert.equal(now.length, 1, `daemons after the restart: ${now}`);
    assert.notEqual(now[0], first, 'a new daemon');
    // The subscription was replayed: an update for it reaches this client.
    await c.client.callTool({ name: 'demo__touch', arguments: { uri: 'demo://readme' } });
    await waitFor(() => updates.includes('demo://readme'), { timeout: 5000, what: 'resources/updated after the replay' });
    assert.match(c.stderr, /reconnected/);
    await c.close();
    await stopPid(now[0]);
});

test('a daemon that cannot start: its log tail on stderr, queued requests answered, exit 1', T, async () => {
    const s = ownDaemonSetup('bfail');
    // The config asks for a TCP port that something else holds, so `serve` exits at once.
    const net = await import('node:net');
    const holder = net.createServer();
    await new Promise((r) => holder.listen({ port: 0, host: '127.0.0.1' }, r));
    const port = holder.address().port;
    const config = s.args[s.args.indexOf('--config') + 1];
    fs.writeFileSync(config, `[gateway]\nlisten = 127.0.0.1:${port}\n\n` + demoSection());
    try {
        const proc = spawn(BIN, ['bridge', ...s.args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...s.env } });
        let out = '';
        let err = '';
        proc.stdout.on('data', (d) => (out += d));
        proc.stderr.on('data', (d) => (err += d));
        const exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
        // The bridge may give up before our write lands: that EPIPE is not a failure.
        proc.stdin.on('error', () => {});
        proc.stdin.write(
            JSON.stringify({ jsonrpc: '2.0', id: 'init-1', method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'f', version: '1' } } }) + '\n',
        );
        const r = await within(8000, exited, 'bridge exit');
        assert.deepEqual(r, { code: 1, signal: null }, err);
        assert.match(err, /cannot listen on 127\.0\.0\.1:\d+/, 'the daemon log tail is on stderr');
        assert.match(err, /exited early/);
        // A request it read before giving up is answered with an error; nothing else is written.
        const msgs = out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
        assert.ok(msgs.length <= 1, out);
        for (const m of msgs) {
            assert.equal(m.id, 'init-1');
            assert.equal(m.error.code, -32603);
        }
        assert.deepEqual(serveDaemonsFor(s.sock), []);
    } finally {
        holder.close();
    }
});

test('daemon stopped with SIGTERM while a client is connected: the bridge starts a new one', T, async () => {
    const s = ownDaemonSetup('bterm');
    const c = await bridgeClient(s.args, { env: s.env });
    const [first] = serveDaemonsFor(s.sock);
    started.add(first);
    assert.equal(resultText(await c.client.callTool({ name: 'demo__echo', arguments: { message: 'one' } })), 'one');
    process.kill(first, 'SIGTERM');
    await waitFor(() => !alive(first), { timeout: 8000, what: 'the first daemon to exit' });
    const res = await within(15000, c.client.callTool({ name: 'demo__echo', arguments: { message: 'two' } }), 'the call after the restart');
    assert.equal(resultText(res), 'two', c.stderr);
    const now = serveDaemonsFor(s.sock);
    for (const p of now) started.add(p);
    assert.equal(now.length, 1);
    await c.close();
    await stopPid(now[0]);
});

test('large results and many concurrent calls pass through intact', T, async () => {
    const c = await viaDaemon();
    const big = await c.client.callTool({ name: 'demo__blob', arguments: { bytes: 3000000 } });
    const text = resultText(big);
    assert.equal(text.length, 3000000);
    assert.ok(/^x+$/.test(text));
    const calls = [];
    for (let i = 0; i < 60; i++) calls.push(c.client.callTool({ name: i % 2 ? 'demo__echo' : 'everything__echo', arguments: { message: `m${i}` } }));
    const res = await Promise.all(calls);
    res.forEach((r, i) => assert.match(resultText(r), new RegExp(`m${i}$`)));
});

test('a cancelled request is no longer awaited: stdin EOF right after exits at once', T, async () => {
    const proc = spawn(BIN, ['bridge', '--socket', daemon.socket], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => (out += d));
    const exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
    const send = (m) => proc.stdin.write(JSON.stringify(m) + '\n');
    send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'cx', version: '1' } } });
    await waitFor(() => out.includes('"id":1'), { what: 'the initialize reply' });
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    send({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'demo__sleep', arguments: { ms: 10000 } } });
    await sleep(100);
    send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 7, reason: 'test' } });
    const t0 = Date.now();
    proc.stdin.end();
    const r = await within(5000, exited, 'bridge exit');
    assert.deepEqual(r, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
});
