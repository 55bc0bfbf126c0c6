// What reaches a server from the daemon: its environment and its open descriptors (issue 9,
// item 4). A server inherits a small default set (PATH, HOME, locale, what npx/node and
// uvx/python need, NODE_OPTIONS among them) plus its env_pass names and its own env.*; with
// env_inherit = all, everything. Never, in either mode: a client's token_env, or a variable
// another server's env.* reads. Descriptors the daemon inherited (here: a file this test opens
// and hands to it as fds 3 and 7) never reach a server.
//
// The daemon is spawned here rather than by the harness, which gives it only stdin, stdout and
// stderr. `agentgate wrap` runs its one command with the whole environment, except the
// variable its bearer token may come from.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';

import { BIN, Daemon, IS_GATEWAY, NODE, assertCleanStop, assertNoSanitizerReports, bearer, clientSection, connectClient, freePort, makeTmp, randomToken, resultText, serverSection, sha256Hex, startDaemon, untilTool, waitFor } from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const PROBE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'env-probe-server.mjs');

const daemons = [];
const clients = [];
let current = null;
after(async () => {
    for (const c of clients) await c.close();
    for (const d of daemons) d.kill();
    assertNoSanitizerReports(assert, daemons);
});

/** Adds the daemon's stderr tail to a failure. */
const wrap = (fn) => async (t) => {
    try {
        return await fn(t);
    } catch (e) {
        if (current) e.message = `${e.message}\n--- daemon stderr (last lines) ---\n${current.tail(40)}`;
        throw e;
    }
};

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

/**
 * `agentgate serve` on `config` with `env` over ours and `extra` as its descriptors 3, 4, ...
 * (numbers: our open descriptors, shared; 'ignore': not open).
 */
async function startWithFds({ config, env, extra }) {
    const dir = makeTmp('env');
    const port = await freePort();
    const socket = path.join(dir, 'run', 'agentgate.sock');
    const stateDir = path.join(dir, 'state');
    fs.mkdirSync(path.join(dir, 'run'), { mode: 0o700 });
    const configPath = path.join(dir, 'agentgate.ini');
    fs.writeFileSync(configPath, config);
    const args = ['serve', '--listen', `127.0.0.1:${port}`, '--socket', socket, '--state-dir', stateDir, '--config', configPath];
    const proc = spawn(BIN, args, {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe', ...extra],
        env: { ...process.env, XDG_CONFIG_HOME: path.join(dir, 'config'), XDG_STATE_HOME: path.join(dir, 'xdg-state'), XDG_RUNTIME_DIR: path.join(dir, 'run'), ...env },
    });
    const d = new Daemon({ proc, port, socket, dir, stateDir, configPath, stderrPath: path.join(dir, 'daemon.stderr') });
    daemons.push(d);
    current = d;
    const up = await waitFor(async () => (!d.alive ? 'exited' : tcpAccepts(port)), { timeout: 15000, what: `agentgate on 127.0.0.1:${port}` });
    if (up === 'exited') throw new Error(`daemon exited early (${JSON.stringify(d.exit)})`);
    return d;
}

/** Calls SERVER__probe: {env, fds} of that server's process. */
async function probe(c, server) {
    const name = server ? `${server}__probe` : 'probe';
    const r = await c.client.callTool({ name, arguments: {} });
    assert.ok(!r.isError, `${name}: ${JSON.stringify(r)}`);
    return JSON.parse(resultText(r));
}

