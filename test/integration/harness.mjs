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
// A test file that starts its own daemons and clients takes its scaffolding from testKit()
// (start, restart, client, wrap, cleanup for after()); untilTool() waits for a federated tool.
//
// Daemons are started with `serve --auth none` unless a test asks for auth: 'token' (or null:
// the config decides); Daemon#restart() simulates a crash (SIGKILL) and starts a new daemon on
// the same port, socket, state dir and config; Daemon#cli() runs `agentgate reload|approve|
// rotate-key|token ...` against it.
//
// Every daemon gets its own temporary directory (config, state dir, socket), binds only
// 127.0.0.1 on a free port, and is stopped by pid; nothing else is ever signalled except the
// process groups of the children it spawned, recorded while it runs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
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
    /** The environment the daemon was started with (XDG_* in its tmp dir, plus the test's env). */
    get env() {
        return this.spawnInfo?.env ?? {};
    }
    /**
     * Simulates a crash and a restart: SIGKILLs this daemon (and what is left of its children's
     * process groups), then starts a new `agentgate serve` with the same command line, tmp dir,
     * state dir, socket, TCP port and config file. `env` is merged over the first start's env.
     * Resolves with the new Daemon (this object stays the dead one).
     */
    async restart({ env = {}, readyTimeout = 15000 } = {}) {
        if (!this.spawnInfo) throw new Error('restart: this daemon was not started by startDaemon');
        this.kill();
        await this.exited;
        const info = { ...this.spawnInfo, env: { ...this.spawnInfo.env, ...env } };
        return spawnDaemon(info, { readyTimeout });
    }
    /** Replaces the daemon's config file (the one given with --config). */
    writeConfig(text) {
        if (!this.configPath) throw new Error('writeConfig: the daemon runs without a config file');
        fs.writeFileSync(this.configPath, text);
    }
    /**
     * Runs `agentgate ARGS... --config F --socket S [--state-dir D]` against this daemon, with its
     * XDG_* environment. --state-dir is added for the commands that take it (approve, rotate-key)
     * unless `state` says otherwise. Resolves {code, signal, stdout, stderr}.
     */
    cli(args, { state, timeout = 10000, env = {} } = {}) {
        const withState = state ?? ['approve', 'rotate-key'].includes(args[0]);
        const full = [...args];
        if (this.configPath) full.push('--config', this.configPath);
        full.push('--socket', this.socket);
        if (withState) full.push('--state-dir', this.stateDir);
        return runBin(full, { timeout, cwd: this.dir, env: { ...this.env, ...env } });
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
 * `auth`: the serve command line gets `--auth none` by default (so tests need no bearer token),
 * `--auth token` with auth: 'token', and no --auth at all with auth: null (the config decides).
 * Not used when `argv` replaces the command line.
 * Resolves once the TCP port accepts connections.
 */
export async function startDaemon({ config = null, tag = 'gw', extraArgs = [], env = {}, readyTimeout = 15000, argv = null, auth = 'none' } = {}) {
    const dir = makeTmp(tag);
    const port = await freePort();
    const socket = path.join(dir, 'run', 'agentgate.sock');
    const stateDir = path.join(dir, 'state');
    fs.mkdirSync(path.join(dir, 'run'), { mode: 0o700 });
    fs.mkdirSync(path.join(dir, 'config'));
    // `argv` replaces the serve command line (e.g. for `agentgate wrap`).
    const args = argv ? argv({ port, socket, stateDir, dir }) : ['serve', '--listen', `127.0.0.1:${port}`, '--socket', socket, '--state-dir', stateDir];
    if (!argv && auth !== null && auth !== undefined) {
        if (auth !== 'none' && auth !== 'token') throw new Error(`startDaemon: auth must be 'none', 'token' or null, not ${auth}`);
        args.push('--auth', auth);
    }
    let configPath = null;
    if (config !== null) {
        configPath = path.join(dir, 'agentgate.ini');
        fs.writeFileSync(configPath, config);
        args.push('--config', configPath);
    }
    args.push(...extraArgs);
    const fullEnv = {
        XDG_CONFIG_HOME: path.join(dir, 'config'),
        XDG_STATE_HOME: path.join(dir, 'xdg-state'),
        XDG_RUNTIME_DIR: path.join(dir, 'run'),
        ...env,
    };
    return spawnDaemon({ args, env: fullEnv, dir, port, socket, stateDir, configPath }, { readyTimeout });
}

/** Spawns the binary with a prepared command line and waits for the TCP port (startDaemon, restart). */
async function spawnDaemon(info, { readyTimeout = 15000 } = {}) {
    const { args, env, dir, port, socket, stateDir, configPath } = info;
    const proc = spawn(BIN, args, {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, ...env },
    });
    const d = new Daemon({ proc, port, socket, dir, stateDir, configPath, stderrPath: path.join(dir, 'daemon.stderr') });
    d.spawnInfo = info;
    daemons.add(d);
    const spawnError = new Promise((_, rej) => proc.on('error', rej));
    try {
        let ready = false;
        await Promise.race([
            spawnError,
            // An early exit fails at once instead of when the wait times out.
            d.exited.then((x) => {
                if (!ready) throw new Error(`daemon exited early (${JSON.stringify(x)})`);
            }),
            waitFor(
                async () => {
                    if (!d.alive) return 'exited'; // ends the polling too
                    return tcpAccepts(port);
                },
                { timeout: readyTimeout, what: `agentgate to listen on 127.0.0.1:${port}` },
            ).then((v) => {
                if (v === 'exited') throw new Error(`daemon exited early (${JSON.stringify(d.exit)})`);
                ready = true;
            }),
        ]);
    } catch (e) {
        d.kill();
        // Give the pipes a moment so the message has the daemon's last words.
        await Promise.race([d.exited, sleep(500)]);
        await sleep(20);
        e.message += `\n--- daemon stderr ---\n${d.tail()}`;
        e.daemon = d;
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
export async function connectClient(target, { via = 'tcp', name = 'agentgate-test', capabilities = FULL_CAPS, handlers, headers } = {}) {
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
        // Extra headers (Authorization, X-Agentgate-Client) go on every POST, GET and DELETE.
        requestInit: headers ? { headers } : undefined,
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
            if (this.closed) return; // idempotent: tests and after() hooks may both close
            this.closed = true;
            try {
                await within(5000, client.close(), 'client close');
            } catch {
                /* ignore */
            }
            try {
                await fetchFn?.close?.();
            } catch {
                /* already closed */
            }
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
export async function rawSession(target, { via = 'tcp', protocolVersion = PROTOCOL_VERSION, headers: extra = {} } = {}) {
    const where = via === 'unix' ? { socketPath: target.socket } : { port: target.port };
    const init = await rawHttp({
        ...where,
        headers: { ...MCP_HEADERS, ...extra },
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
            headers: { ...MCP_HEADERS, 'mcp-session-id': sid, 'mcp-protocol-version': version, ...extra, ...headers },
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

// ---------------------------------------------------------------- identities and sealed tokens

/** Lowercase hex SHA-256 of a string or buffer (what [client.X] token_sha256 holds). */
export function sha256Hex(data) {
    return crypto.createHash('sha256').update(data).digest('hex');
}

/** A fresh random bearer token for a test client. */
export function randomToken(tag = 'tok') {
    return `${tag}_${crypto.randomBytes(24).toString('base64url')}`;
}

/** {authorization: 'Bearer TOKEN'} */
export const bearer = (token) => ({ authorization: `Bearer ${token}` });

/** INI text for a [client.NAME] section; keys are written as given (token_sha256, servers, ...). */
export function clientSection(name, keys = {}) {
    const lines = [`[client.${name}]`];
    for (const [k, v] of Object.entries(keys)) if (v !== undefined && v !== null) lines.push(`${k} = ${v}`);
    return lines.join('\n') + '\n';
}

/** The built-in demo server as [server.NAME] (prefix NAME unless given); `args` are extra demo-server options. */
export function demoSection(name = 'demo', { args = [], prefix = name, extra = {} } = {}) {
    return serverSection(name, { command: BIN, args: ['demo-server', ...args], prefix, extra });
}

/**
 * A sealed value's parts (SPEC: base64url, no padding, of version(1) | key_id(4) | nonce(12) |
 * ciphertext | tag(16)), or null when it is not base64url or too short.
 */
export function tokenParts(tok) {
    if (typeof tok !== 'string' || !/^[A-Za-z0-9_-]+$/.test(tok)) return null;
    const raw = Buffer.from(tok, 'base64url');
    if (raw.length < 1 + 4 + 12 + 16) return null;
    return {
        raw,
        version: raw[0],
        keyId: raw.subarray(1, 5),
        nonce: raw.subarray(5, 17),
        ciphertext: raw.subarray(17, raw.length - 16),
        tag: raw.subarray(raw.length - 16),
    };
}

/** The key id a key file's 32 bytes give (first 4 bytes of SHA-256(key)). */
export function keyIdOf(key) {
    return crypto.createHash('sha256').update(key).digest().subarray(0, 4);
}

/**
 * Opens a session token with the 32-byte key (AES-256-GCM, additional data = the 5 header
 * bytes || "session\0" || client name) and returns the parsed JSON, or null when it does not
 * open (wrong key, wrong client, tampered).
 */
export function openSessionToken(tok, key, client = '') {
    const p = tokenParts(tok);
    if (!p) return null;
    try {
        const d = crypto.createDecipheriv('aes-256-gcm', key, p.nonce);
        d.setAAD(Buffer.concat([p.raw.subarray(0, 5), Buffer.from('session\0' + client, 'utf8')]));
        d.setAuthTag(p.tag);
        const plain = Buffer.concat([d.update(p.ciphertext), d.final()]);
        return JSON.parse(plain.toString('utf8'));
    } catch {
        return null;
    }
}

/** tok with one byte of its decoded form changed (XOR 0x01 at byte index i; negative counts from the end). */
export function tamperToken(tok, i) {
    const raw = Buffer.from(tok, 'base64url');
    const at = i < 0 ? raw.length + i : i;
    raw[at] ^= 0x01;
    return raw.toString('base64url');
}

/** File mode bits (e.g. 0o600) of path. */
export function fileMode(p) {
    return fs.statSync(p).mode & 0o777;
}

/** pids of live `agentgate serve` processes whose --socket is sock (started e.g. by a bridge). */
export function serveDaemonsFor(sock) {
    const out = [];
    for (const d of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(d)) continue;
        const argv = cmdline(Number(d));
        const i = argv.indexOf('--socket');
        if (argv[1] === 'serve' && i > 0 && argv[i + 1] === sock) {
            const st = procStat(Number(d));
            if (st && st.state !== 'Z' && st.state !== 'X') out.push(Number(d));
        }
    }
    return out;
}

/** The SDK client's McpError (or any error) as {code, message, data}. */
export async function rpcError(p) {
    try {
        await p;
    } catch (e) {
        return { code: e.code, message: e.message, data: e.data };
    }
    throw new Error('expected the request to fail with a JSON-RPC error, but it succeeded');
}

/** Asserts that none of the daemons' stderr holds a sanitizer report (for after() hooks). */
export function assertNoSanitizerReports(assert, daemons) {
    for (const d of daemons) {
        if (!d) continue;
        const report = sanitizerReport(d.stderr);
        assert.equal(report, null, `sanitizer report in the stderr of daemon ${d.pid}:\n${report}`);
    }
}

/** Waits until c's tools/list names `name` (its upstream is federated); resolves c. */
export async function untilTool(c, name = 'demo__echo', timeout = 10000) {
    await waitFor(async () => (await c.client.listTools()).tools.some((t) => t.name === name), {
        timeout,
        interval: 100,
        what: `${name} in tools/list`,
    });
    return c;
}

/**
 * The scaffolding of a test file that starts its own daemons and clients:
 *
 *     const kit = testKit('tag');
 *     after(kit.cleanup);
 *     test('...', T, kit.wrap(async () => { const d = await kit.start({ config }); ... }));
 *
 * start(opts) is startDaemon({ tag, ...opts }) and restart(d, opts) is d.restart(opts): both
 * record the new daemon and make it kit.current, whose stderr tail wrap(fn) adds to a failing
 * test's message (withLog). client(d, opts) is connectClient(d, opts), recorded; closeClients()
 * closes them all (idempotent). cleanup() closes the clients, kills every daemon and asserts
 * that none of their stderr holds a sanitizer report. No method needs `this`, so they can be
 * passed around or destructured.
 */
export function testKit(tag) {
    const daemons = [];
    const clients = [];
    const track = (d) => {
        daemons.push(d);
        kit.current = d;
        return d;
    };
    const kit = {
        current: null,
        daemons,
        clients,
        start: async (opts = {}) => track(await startDaemon({ tag, ...opts })),
        restart: async (d, opts) => track(await d.restart(opts)),
        client: async (d, opts) => {
            const c = await connectClient(d, opts);
            clients.push(c);
            return c;
        },
        wrap: (fn) => withLog(() => kit.current, fn),
        closeClients: async () => {
            for (const c of clients) await c.close();
        },
        cleanup: async () => {
            await kit.closeClients();
            for (const d of daemons) d.kill();
            assertNoSanitizerReports(assert, daemons);
        },
    };
    return kit;
}
