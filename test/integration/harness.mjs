// Shared helpers for agentgate's integration tests (run with `node --test`).
//
// Environment:
//   AGENTGATE_BIN      the binary under test (default: build/agentgate in the repo root)
//   AGENTGATE_TARGET   `gateway` (default) or `reference`: run the MCP-client side of the
//                      federation tests against server-everything's own Streamable HTTP mode
//                      instead (unprefixed names; gateway-only tests are skipped). For checking
//                      the tests themselves, never used by `make test`.
//   AGENTGATE_TEST_KEEP=1  keep the temporary directories (config, state, logs) for a look.
//
// Every daemon gets its own temporary directory (config, state dir, socket), binds only
// 127.0.0.1 on a free port, and is stopped by pid; nothing else is ever signalled except the
// process groups of the children it spawned, recorded while it runs.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Agent, fetch as undiciFetch } from 'undici';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../..');
export const TEST_DIR = path.resolve(here, '..');
export const BIN = path.resolve(ROOT, process.env.AGENTGATE_BIN || 'build/agentgate');
export const TARGET = process.env.AGENTGATE_TARGET === 'reference' ? 'reference' : 'gateway';
export const IS_GATEWAY = TARGET === 'gateway';
export const NODE = process.execPath;
const MODS = path.join(TEST_DIR, 'node_modules', '@modelcontextprotocol');
export const EVERYTHING_JS = path.join(MODS, 'server-everything', 'dist', 'index.js');
export const FILESYSTEM_JS = path.join(MODS, 'server-filesystem', 'dist', 'index.js');
const REF_SERVER_JS = path.join(here, 'ref-server.mjs');
export const PROTOCOL_VERSION = '2025-11-25';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn() until it returns a truthy value (which is returned) or the deadline passes. */
export async function waitFor(fn, { timeout = 5000, interval = 50, what = 'condition' } = {}) {
    const deadline = Date.now() + timeout;
    let lastErr;
    for (;;) {
        try {
            const v = await fn();
            if (v) return v;
        } catch (e) {
            lastErr = e;
        }
        if (Date.now() >= deadline) {
            const why = lastErr ? ` (last error: ${lastErr.message ?? lastErr})` : '';
            throw new Error(`timed out after ${timeout} ms waiting for ${what}${why}`);
        }
        await sleep(interval);
    }
}

/** Rejects if p does not settle within ms. */
export function within(ms, p, what = 'operation') {
    let timer;
    return Promise.race([
        p.finally(() => clearTimeout(timer)),
        new Promise((_, rej) => {
            timer = setTimeout(() => rej(new Error(`${what} did not finish within ${ms} ms`)), ms);
        }),
    ]);
}

/** A free TCP port on 127.0.0.1 (bind to 0, read, close). */
export function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.on('error', reject);
        s.listen({ port: 0, host: '127.0.0.1' }, () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

const tmpDirs = new Set();
export function makeTmp(tag = 'it') {
    const d = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), `agentgate-${tag}-`)));
    tmpDirs.add(d);
    return d;
}
process.on('exit', () => {
    if (process.env.AGENTGATE_TEST_KEEP === '1') return;
    for (const d of tmpDirs) {
        try {
            fs.rmSync(d, { recursive: true, force: true });
        } catch {
            /* best effort */
        }
    }
});

/** INI text for a [server.NAME] section. */
export function serverSection(name, { command = NODE, args = [], prefix, env = {}, cwd, roots, extra = {} } = {}) {
    const lines = [`[server.${name}]`, `command = ${command}`, `args = ${JSON.stringify(args)}`];
    if (prefix !== undefined) lines.push(`prefix = ${prefix}`);
    for (const [k, v] of Object.entries(env)) lines.push(`env.${k} = ${v}`);
    if (cwd) lines.push(`cwd = ${cwd}`);
    if (roots) lines.push(`roots = ${JSON.stringify(roots)}`);
    for (const [k, v] of Object.entries(extra)) lines.push(`${k} = ${v}`);
    return lines.join('\n') + '\n';
}
export const everythingSection = (extra) =>
    serverSection('everything', { args: [EVERYTHING_JS, 'stdio'], prefix: 'everything', ...extra });

// ---------------------------------------------------------------- /proc helpers (no procps)

