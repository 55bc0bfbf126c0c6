// Another local user must not be able to stand in for the daemon (issue 9, item 3).
//
// (a) Without XDG_RUNTIME_DIR the socket lives in $TMPDIR/agentgate-UID. When that directory
//     was made by someone else (here uid 65534, mode 0777), or is open to others, or is a
//     symlink, `serve`, `bridge` and `reload` refuse with one line naming it and the fix, and
//     write nothing into it.
// (b) A listener run as uid 65534 gets zero bytes from `agentgate bridge --socket PATH` and from
//     every admin command: first with its socket in its own directory (the directory check
//     refuses), then with the socket moved into a private directory of ours (only the
//     SO_PEERCRED check is left to refuse). Each exits 1 naming uid 65534.
//
// Acting as uid 65534 (chown, setpriv) needs root; those tests are skipped otherwise.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';

import { BIN, IS_GATEWAY, NODE, PROTOCOL_VERSION, makeTmp, runBin, sanitizerReport, serveDaemonsFor, waitFor, within } from './harness.mjs';

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;
const T = { timeout: 60000, skip: (!IS_GATEWAY && 'gateway only') || (!isRoot && 'needs root to act as uid 65534') };
const T_ANY = { timeout: 60000, skip: !IS_GATEWAY && 'gateway only' }; // for tests that need no other uid
const ME = process.geteuid?.() ?? 0;

const initLine =
    JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'takeover-test', version: '1' } },
    }) + '\n';

const listeners = [];
after(() => {
    for (const l of listeners) l.stop();
});

/** Entries of directory d (names). */
const entries = (d) => fs.readdirSync(d).sort();

/** An environment where the socket falls back to $TMPDIR/agentgate-UID (no XDG_RUNTIME_DIR), with
 * a config that keeps TCP off and state and config in tmp. */
function fallbackEnv(tmp) {
    const cfgDir = path.join(tmp, 'config', 'agentgate');
    fs.mkdirSync(cfgDir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(cfgDir, 'agentgate.ini'), '[gateway]\nlisten = off\n');
    return {
        TMPDIR: tmp,
        XDG_RUNTIME_DIR: '', // unset as far as agentgate is concerned (not an absolute path)
        XDG_CONFIG_HOME: path.join(tmp, 'config'),
        XDG_STATE_HOME: path.join(tmp, 'state'),
        HOME: path.join(tmp, 'home'),
    };
}

/**
 * Runs `agentgate bridge ARGS` with an initialize request on stdin (stdin stays open, as a real
 * client's would) and resolves {code, signal, stdout, stderr} when it exits; kills it after
 * `timeout` ms and rejects.
 */