test('servers get the default set, their env.* and env_pass; never another section\'s secret, nor our descriptors', { timeout: 60000, skip }, wrap(async () => {
    const rnd = () => crypto.randomBytes(9).toString('base64url');
    const clientToken = randomToken('alice');
    const otherSecret = `other-secret-${rnd()}`;
    const env = {
        AG_TEST_CLIENT_TOKEN: clientToken, // [client.alice] token_env
        AG_TEST_OTHER_SECRET: otherSecret, // read by [server.keyed] env.KEY
        AG_TEST_REMOTE_TOKEN: `remote-token-${rnd()}`, // [server.remote] token_env
        AG_TEST_REMOTE_HDR: `remote-header-${rnd()}`, // read by [server.remote] headers.X-Key
        AG_TEST_NOISE: 'noise', // anything else the daemon happens to have
        AG_TEST_PASS_ONE: 'pass-one',
        AG_TEST_EXACT: 'exact',
        AG_TEST_EXACTLY: 'exactly',
        // run-integration.sh relies on NODE_OPTIONS reaching the servers (old Node versions).
        NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --no-deprecation`.trim(),
    };
    const secrets = [clientToken, otherSecret, env.AG_TEST_REMOTE_TOKEN, env.AG_TEST_REMOTE_HDR];
    const probeSection = (name, extra) => serverSection(name, { command: NODE, args: [PROBE], ...extra });
    const config = (plainPass) =>
        '[gateway]\n\n' +
        probeSection('plain', { env: { OWN: 'own value' }, extra: { env_pass: plainPass } }) +
        probeSection('keyed', { env: { KEY: '${env:AG_TEST_OTHER_SECRET}' } }) +
        probeSection('inherits', { extra: { env_inherit: 'all' } }) +
        // A remote server's credentials are secrets too (port 9: nothing listens; it backs off).
        '[server.remote]\nurl = http://127.0.0.1:9/mcp\nauth = bearer\ntoken_env = AG_TEST_REMOTE_TOKEN\n' +
        'headers.X-Key = ${env:AG_TEST_REMOTE_HDR}\n\n' +
        clientSection('alice', { token_env: 'AG_TEST_CLIENT_TOKEN' }) +
        clientSection('bob', { token_sha256: sha256Hex(randomToken('bob')) });

    // A file of ours, open without close-on-exec as fds 3 and 7 of the daemon.
    const dirOfTest = makeTmp('env-fds');
    const marker = path.join(dirOfTest, 'leak-marker');
    const fd = fs.openSync(marker, 'w');
    let d;
    try {
        d = await startWithFds({ config: config('AG_TEST_PASS_*, AG_TEST_EXACT'), env, extra: [fd, 'ignore', 'ignore', 'ignore', fd] });
    } finally {
        fs.closeSync(fd);
    }
    const daemonFds = fs.readdirSync(`/proc/${d.pid}/fd`).map((n) => {
        try {
            return fs.readlinkSync(`/proc/${d.pid}/fd/${n}`);
        } catch {
            return '';
        }
    });
    assert.ok(daemonFds.includes(marker), 'the daemon has the file open (what the test is about)');

    const c = await connectClient(d, { headers: bearer(clientToken) });
    clients.push(c);
    for (const s of ['plain', 'keyed', 'inherits']) await untilTool(c, `${s}__probe`);
    const plain = await probe(c, 'plain');
    const keyed = await probe(c, 'keyed');
    const inherits = await probe(c, 'inherits');

    for (const [name, p] of Object.entries({ plain, keyed, inherits })) {
        // No secret of another section, under any name.
        assert.equal(p.env.AG_TEST_CLIENT_TOKEN, undefined, `${name}: a client's token_env`);
        const leaked = Object.entries(p.env).filter(([, v]) => secrets.some((sec) => v.includes(sec)));
        if (name === 'keyed') assert.deepEqual(leaked, [['KEY', otherSecret]], 'keyed: its own secret, only as its env.KEY');
        else assert.deepEqual(leaked, [], `${name}: another section's secret`);
        if (name !== 'keyed') assert.equal(p.env.AG_TEST_OTHER_SECRET, undefined, `${name}: another server's \${env:} variable`);
        assert.equal(p.env.AG_TEST_REMOTE_TOKEN, undefined, `${name}: a remote server's token_env`);
        assert.equal(p.env.AG_TEST_REMOTE_HDR, undefined, `${name}: a remote server's headers.* variable`);
        // What every server needs.
        assert.equal(p.env.PATH, process.env.PATH, `${name}: PATH`);
        if (process.env.HOME !== undefined) assert.equal(p.env.HOME, process.env.HOME, `${name}: HOME`);
        assert.equal(p.env.NODE_OPTIONS, env.NODE_OPTIONS, `${name}: NODE_OPTIONS`);
        assert.equal(p.env.XDG_RUNTIME_DIR, path.join(d.dir, 'run'), `${name}: XDG_*`);
        assert.equal(p.env.AGENTGATE_PARENT_PID, undefined, `${name}: the trampoline's variable is gone`);
        // Only stdin, stdout and stderr of ours: nothing under the test's or the daemon's
        // directories (the marker, the state dir's logs and pins), whatever node opens itself.
        assert.deepEqual(p.fds.slice(0, 3).map((f) => f.fd), [0, 1, 2], `${name}: stdio`);
        const ours = p.fds.filter((f) => f.target.startsWith(dirOfTest) || f.target.startsWith(d.dir));
        assert.deepEqual(ours, [], `${name}: descriptors of the daemon's`);
    }

    // Default mode: the default set, env.* and env_pass (names and PREFIX* globs) only.
    assert.equal(plain.env.OWN, 'own value');
    assert.equal(plain.env.AG_TEST_NOISE, undefined, 'plain: a random daemon variable');
    assert.equal(plain.env.AG_TEST_PASS_ONE, 'pass-one', 'plain: env_pass AG_TEST_PASS_*');
    assert.equal(plain.env.AG_TEST_EXACT, 'exact', 'plain: env_pass AG_TEST_EXACT');
    assert.equal(plain.env.AG_TEST_EXACTLY, undefined, 'plain: a name is not a prefix');
    assert.equal(keyed.env.AG_TEST_NOISE, undefined, 'keyed: a random daemon variable');
    assert.equal(keyed.env.AG_TEST_PASS_ONE, undefined, "keyed: plain's env_pass is plain's");
    assert.equal(keyed.env.OWN, undefined, "keyed: plain's env.*");
    // env_inherit = all: everything else.
    assert.equal(inherits.env.AG_TEST_NOISE, 'noise', 'inherits: env_inherit = all');
    assert.equal(inherits.env.AG_TEST_EXACTLY, 'exactly', 'inherits: env_inherit = all');
    assert.equal(inherits.env.KEY, undefined, "inherits: keyed's env.*");

    // A reload that changes env_pass restarts that server, with the new set.
    d.writeConfig(config('AG_TEST_NOISE'));
    const r = await d.cli(['reload']);
    assert.equal(r.code, 0, `agentgate reload: ${r.stderr}`);
    const again = await waitFor(
        async () => {
            const p = await probe(c, 'plain').catch(() => null);
            return p?.env.AG_TEST_NOISE === 'noise' ? p : null;
        },
        { timeout: 10000, interval: 200, what: 'plain restarted with env_pass = AG_TEST_NOISE' },
    );
    assert.equal(again.env.AG_TEST_PASS_ONE, undefined, 'plain: the old env_pass is gone');
    assert.equal(again.env.AG_TEST_CLIENT_TOKEN, undefined);

    await c.close();
    await assertCleanStop(assert, d);
}));

test('wrap: the command inherits the whole environment but not the token variable', { timeout: 30000, skip }, wrap(async () => {
    const token = randomToken('wrap');
    const d = await startDaemon({
        tag: 'env-wrap',
        auth: null,
        env: { AGENTGATE_WRAP_TOKEN: token, AG_TEST_NOISE: 'noise' },
        argv: ({ port, stateDir }) => ['wrap', '--listen', `127.0.0.1:${port}`, '--state-dir', stateDir, '--', NODE, PROBE],
    });
    daemons.push(d);
    current = d;
    const c = await connectClient(d, { headers: bearer(token) });
    clients.push(c);
    await untilTool(c, 'probe');
    const p = await probe(c, null);
    assert.equal(p.env.AG_TEST_NOISE, 'noise', 'the whole environment');
    assert.equal(p.env.AGENTGATE_WRAP_TOKEN, undefined, 'the bearer token variable');
    assert.deepEqual(Object.entries(p.env).filter(([, v]) => v.includes(token)), [], 'the token under any name');
    await c.close();
    await assertCleanStop(assert, d);
}));