/** {pid, ppid, pgid, state} of one process, or null when it is gone. */
export function procStat(pid) {
    try {
        const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
        return { pid, state: rest[0], ppid: Number(rest[1]), pgid: Number(rest[2]) };
    } catch {
        return null;
    }
}
function allPids() {
    return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
}
export function cmdline(pid) {
    try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    } catch {
        return [];
    }
}
/** Direct children of pid: [{pid, pgid, state, argv}]. */
export function childrenOf(pid) {
    const out = [];
    for (const p of allPids()) {
        const st = procStat(p);
        if (st && st.ppid === pid) out.push({ ...st, argv: cmdline(p) });
    }
    return out;
}
/** Live (non-zombie) processes whose process group is pgid. */
export function liveInGroup(pgid) {
    const out = [];
    for (const p of allPids()) {
        const st = procStat(p);
        if (st && st.pgid === pgid && st.state !== 'Z' && st.state !== 'X') out.push({ ...st, argv: cmdline(p) });
    }
    return out;
}
/** True when kill(-pgid, 0) finds a process in the group. */
export function groupExists(pgid) {
    try {
        process.kill(-pgid, 0);
        return true;
    } catch (e) {
        return e.code === 'EPERM';
    }
}

// ---------------------------------------------------------------- sanitizer reports

const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error: |SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer/;
export function sanitizerReport(text) {
    const m = SANITIZER_RE.exec(text);
    if (!m) return null;
    return text.slice(Math.max(0, m.index - 200), m.index + 3000);
}

// ---------------------------------------------------------------- the daemon

export class Daemon {
    constructor({ proc, port, socket, dir, stateDir, configPath, stderrPath }) {
        Object.assign(this, { proc, port, socket, dir, stateDir, configPath, stderrPath });
        this.pid = proc.pid;
        this.url = `http://127.0.0.1:${port}/mcp`;
        this.stdout = '';
        this.stderr = '';
        this.exit = null; // {code, signal} once exited
        this.knownGroups = new Set(); // children's process groups seen while running
        proc.stdout.setEncoding('utf8');
        proc.stderr.setEncoding('utf8');
        proc.stdout.on('data', (d) => (this.stdout += d));
        proc.stderr.on('data', (d) => {
            this.stderr += d;
            try {
                fs.appendFileSync(stderrPath, d);
            } catch {
                /* the directory may be gone at exit */
            }
        });
        this.exited = new Promise((resolve) => {
            proc.on('exit', (code, signal) => {
                this.exit = { code, signal };
                resolve(this.exit);
            });
        });
    }
    get alive() {
        return this.exit === null;
    }
    /** Direct children of the daemon (the supervised servers, after the __exec trampoline). */
    children() {
        const kids = childrenOf(this.pid);
        for (const k of kids) if (k.pgid !== this.pid) this.knownGroups.add(k.pgid);
        return kids;
    }
    /** The child whose command line mentions `needle` (e.g. 'server-everything'). */
    child(needle) {
        return this.children().find((c) => c.argv.some((a) => a.includes(needle)));
    }
    tail(n = 60) {
        return this.stderr.split('\n').slice(-n).join('\n');
    }
    /** SIGTERM, then wait; returns {code, signal, ms}. SIGKILLs after `timeout` ms. */
    async stop({ timeout = 10000 } = {}) {
        if (!this.alive) return { ...this.exit, ms: 0 };
        this.children();
        const t0 = Date.now();
        this.proc.kill('SIGTERM');
        let timer;
        const res = await Promise.race([
            this.exited,
            new Promise((r) => (timer = setTimeout(() => r(null), timeout))),
        ]);
        clearTimeout(timer);
        if (res === null) {
            this.kill();
            await this.exited;
            return { code: null, signal: 'SIGKILL', ms: Date.now() - t0, timedOut: true };
        }
        return { ...res, ms: Date.now() - t0 };
    }
    /** Last-resort cleanup: SIGKILL the daemon and any of its children's groups still alive. */
    kill() {
        if (this.alive) {
            try {
                this.children();
            } catch {
                /* ignore */
            }
            try {
                this.proc.kill('SIGKILL');
            } catch {
                /* gone */
            }
        }
        for (const g of this.knownGroups) {
            if (liveInGroup(g).length) {
                try {
                    process.kill(-g, 'SIGKILL');
                } catch {
                    /* gone */
                }
            }
        }
    }
}