function runBridge(args, { env = {}, timeout = 8000 } = {}) {
    return new Promise((resolve, reject) => {
        const proc = spawn(BIN, ['bridge', ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
        let stdout = '';
        let stderr = '';
        proc.stdout.on('data', (d) => (stdout += d));
        proc.stderr.on('data', (d) => (stderr += d));
        proc.stdin.on('error', () => {});
        proc.stdin.write(initLine);
        const timer = setTimeout(() => {
            proc.kill('SIGKILL');
            reject(new Error(`bridge ${args.join(' ')} did not exit within ${timeout} ms; stderr: ${stderr}`));
        }, timeout);
        proc.on('exit', (code, signal) => {
            clearTimeout(timer);
            const report = sanitizerReport(stderr);
            if (report) reject(new Error(`sanitizer report in the bridge's stderr:\n${report}`));
            else resolve({ code, signal, stdout, stderr });
        });
    });
}

/**
 * A Unix-socket listener running as uid 65534 (setpriv), standing where the daemon should be.
 * It answers every connection with a forged tools/call result and counts the bytes it receives.
 */
async function startForeignListener(sockPath) {
    const script = `
        const net = require('node:net');
        const forged = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'FORGED' }] } }) + '\\n';
        const srv = net.createServer((s) => {
            let n = 0;
            console.log('CONN');
            s.on('data', (d) => { n += d.length; console.log('DATA ' + d.length); });
            s.on('error', () => {});
            s.on('close', () => console.log('CLOSE ' + n));
            s.write(forged);
        });
        srv.listen(process.argv[1], () => console.log('LISTENING ' + process.getuid()));
    `;
    const proc = spawn('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', NODE, '-e', script, sockPath], {
        cwd: '/',
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    const l = {
        proc,
        out: '',
        lines(prefix) {
            return l.out.split('\n').filter((x) => x.startsWith(prefix));
        },
        /** Bytes received over every connection so far (DATA lines). */
        received() {
            return l.lines('DATA ').reduce((a, x) => a + Number(x.slice(5)), 0);
        },
        stop() {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
        },
    };
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    proc.stdout.on('data', (d) => (l.out += d));
    proc.stderr.on('data', (d) => (l.out += d));
    listeners.push(l);
    await waitFor(() => /LISTENING/.test(l.out), { timeout: 10000, what: `the uid ${NOBODY} listener (${l.out})` });
    assert.match(l.out, new RegExp(`LISTENING ${NOBODY}\\b`), 'the listener runs as uid 65534');
    return l;
}

/** Every connection the listener accepted has closed, and none sent it a byte. */
async function assertNothingReceived(l, what) {
    await waitFor(() => l.lines('CLOSE').length === l.lines('CONN').length, { timeout: 5000, what: `${what}: its connections to close (${l.out})` });
    assert.equal(l.received(), 0, `${what} sent bytes to the foreign listener:\n${l.out}`);
}

// ------------------------------------------------------------------ (a) the /tmp fallback

test('(a) a foreign $TMPDIR/agentgate-UID (uid 65534, 0777): serve, bridge and reload refuse; nothing is written there', T, async () => {
    const tmp = makeTmp('takeover-a');
    const env = fallbackEnv(tmp);
    const base = path.join(tmp, `agentgate-${ME}`);
    fs.mkdirSync(base);
    fs.chownSync(base, NOBODY, NOBODY);
    fs.chmodSync(base, 0o777);
    const want = new RegExp(`${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: owned by uid ${NOBODY}, not you \\(uid ${ME}\\); remove it or set XDG_RUNTIME_DIR`);

    const serve = await runBin(['serve'], { env, timeout: 10000 });
    assert.notEqual(serve.code, 0, `serve must refuse: ${serve.stderr}`);
    assert.match(serve.stderr, want);
    assert.equal(serve.stderr.trim().split('\n').length, 1, `one line: ${serve.stderr}`);

    const bridge = await runBridge([], { env });
    assert.equal(bridge.code, 1, `bridge: ${bridge.stderr}`);
    assert.match(bridge.stderr, want);
    assert.equal(bridge.stdout, '', 'nothing reached the client');

    const reload = await runBin(['reload'], { env });
    assert.equal(reload.code, 1, `reload: ${reload.stderr}`);
    assert.match(reload.stderr, want);

    assert.deepEqual(entries(base), [], 'nothing was written into the foreign directory');
    assert.deepEqual(serveDaemonsFor(path.join(base, 'agentgate.sock')), [], 'no daemon was started there');
});

test('(a) an open (0777) or symlinked $TMPDIR/agentgate-UID of our own is refused too', T_ANY, async () => {
    const tmp = makeTmp('takeover-a2');
    const env = fallbackEnv(tmp);
    const base = path.join(tmp, `agentgate-${ME}`);
    fs.mkdirSync(base);
    fs.chmodSync(base, 0o777);
    const bridge = await runBridge([], { env });
    assert.equal(bridge.code, 1, bridge.stderr);
    assert.match(bridge.stderr, /agentgate-\d+: mode 0777 lets other users write to it; remove it or set XDG_RUNTIME_DIR/);
    const serve = await runBin(['serve'], { env, timeout: 10000 });
    assert.notEqual(serve.code, 0, serve.stderr);
    assert.match(serve.stderr, /mode 0777/);
    assert.deepEqual(entries(base), []);

    fs.rmdirSync(base);
    const elsewhere = path.join(tmp, 'elsewhere');
    fs.mkdirSync(elsewhere, { mode: 0o700 });
    fs.symlinkSync(elsewhere, base);
    const b2 = await runBridge([], { env });
    assert.equal(b2.code, 1, b2.stderr);
    assert.match(b2.stderr, /agentgate-\d+: is a symbolic link/);
    assert.deepEqual(entries(elsewhere), [], 'nothing was written through the link');
});

// ------------------------------------------------------------------ (b) a foreign listener

/** The admin commands that talk to the socket, each with what it needs besides --socket. */
function adminRuns(tmp, sock) {
    const state = path.join(tmp, 'admin-state');
    const config = path.join(tmp, 'admin.ini');
    fs.writeFileSync(config, '[gateway]\nlisten = off\n');
    return [
        ['reload', ['reload', '--socket', sock]],
        ['approve', ['approve', 'demo', '--socket', sock, '--state-dir', state]],
        ['rotate-key', ['rotate-key', '--socket', sock, '--state-dir', state]],
        ['token create', ['token', 'create', 'alice', '--socket', sock, '--config', config]],
    ];
}

test('(b) a uid 65534 listener gets zero bytes from the bridge and the admin commands; each exits 1 naming its uid', T, async () => {
    const tmp = makeTmp('takeover-b');
    fs.chmodSync(tmp, 0o711); // uid 65534 may pass through to its own directory
    const theirs = path.join(tmp, 'theirs');
    fs.mkdirSync(theirs, { mode: 0o700 });
    fs.chownSync(theirs, NOBODY, NOBODY);
    const sock = path.join(theirs, 'agentgate.sock');
    const l = await startForeignListener(sock);

    // 1. The socket in the listener's own directory: the directory check refuses.
    const b1 = await runBridge(['--socket', sock, '--client', 'x']);
    assert.equal(b1.code, 1, b1.stderr);
    assert.match(b1.stderr, new RegExp(`theirs: owned by uid ${NOBODY}, not you`));
    assert.doesNotMatch(b1.stdout, /FORGED/, 'no forged result reached the client');
    for (const [name, args] of adminRuns(tmp, sock)) {
        const r = await runBin(args);
        assert.equal(r.code, 1, `${name}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`owned by uid ${NOBODY}`), `${name}: ${r.stderr}`);
    }
    await assertNothingReceived(l, 'the bridge and admin commands (foreign directory)');

    // 2. The same listener, its socket moved into a private directory of ours: only the
    // listener's uid (SO_PEERCRED) gives it away, and it is checked before the hello.
    const mine = path.join(tmp, 'mine');
    fs.mkdirSync(mine, { mode: 0o700 });
    const moved = path.join(mine, 'agentgate.sock');
    fs.renameSync(sock, moved);
    const connsBefore = l.lines('CONN').length;
    const b2 = await runBridge(['--socket', moved, '--client', 'x']);
    assert.equal(b2.code, 1, b2.stderr);
    assert.match(b2.stderr, new RegExp(`${moved.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: the listener runs as uid ${NOBODY}, not as you`));
    assert.doesNotMatch(b2.stdout, /FORGED/, 'no forged result reached the client');
    assert.equal(b2.stderr.trim().split('\n').length, 1, `one line, no reconnect loop: ${b2.stderr}`);
    for (const [name, args] of adminRuns(tmp, moved)) {
        const r = await runBin(args);
        assert.equal(r.code, 1, `${name}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`the listener runs as uid ${NOBODY}, not as you`), `${name}: ${r.stderr}`);
    }
    // The listener reports its connections on its own stdout, which may trail the commands.
    await waitFor(() => l.lines('CONN').length > connsBefore, { timeout: 3000, what: `the commands' connections at the listener:\n${l.out}` });
    await assertNothingReceived(l, 'the bridge and admin commands (foreign listener)');
    assert.deepEqual(serveDaemonsFor(moved), [], 'the bridge did not start a daemon of its own');
});

test('(b) a bridge refused by the listener check does not retry', T, async () => {
    // The refusal is final: the bridge is gone within a second, not reconnecting in a loop.
    const tmp = makeTmp('takeover-b2');
    fs.chmodSync(tmp, 0o711);
    const theirs = path.join(tmp, 'theirs');
    fs.mkdirSync(theirs, { mode: 0o700 });
    fs.chownSync(theirs, NOBODY, NOBODY);
    const sock = path.join(theirs, 's.sock');
    const l = await startForeignListener(sock);
    const mine = path.join(tmp, 'mine');
    fs.mkdirSync(mine, { mode: 0o700 });
    fs.renameSync(sock, path.join(mine, 's.sock'));
    const t0 = Date.now();
    const r = await within(5000, runBridge(['--socket', path.join(mine, 's.sock')]), 'the refused bridge');
    assert.equal(r.code, 1, r.stderr);
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
    // The listener reports the connection on its own stdout, which may trail the bridge's exit.
    await waitFor(() => l.lines('CONN').length >= 1, { timeout: 3000, what: `the connection at the listener:\n${l.out}` });
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(l.lines('CONN').length, 1, `exactly one connection:\n${l.out}`);
    await assertNothingReceived(l, 'the bridge');
});