const daemons = new Set();
process.on('exit', () => {
    for (const d of daemons) d.kill();
});

/**
 * Starts `agentgate serve`. `config` is the INI text (a [gateway] section without listen/socket
 * is fine: they are given on the command line), or null to run without a config file.
 * Resolves once the TCP port accepts connections.
 */
export async function startDaemon({ config = null, tag = 'gw', extraArgs = [], env = {}, readyTimeout = 15000, argv = null } = {}) {
    const dir = makeTmp(tag);
    const port = await freePort();
    const socket = path.join(dir, 'run', 'agentgate.sock');
    const stateDir = path.join(dir, 'state');
    fs.mkdirSync(path.join(dir, 'run'), { mode: 0o700 });
    fs.mkdirSync(path.join(dir, 'config'));
    // `argv` replaces the serve command line (e.g. for `agentgate wrap`).
    const args = argv ? argv({ port, socket, stateDir, dir }) : ['serve', '--listen', `127.0.0.1:${port}`, '--socket', socket, '--state-dir', stateDir];
    let configPath = null;
    if (config !== null) {
        configPath = path.join(dir, 'agentgate.ini');
        fs.writeFileSync(configPath, config);
        args.push('--config', configPath);
    }
    args.push(...extraArgs);
    const proc = spawn(BIN, args, {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
            ...process.env,
            XDG_CONFIG_HOME: path.join(dir, 'config'),
            XDG_STATE_HOME: path.join(dir, 'xdg-state'),
            XDG_RUNTIME_DIR: path.join(dir, 'run'),
            ...env,
        },
    });
    const d = new Daemon({ proc, port, socket, dir, stateDir, configPath, stderrPath: path.join(dir, 'daemon.stderr') });
    daemons.add(d);
    const spawnError = new Promise((_, rej) => proc.on('error', rej));
    try {
        await Promise.race([
            spawnError,
            waitFor(
                async () => {
                    if (!d.alive) throw new Error(`daemon exited early (${JSON.stringify(d.exit)})`);
                    return tcpAccepts(port);
                },
                { timeout: readyTimeout, what: `agentgate to listen on 127.0.0.1:${port}` },
            ),
        ]);
    } catch (e) {
        d.kill();
        e.message += `\n--- daemon stderr ---\n${d.tail()}`;
        throw e;
    }
    return d;
}

function tcpAccepts(port) {
    return new Promise((resolve) => {
        const s = net.connect({ port, host: '127.0.0.1' });
        s.once('connect', () => {
            s.destroy();
            resolve(true);
        });
        s.once('error', () => resolve(false));
    });
}

/** Runs the binary to completion (for bad-config checks). */
export function runBin(args, { timeout = 10000, env = {}, cwd } = {}) {
    return new Promise((resolve, reject) => {
        const proc = spawn(BIN, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
        let stdout = '';
        let stderr = '';
        proc.stdout.on('data', (d) => (stdout += d));
        proc.stderr.on('data', (d) => (stderr += d));
        const timer = setTimeout(() => {
            proc.kill('SIGKILL');
            reject(new Error(`${BIN} ${args.join(' ')} did not exit within ${timeout} ms; stderr: ${stderr}`));
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

// ---------------------------------------------------------------- the reference peer

/** server-everything's own Streamable HTTP server, with the same {url, port, socket} shape. */
export async function startReference() {
    const dir = makeTmp('ref');
    const port = await freePort();
    const socket = path.join(dir, 'ref.sock');
    const proc = spawn(NODE, [REF_SERVER_JS, String(port), socket], {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    const d = new Daemon({ proc, port, socket, dir, stateDir: dir, configPath: null, stderrPath: path.join(dir, 'ref.stderr') });
    daemons.add(d);
    await waitFor(async () => (await tcpAccepts(port)) && fs.existsSync(socket), {
        timeout: 15000,
        what: 'reference server',
    });
    return d;
}

/**
 * What the federation tests talk to: {url, port, socket, name(server, tool), daemon}.
 * In gateway mode, `config` is the INI text for the daemon.
 */
export async function startTarget({ config, tag } = {}) {
    if (IS_GATEWAY) {
        const daemon = await startDaemon({ config, tag });
        return { kind: 'gateway', daemon, url: daemon.url, port: daemon.port, socket: daemon.socket, name: (p, n) => `${p}__${n}` };
    }
    const daemon = await startReference();
    return { kind: 'reference', daemon, url: daemon.url, port: daemon.port, socket: daemon.socket, name: (_p, n) => n };
}

// ---------------------------------------------------------------- MCP clients

/** A fetch that speaks HTTP over the Unix socket at socketPath (URL host is kept for Host:). */
export function unixFetch(socketPath) {
    const dispatcher = new Agent({ connect: { socketPath } });
    const f = (url, init = {}) => undiciFetch(url, { ...init, dispatcher });
    f.close = () => dispatcher.close();
    return f;
}

export const FULL_CAPS = { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } };

/**
 * An SDK Client connected over Streamable HTTP (via: 'tcp' | 'unix'). Every JSON-RPC message
 * in either direction is also recorded in `inbox` / `outbox`, so tests can look at raw ids and
 * progress tokens that the SDK would otherwise hide.
 */
export async function connectClient(target, { via = 'tcp', name = 'agentgate-test', capabilities = FULL_CAPS, handlers } = {}) {
    const client = new Client({ name, version: '1.0.0' }, { capabilities });
    if (handlers) handlers(client);
    let fetchFn;
    let url = target.url;
    if (via === 'unix') {
        fetchFn = unixFetch(target.socket);
        url = 'http://localhost/mcp';
    }
    const transport = new StreamableHTTPClientTransport(new URL(url), {
        fetch: fetchFn,
        reconnectionOptions: { initialReconnectionDelay: 200, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1.5, maxRetries: 2 },
    });
    const inbox = [];
    const outbox = [];
    const errors = [];
    client.onerror = (e) => errors.push(e);
    await within(15000, client.connect(transport), 'MCP initialize');
    const onmessage = transport.onmessage;
    transport.onmessage = (m, extra) => {
        inbox.push(m);
        onmessage?.(m, extra);
    };
    const send = transport.send.bind(transport);
    transport.send = (m, opts) => {
        outbox.push(m);
        return send(m, opts);
    };
    return {
        client,
        transport,
        inbox,
        outbox,
        errors,
        sessionId: transport.sessionId,
        notifications: (method) => inbox.filter((m) => m.method === method),
        async close() {
            try {
                await within(5000, client.close(), 'client close');
            } catch {
                /* ignore */
            }
            fetchFn?.close?.();
        },
    };
}

/** The text of every text content item of a tool result, joined. */
export function resultText(res) {
    return (res.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
}

// ---------------------------------------------------------------- raw HTTP

/**
 * One HTTP request with full control of headers (node:http, no fetch rules).
 * Returns {status, headers, text, json, messages}: `messages` holds the JSON-RPC messages of an
 * SSE body, or [json] for a JSON body. SSE responses are read until `until(messages)` is true
 * or the stream ends.
 */
export function rawHttp({ port, socketPath, method = 'POST', path: p = '/mcp', headers = {}, body, timeout = 10000, until } = {}) {
    return new Promise((resolve, reject) => {
        const h = { host: socketPath ? 'localhost' : `127.0.0.1:${port}`, ...headers };
        for (const k of Object.keys(h)) if (h[k] === undefined) delete h[k];
        if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)) body = JSON.stringify(body);
        if (body !== undefined) h['content-length'] = Buffer.byteLength(body);
        const req = http.request(
            socketPath ? { socketPath, method, path: p, headers: h, setHost: false } : { host: '127.0.0.1', port, method, path: p, headers: h, setHost: false },
            (res) => {
                let text = '';
                res.setEncoding('utf8');
                const finish = () => {
                    clearTimeout(timer);
                    const out = { status: res.statusCode, headers: res.headers, text, json: null, messages: [] };
                    const ct = String(res.headers['content-type'] || '');
                    if (ct.includes('text/event-stream')) {
                        out.messages = parseSse(text);
                    } else if (text.length) {
                        try {
                            out.json = JSON.parse(text);
                            out.messages = Array.isArray(out.json) ? out.json : [out.json];
                        } catch {
                            /* not JSON */
                        }
                    }
                    resolve(out);
                };
                res.on('data', (d) => {
                    text += d;
                    if (until && String(res.headers['content-type'] || '').includes('text/event-stream') && until(parseSse(text))) {
                        res.destroy();
                        finish();
                    }
                });
                res.on('end', finish);
                res.on('error', () => finish());
            },
        );
        const timer = setTimeout(() => {
            req.destroy(new Error(`${method} ${p} timed out after ${timeout} ms`));
        }, timeout);
        req.on('error', (e) => {
            clearTimeout(timer);
            reject(e);
        });
        if (body !== undefined) req.write(body);
        req.end();
    });
}

export function parseSse(text) {
    const msgs = [];
    for (const block of text.split(/\r?\n\r?\n/)) {
        const data = block
            .split(/\r?\n/)
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).replace(/^ /, ''))
            .join('\n');
        if (!data) continue;
        try {
            msgs.push(JSON.parse(data));
        } catch {
            /* partial event */
        }
    }
    return msgs;
}

export const MCP_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

/** An initialised session made by hand: {sid, post(body, headers, opts)}. */
export async function rawSession(target, { via = 'tcp', protocolVersion = PROTOCOL_VERSION } = {}) {
    const where = via === 'unix' ? { socketPath: target.socket } : { port: target.port };
    const init = await rawHttp({
        ...where,
        headers: MCP_HEADERS,
        body: {
            jsonrpc: '2.0',
            id: 1,
            method: 'initialize',
            params: { protocolVersion, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
        },
        until: (ms) => ms.some((m) => m.id === 1),
    });
    if (init.status !== 200) throw new Error(`initialize: HTTP ${init.status}: ${init.text}`);
    const sid = init.headers['mcp-session-id'];
    if (!sid) throw new Error('initialize: no Mcp-Session-Id');
    const reply = init.messages.find((m) => m.id === 1);
    const version = reply?.result?.protocolVersion ?? protocolVersion;
    const post = (body, headers = {}, opts = {}) =>
        rawHttp({
            ...where,
            headers: { ...MCP_HEADERS, 'mcp-session-id': sid, 'mcp-protocol-version': version, ...headers },
            body,
            until: body && body.id !== undefined ? (ms) => ms.some((m) => m.id === body.id && !m.method) : undefined,
            ...opts,
        });
    const n = await post({ jsonrpc: '2.0', method: 'notifications/initialized' });
    if (n.status !== 202) throw new Error(`notifications/initialized: HTTP ${n.status}: ${n.text}`);
    return { sid, version, post, init };
}

/** The response to request `id` among raw messages. */
export function reply(res, id) {
    return res.messages.find((m) => m.id === id && !m.method);
}

/** Adds the daemon's stderr tail to a failing test's error message. */
export function withLog(getDaemon, fn) {
    return async (t) => {
        try {
            return await fn(t);
        } catch (e) {
            const d = getDaemon();
            if (d && typeof e === 'object' && e !== null) {
                try {
                    e.message = `${e.message}\n--- daemon stderr (last lines) ---\n${d.tail(40)}`;
                } catch {
                    /* read-only message */
                }
            }
            throw e;
        }
    };
}

/** Stops the daemon with SIGTERM and asserts a clean exit (status 0, no sanitizer report). */
export async function assertCleanStop(assert, daemon) {
    const groups = new Set(daemon.children().map((c) => c.pgid).filter((g) => g !== daemon.pid));
    const r = await daemon.stop({ timeout: 12000 });
    assert.ok(!r.timedOut, `daemon did not exit within 12 s of SIGTERM\n${daemon.tail()}`);
    const report = sanitizerReport(daemon.stderr);
    assert.equal(report, null, `sanitizer report in daemon stderr:\n${report}`);
    assert.deepEqual({ code: r.code, signal: r.signal }, { code: 0, signal: null }, `daemon exit after SIGTERM\n${daemon.tail()}`);
    if (daemon.socket && IS_GATEWAY) assert.ok(!fs.existsSync(daemon.socket), `socket ${daemon.socket} still exists after exit`);
    for (const g of groups) {
        const left = await waitFor(() => liveInGroup(g).length === 0, { timeout: 1000, what: `group ${g} empty` }).catch(() => false);
        assert.ok(left, `processes left in child process group ${g}: ${JSON.stringify(liveInGroup(g))}`);
    }
    return r;
}
