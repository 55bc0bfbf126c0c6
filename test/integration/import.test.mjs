// `agentgate import claude|cursor|vscode`: client MCP configs copied into the agentgate config.
// Every test runs in its own temporary HOME / XDG_CONFIG_HOME. The generated INI text is
// asserted exactly, and then loaded by a real `agentgate serve`, whose child (a node one-liner)
// writes back the argv, env and cwd it was started with, so the round trip is checked end to end.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';

import {
    BIN,
    IS_GATEWAY,
    NODE,
    connectClient,
    freePort,
    makeTmp,
    resultText,
    runBin,
    sanitizerReport,
    startDaemon,
    untilTool,
    waitFor,
} from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const SELF = fs.realpathSync(BIN);

// A stand-in MCP server: records how it was started, then waits for stdin to close.
const PROBE =
    "require('fs').writeFileSync(process.env.AG_PROBE_OUT, JSON.stringify({argv: process.argv.slice(1), cwd: process.cwd(), env: process.env})); process.stdin.resume()";
const WAIT = 'process.stdin.resume()';
const TRICKY_ARGS = ['My Documents', 'say "hi"', 'naïve ☃ 日本語', 'a ;b', 'back\\slash', '', 'tab\there'];
const TRICKY_ENV = { GREETING: 'héllo "world" ünïcødé', SPACED: 'a b  c', EQUALS: 'k=v:w' };

const here = path.dirname(fileURLToPath(import.meta.url));
const daemons = new Set();
const procs = [];
const servers = [];
after(() => {
    for (const d of daemons) d.kill();
    for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
    for (const s of servers) {
        s.close();
        s.closeAllConnections?.();
    }
});

/** A temporary home with HOME and XDG_CONFIG_HOME under it. */
function home() {
    const dir = makeTmp('import');
    const cfg = path.join(dir, 'xdg');
    fs.mkdirSync(cfg);
    return { dir, cfg, env: { HOME: dir, XDG_CONFIG_HOME: cfg }, ini: path.join(cfg, 'agentgate', 'agentgate.ini') };
}

function write(file, text, mode = 0o644) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
    fs.chmodSync(file, mode);
}

async function importRun(h, args, env = {}) {
    const r = await runBin(['import', ...args], { env: { ...h.env, ...env } });
    assert.equal(sanitizerReport(r.stderr), null, r.stderr);
    return r;
}

/** args as the importer writes them: cJSON's compact array, with " ;" escaped for the INI loader. */
const argsLine = (args) => `args = ${JSON.stringify(args).replaceAll(' ;', ' \\u003b')}`;

function probeServer(out, cwd) {
    return { command: NODE, args: ['-e', PROBE, ...TRICKY_ARGS], env: { AG_PROBE_OUT: out, ...TRICKY_ENV }, cwd };
}

function probeSection(name, out, cwd) {
    return [
        `[server.${name}]`,
        `command = ${NODE}`,
        argsLine(['-e', PROBE, ...TRICKY_ARGS]),
        `env.AG_PROBE_OUT = ${out}`,
        ...Object.entries(TRICKY_ENV).map(([k, v]) => `env.${k} = ${v}`),
        `cwd = ${cwd}`,
    ].join('\n');
}

/** Starts `agentgate serve --config FILE` on the generated file and checks what the probe child received. */
async function serveAndProbe(iniPath, out, cwd) {
    const d = await startDaemon({ config: null, extraArgs: ['--config', iniPath], tag: 'import-serve' });
    daemons.add(d);
    try {
        const got = await waitFor(() => fs.existsSync(out) && JSON.parse(fs.readFileSync(out, 'utf8')), {
            timeout: 15000,
            what: 'the imported server to start',
        });
        assert.deepEqual(got.argv, TRICKY_ARGS, 'args reach the server exactly');
        for (const [k, v] of Object.entries(TRICKY_ENV)) assert.equal(got.env[k], v, `env ${k}`);
        assert.equal(got.cwd, cwd);
    } finally {
        const r = await d.stop();
        assert.equal(r.code, 0, `serve exit: ${JSON.stringify(r)}\n${d.tail()}`);
    }
}

const claudeFile = (h) => path.join(h.cfg, 'Claude', 'claude_desktop_config.json');

function claudeSample(h) {
    const out = path.join(h.dir, 'probe-claude.json');
    const doc = {
        globalShortcut: 'Ctrl+Space',
        mcpServers: {
            files: probeServer(out, h.dir),
            'my server!': { command: NODE, args: ['-e', WAIT], autoApprove: ['read'] },
            // Port 9 on loopback: serve tries it and finds nothing there, which is fine here.
            remote: { type: 'sse', url: 'http://127.0.0.1:9/sse', headers: { Authorization: 'Bearer abc' } },
            semicolon: { command: 'node', env: { X: 'a ; b' } },
            multiline: { command: 'node', env: { X: 'line1\nline2' } },
            agentgate: { command: '/usr/local/bin/agentgate', args: ['bridge', '--client', 'claude'] },
        },
    };
    const expected = [
        probeSection('files', out, h.dir),
        '',
        '[server.my-server]',
        `command = ${NODE}`,
        argsLine(['-e', WAIT]),
        '; autoApprove = ["read"]',
        '',
        '[server.remote]',
        'url = http://127.0.0.1:9/sse',
        'transport = sse',
        'headers.Authorization = Bearer abc',
        'auth = none',
        '',
    ].join('\n');
    return { doc, out, expected };
}

test('claude: default paths from XDG_CONFIG_HOME, exact INI, and serve loads it and starts the server as written', { timeout: 40000, skip }, async () => {
    const h = home();
    const { doc, out, expected } = claudeSample(h);
    const text = JSON.stringify(doc, null, 2) + '\n';
    write(claudeFile(h), text);
    const r = await importRun(h, ['claude']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fs.readFileSync(h.ini, 'utf8'), expected);
    assert.equal(fs.statSync(h.ini).mode & 0o777, 0o600, 'a new config is 0600');
    assert.equal(fs.statSync(path.dirname(h.ini)).mode & 0o777, 0o700);
    assert.equal(fs.readFileSync(claudeFile(h), 'utf8'), text, 'without --rewrite the client file is untouched');
    const lines = r.stdout.split('\n');
    assert.ok(lines[0].includes(claudeFile(h)) && lines[0].includes(h.ini), `says from where to where:\n${r.stdout}`);
    for (const want of [
        /^ {2}files: added as \[server\.files\]$/m,
        /^ {2}my server!: added as \[server\.my-server\] \(renamed.*key 'autoApprove' has no agentgate equivalent, kept as a comment$/m,
        /^ {2}remote: added as \[server\.remote\] \(remote, transport = sse, auth = none\); headers\.Authorization holds a credential in clear, as the client file did \(the config is mode 0600; a \$\{env:NAME\} reference keeps it out of the file\)$/m,
        /^ {2}semicolon: skipped: env\.X contains " ;", which the config loader reads as the start of a comment$/m,
        /^ {2}multiline: skipped: env\.X contains a line break/m,
        /^ {2}agentgate: skipped: this is agentgate's own bridge entry$/m,
    ])
        assert.match(r.stdout, want);
    await serveAndProbe(h.ini, out, h.dir);
});

test('cursor: ~/.cursor/mcp.json by default, the agentgate config and its directory are created', { timeout: 40000, skip }, async () => {
    const h = home();
    const out = path.join(h.dir, 'probe-cursor.json');
    const doc = { mcpServers: { 'probe.1': probeServer(out, h.dir), plain: { command: NODE, args: [] } } };
    write(path.join(h.dir, '.cursor', 'mcp.json'), JSON.stringify(doc));
    assert.ok(!fs.existsSync(path.dirname(h.ini)));
    const r = await importRun(h, ['cursor']);
    assert.equal(r.code, 0, r.stderr);
    const expected = `${probeSection('probe.1', out, h.dir)}\n\n[server.plain]\ncommand = ${NODE}\n`;
    assert.equal(fs.readFileSync(h.ini, 'utf8'), expected);
    assert.match(r.stdout, /wrote .*: 2 added, 0 skipped$/m);
    await serveAndProbe(h.ini, out, h.dir);
});

const vscodeFile = (h) => path.join(h.cfg, 'Code', 'User', 'mcp.json');

function vscodeSample(h) {
    const out = path.join(h.dir, 'probe-vscode.json');
    const probe = JSON.stringify({ type: 'stdio', ...probeServer(out, h.dir) });
    const text = `{
  // VS Code's mcp.json allows comments and trailing commas
  "servers": {
    "probe": ${probe},
    "github": { "type": "http", "url": "https://api.githubcopilot.com/mcp/", "headers": { "Authorization": "Bearer \${input:gh-token}" } },
    "ws": { "type": "stdio", "command": "npx", "args": ["-y", "server-filesystem", "\${workspaceFolder}"] },
    /* an env reference agentgate understands too */
    "home": { "type": "stdio", "command": "${NODE}", "args": ["-e", "${WAIT}"], "env": { "WHERE": "\${env:HOME}" }, },
  },
  "inputs": [{ "type": "promptString", "id": "gh-token", "password": true }],
}
`;
    const expected = [
        probeSection('probe', out, h.dir),
        '',
        '[server.home]',
        `command = ${NODE}`,
        argsLine(['-e', WAIT]),
        'env.WHERE = ${env:HOME}',
        '',
    ].join('\n');
    return { text, out, expected };
}

test('vscode: the "servers" shape with comments, inputs and a remote entry; serve loads the result', { timeout: 40000, skip }, async () => {
    const h = home();
    const { text, out, expected } = vscodeSample(h);
    write(vscodeFile(h), text);
    const r = await importRun(h, ['vscode']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fs.readFileSync(h.ini, 'utf8'), expected);
    assert.match(r.stdout, /^ {2}ws: skipped: args element 3 uses a client variable/m);
    assert.match(
        r.stdout,
        /^ {2}github: skipped: headers\.Authorization uses \$\{input:gh-token\}, a client variable agentgate cannot resolve; only \$\{env:NAME\} is supported$/m,
    );
    await serveAndProbe(h.ini, out, h.dir);
});

test('an existing [server.NAME] is a reported conflict and stays byte-identical; a second run adds nothing', { timeout: 20000, skip }, async () => {
    const h = home();
    const existing = '; my own config\n[gateway]\nlog_level = info\n\n[server.files]\ncommand = /bin/true   ; keep me exactly\nargs = ["x"]\n';
    write(h.ini, existing, 0o640);
    const { doc } = claudeSample(h);
    const client = path.join(h.dir, 'claude.json');
    write(client, JSON.stringify(doc));
    const r = await importRun(h, ['claude', client]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ {2}files: skipped: \[server\.files\] already exists in the agentgate config$/m);
    const after1 = fs.readFileSync(h.ini, 'utf8');
    assert.ok(after1.startsWith(existing), 'the existing text is kept as it was');
    assert.ok(after1.includes('\n[server.my-server]\n'));
    assert.equal(after1.match(/\[server\.files\]/g).length, 1);
    assert.equal(fs.statSync(h.ini).mode & 0o777, 0o640, 'the mode of an existing config is kept');

    const r2 = await importRun(h, ['claude', client]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stdout, /my server!: skipped: \[server\.my-server\] already exists/);
    assert.match(r2.stdout, /remote: skipped: \[server\.remote\] already exists/);
    assert.equal(fs.readFileSync(h.ini, 'utf8'), after1, 'a second import changes nothing');
});

function findBackups(file) {
    const re = new RegExp(`^${path.basename(file).replace(/[.]/g, '\\.')}\\.agentgate-backup-\\d{8}-\\d{6}$`);
    return fs.readdirSync(path.dirname(file)).filter((f) => re.test(f)).map((f) => path.join(path.dirname(file), f));
}

test('claude --rewrite: backup identical to the original, one agentgate entry plus the entries not imported', { timeout: 20000, skip }, async () => {
    const h = home();
    const { doc } = claudeSample(h);
    const text = JSON.stringify(doc, null, 2);
    write(claudeFile(h), text, 0o640);
    const r = await importRun(h, ['claude', '--rewrite']);
    assert.equal(r.code, 0, r.stderr);
    const backups = findBackups(claudeFile(h));
    assert.equal(backups.length, 1, `one backup: ${backups}`);
    assert.equal(fs.readFileSync(backups[0], 'utf8'), text, 'the backup holds the original bytes');
    assert.equal(fs.statSync(backups[0]).mode & 0o777, 0o640, 'the backup has the original mode');
    assert.equal(fs.statSync(claudeFile(h)).mode & 0o777, 0o640);
    assert.ok(r.stdout.includes(backups[0]), `the backup is named:\n${r.stdout}`);

    const now = JSON.parse(fs.readFileSync(claudeFile(h), 'utf8'));
    assert.deepEqual(Object.keys(now), Object.keys(doc), 'top-level keys kept, in order');
    assert.equal(now.globalShortcut, doc.globalShortcut);
    assert.deepEqual(Object.keys(now.mcpServers), ['agentgate', 'semicolon', 'multiline'], 'the remote entry is served by agentgate now');
    assert.deepEqual(now.mcpServers.agentgate, { command: SELF, args: ['bridge', '--client', 'claude'] });
    for (const k of ['semicolon', 'multiline']) assert.deepEqual(now.mcpServers[k], doc.mcpServers[k]);
});

test('vscode --rewrite keeps "inputs" and adds a stdio agentgate entry', { timeout: 20000, skip }, async () => {
    const h = home();
    const { text } = vscodeSample(h);
    write(vscodeFile(h), text);
    const r = await importRun(h, ['vscode', vscodeFile(h), '--rewrite']);
    assert.equal(r.code, 0, r.stderr);
    const backups = findBackups(vscodeFile(h));
    assert.equal(backups.length, 1);
    assert.equal(fs.readFileSync(backups[0], 'utf8'), text);
    const now = JSON.parse(fs.readFileSync(vscodeFile(h), 'utf8'));
    assert.deepEqual(Object.keys(now), ['servers', 'inputs']);
    assert.deepEqual(now.inputs, [{ type: 'promptString', id: 'gh-token', password: true }]);
    assert.deepEqual(Object.keys(now.servers), ['agentgate', 'github', 'ws']);
    assert.deepEqual(now.servers.agentgate, { type: 'stdio', command: SELF, args: ['bridge', '--client', 'vscode'] });
});

for (const [client, rel] of [
    ['claude', ['xdg', 'Claude', 'claude_desktop_config.json']],
    ['cursor', ['.cursor', 'mcp.json']],
    ['vscode', ['xdg', 'Code', 'User', 'mcp.json']],
]) {
    test(`${client}: a file that is not JSON → one error line naming the line, exit 2, nothing written`, { timeout: 20000, skip }, async () => {
        const h = home();
        const file = path.join(h.dir, ...rel);
        const bad = '{\n  "mcpServers": {\n    "a": { "command": "node" "args": [] }\n  }\n}\n';
        write(file, bad);
        const r = await importRun(h, [client, '--rewrite']);
        assert.equal(r.code, 2, `exit status; stderr:\n${r.stderr}`);
        assert.equal(r.stderr, `agentgate: ${file}: not valid JSON (line 3)\n`);
        assert.ok(!fs.existsSync(h.ini), 'no config created');
        assert.ok(!fs.existsSync(path.join(h.cfg, 'agentgate')), 'no config directory created');
        assert.equal(fs.readFileSync(file, 'utf8'), bad, 'the client file is untouched');
        assert.deepEqual(findBackups(file), []);

        const existing = '[server.x]\ncommand = node\n';
        write(h.ini, existing);
        const r2 = await importRun(h, [client, file]);
        assert.equal(r2.code, 2);
        assert.equal(fs.readFileSync(h.ini, 'utf8'), existing, 'an existing config is unchanged');
    });
}

test('--dry-run prints the plan and writes nothing', { timeout: 20000, skip }, async () => {
    const h = home();
    const { doc } = claudeSample(h);
    const text = JSON.stringify(doc);
    write(claudeFile(h), text);
    const r = await importRun(h, ['claude', '--dry-run', '--rewrite']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /files: would be added as \[server\.files\]/);
    assert.match(r.stdout, /nothing written/);
    assert.match(r.stdout, /would rewrite /);
    assert.ok(!fs.existsSync(path.join(h.cfg, 'agentgate')));
    assert.equal(fs.readFileSync(claudeFile(h), 'utf8'), text);
    assert.deepEqual(findBackups(claudeFile(h)), []);
});

test('a target config the loader refuses is reported and left alone', { timeout: 20000, skip }, async () => {
    const h = home();
    const broken = '[server.x]\ncomand = node\n';
    write(h.ini, broken);
    write(claudeFile(h), JSON.stringify({ mcpServers: { a: { command: 'node' } } }));
    const r = await importRun(h, ['claude']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^agentgate: .*agentgate\.ini:2: unknown key 'comand'/);
    assert.equal(fs.readFileSync(h.ini, 'utf8'), broken);
});

test('usage errors exit 2', { timeout: 20000, skip }, async () => {
    const h = home();
    for (const args of [[], ['emacs'], ['claude', '--bogus'], ['claude', 'a', 'b']]) {
        const r = await importRun(h, args);
        assert.equal(r.code, 2, `import ${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /^agentgate: import: /);
    }
    const missing = await importRun(h, ['cursor']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /\.cursor\/mcp\.json: cannot read the cursor config/);
});

// ---------------------------------------------------------------- remote servers

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

/** server-everything in its `streamableHttp` or `sse` mode on a free loopback port. */
async function startEverything(mode) {
    const port = await freePort();
    const proc = spawn(NODE, [path.join(here, 'everything-http.mjs'), mode, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    proc.stdout.on('data', (d) => (log += d));
    proc.stderr.on('data', (d) => (log += d));
    procs.push(proc);
    await waitFor(() => tcpAccepts(port), { timeout: 15000, what: `server-everything ${mode}: ${log}` });
    return port;
}

/** A recording reverse proxy on loopback: /TAG/rest goes to 127.0.0.1:target/rest, and the
 * headers of every request are kept under TAG, so a test sees what agentgate sent upstream. */
async function startProxy(target) {
    const seen = {};
    const srv = http.createServer((req, res) => {
        const m = /^\/([^/]+)(\/.*)$/.exec(req.url);
        if (!m) return res.writeHead(404).end();
        (seen[m[1]] ??= []).push(req.headers);
        const up = http.request(
            { host: '127.0.0.1', port: target, method: req.method, path: m[2], headers: { ...req.headers, host: `127.0.0.1:${target}` } },
            (ur) => {
                res.writeHead(ur.statusCode, ur.headers);
                ur.pipe(res);
            },
        );
        up.on('error', () => res.destroy());
        res.on('close', () => up.destroy());
        req.pipe(up);
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    servers.push(srv);
    return { port: srv.address().port, seen };
}

const CONVERTED_NOTE = 'one Node process and its token store fewer';
const SECRET_NOTE = (h) => `headers.${h} holds a credential in clear, as the client file did (the config is mode 0600; a \${env:NAME} reference keeps it out of the file)`;

test('remote entries and mcp-remote/supergateway wrappers become live remote sections that serve reaches, headers and token included', { timeout: 90000, skip }, async () => {
    const [streamable, sse] = await Promise.all([startEverything('streamableHttp'), startEverything('sse')]);
    const proxy = await startProxy(streamable);
    const token = `imp-${crypto.randomBytes(8).toString('hex')}`;
    const h = home();
    const doc = {
        mcpServers: {
            linear: { command: 'npx', args: ['-y', 'mcp-remote@0.1.37', `http://127.0.0.1:${streamable}/mcp`, '--host', '127.0.0.1'] },
            team: {
                command: 'npx',
                args: ['mcp-remote', `http://127.0.0.1:${proxy.port}/team/mcp`, '--header', 'Authorization: Bearer ${AG_IMPORT_TOKEN}', '--header', 'X-Team: core', '--transport', 'http-only'],
            },
            legacy: { command: 'npx', args: ['-y', 'supergateway', '--sse', `http://127.0.0.1:${sse}/sse`] },
            native: { type: 'http', url: `http://127.0.0.1:${proxy.port}/native/mcp`, headers: { 'X-Api-Key': 'k-123' } },
        },
    };
    const text = JSON.stringify(doc, null, 2);
    write(claudeFile(h), text);
    const r = await importRun(h, ['claude', '--rewrite'], { AG_IMPORT_TOKEN: token });
    assert.equal(r.code, 0, r.stderr);
    const expected = [
        '[server.linear]',
        `url = http://127.0.0.1:${streamable}/mcp`,
        'transport = auto',
        'auth = oauth',
        '; not carried over from mcp-remote: --host 127.0.0.1',
        '',
        '[server.team]',
        `url = http://127.0.0.1:${proxy.port}/team/mcp`,
        'transport = streamable-http',
        'headers.X-Team = core',
        'auth = bearer',
        'token_env = AG_IMPORT_TOKEN',
        '',
        '[server.legacy]',
        `url = http://127.0.0.1:${sse}/sse`,
        'transport = sse',
        'auth = none',
        '',
        '[server.native]',
        `url = http://127.0.0.1:${proxy.port}/native/mcp`,
        'transport = streamable-http',
        'headers.X-Api-Key = k-123',
        'auth = oauth',
        '',
    ].join('\n');
    assert.equal(fs.readFileSync(h.ini, 'utf8'), expected);
    assert.ok(!fs.readFileSync(h.ini, 'utf8').includes(token), 'the token itself is not in the config');
    const lines = r.stdout.split('\n');
    for (const want of [
        `  linear: mcp-remote wrapper → native remote server [server.linear] (transport = auto, auth = oauth); ${CONVERTED_NOTE}; if the server asks for a login, run \`agentgate login linear\` once; mcp-remote --host not carried over, kept as a comment`,
        `  team: mcp-remote wrapper → native remote server [server.team] (transport = streamable-http, auth = bearer); ${CONVERTED_NOTE}`,
        '  legacy: supergateway wrapper → native remote server [server.legacy] (transport = sse, auth = none); one Node process fewer',
        `  native: added as [server.native] (remote, transport = streamable-http, auth = oauth); ${SECRET_NOTE('X-Api-Key')}; if the server asks for a login, run \`agentgate login native\` once`,
        `wrote ${h.ini}: 4 added (4 remote, 3 of them converted from stdio wrappers), 0 skipped`,
    ])
        assert.ok(lines.includes(want), `report line\n  ${want}\nmissing from:\n${r.stdout}`);
    const now = JSON.parse(fs.readFileSync(claudeFile(h), 'utf8'));
    assert.deepEqual(Object.keys(now.mcpServers), ['agentgate'], 'every entry is served by agentgate now');

    // The generated file, served: every converted server is reached, with its headers and token;
    // the OAuth one (never logged in here) connects without a token, since this server asks for
    // none, and sends no Authorization.
    const d = await startDaemon({ config: null, extraArgs: ['--config', h.ini], tag: 'import-remote', env: { AG_IMPORT_TOKEN: token } });
    daemons.add(d);
    const c = await connectClient(d);
    try {
        for (const name of ['linear', 'team', 'legacy', 'native']) {
            await untilTool(c, `${name}__echo`, 20000);
            const res = await c.client.callTool({ name: `${name}__echo`, arguments: { message: `via ${name}` } });
            assert.equal(resultText(res), `Echo: via ${name}`);
        }
        assert.ok(proxy.seen.team?.length > 0 && proxy.seen.native?.length > 0, 'the proxy saw both servers');
        for (const hd of proxy.seen.team) {
            assert.equal(hd.authorization, `Bearer ${token}`, 'auth = bearer sends the token from token_env');
            assert.equal(hd['x-team'], 'core');
        }
        for (const hd of proxy.seen.native) {
            assert.equal(hd['x-api-key'], 'k-123');
            assert.equal(hd.authorization, undefined, 'auth = oauth without a token sends no Authorization');
        }
        const st = await runBin(['status', '--socket', d.socket, '--json']);
        assert.equal(st.code, 0, st.stderr);
        const servers = Object.fromEntries(JSON.parse(st.stdout).servers.map((x) => [x.name, x]));
        assert.equal(servers.linear.state, 'ready', JSON.stringify(servers.linear));
        assert.equal(servers.linear.url, `http://127.0.0.1:${streamable}/mcp`);
        assert.equal(servers.legacy.transport, 'sse');
        assert.equal(servers.team.state, 'ready', JSON.stringify(servers.team));
    } finally {
        await c.close();
        const st = await d.stop();
        assert.equal(st.code, 0, `serve exit: ${JSON.stringify(st)}\n${d.tail()}`);
    }
});

test('wrappers: variables, what is not carried over, a token variable that is not set, supergateway --stdio, an earlier commented import', { timeout: 20000, skip }, async () => {
    const h = home();
    write(h.ini, '; [server.old] is a remote server (http); agentgate keeps it as a comment until remote upstreams are supported.\n; [server.old]\n; url = https://old.example/mcp\n');
    const file = path.join(h.dir, '.cursor', 'mcp.json');
    const doc = {
        mcpServers: {
            set: { command: 'npx', args: ['mcp-remote', 'https://a.example/mcp', '--header', 'Authorization: Bearer ${env:AG_SET_TOKEN}'] },
            unset: { command: 'npx', args: ['mcp-remote', 'https://b.example/mcp', '--header', 'Authorization: Bearer ${env:AG_UNSET_TOKEN}'] },
            extras: {
                command: 'npx',
                args: [
                    '-y',
                    'mcp-remote',
                    'https://c.example/mcp',
                    '3334',
                    '--resource',
                    'https://c.example/',
                    '--header',
                    'X-Org: ${env:AG_SET_TOKEN}',
                    '--static-oauth-client-info',
                    '{"client_id":"agentgate-test"}',
                ],
                env: { NODE_EXTRA_CA_CERTS: '/etc/ssl/corp.pem', DEBUG: 'mcp*' },
            },
            bridge: { command: 'npx', args: ['-y', 'supergateway', '--stdio', 'node server.js'] },
            // Windsurf's name for url (its mcp_config.json imports as a cursor file).
            headerless: { serverUrl: 'https://d.example/sse', type: 'sse', autoApprove: ['read'] },
            old: { url: 'https://old.example/mcp' },
        },
    };
    write(file, JSON.stringify(doc));
    const env = { AG_SET_TOKEN: 'set-secret' };
    const dry = await importRun(h, ['cursor', '--dry-run'], env);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^ {2}set: would convert: mcp-remote wrapper → native remote server \[server\.set\] \(transport = auto, auth = bearer\)/m);
    assert.match(dry.stdout, /^dry run: 4 to add \(3 remote, 2 of them converted from stdio wrappers\), 2 to skip; nothing written/m);

    const r = await importRun(h, ['cursor'], env);
    assert.equal(r.code, 0, r.stderr);
    const expected = [
        '; [server.old] is a remote server (http); agentgate keeps it as a comment until remote upstreams are supported.',
        '; [server.old]',
        '; url = https://old.example/mcp',
        '',
        '[server.set]',
        'url = https://a.example/mcp',
        'transport = auto',
        'auth = bearer',
        'token_env = AG_SET_TOKEN',
        '',
        '[server.extras]',
        'url = https://c.example/mcp',
        'transport = auto',
        'headers.X-Org = ${env:AG_SET_TOKEN}',
        'auth = oauth',
        'client_id = agentgate-test',
        'ca_file = /etc/ssl/corp.pem',
        '; not carried over from mcp-remote: 3334',
        '; not carried over from mcp-remote: --resource https://c.example/',
        '; not carried over from mcp-remote: env.DEBUG = mcp*',
        '',
        '[server.bridge]',
        'command = npx',
        'args = ["-y","supergateway","--stdio","node server.js"]',
        '',
        '[server.headerless]',
        'url = https://d.example/sse',
        'transport = sse',
        'auth = oauth',
        '; autoApprove = ["read"]',
        '',
    ].join('\n');
    assert.equal(fs.readFileSync(h.ini, 'utf8'), expected);
    assert.ok(!fs.readFileSync(h.ini, 'utf8').includes('set-secret'));
    for (const want of [
        `  set: mcp-remote wrapper → native remote server [server.set] (transport = auto, auth = bearer); ${CONVERTED_NOTE}`,
        '  unset: skipped: the config loader would refuse it: token_env: environment variable AG_UNSET_TOKEN is not set',
        `  extras: mcp-remote wrapper → native remote server [server.extras] (transport = auto, auth = oauth); ${CONVERTED_NOTE}; client_id from --static-oauth-client-info; if the server asks for a login, run \`agentgate login extras\` once; ca_file from the wrapper's NODE_EXTRA_CA_CERTS; mcp-remote 3334 not carried over, kept as a comment; mcp-remote --resource not carried over, kept as a comment; mcp-remote env.DEBUG not carried over, kept as a comment`,
        '  bridge: added as [server.bridge]',
        "  headerless: added as [server.headerless] (remote, transport = sse, auth = oauth); if the server asks for a login, run `agentgate login headerless` once; key 'autoApprove' has no agentgate equivalent, kept as a comment",
        '  old: skipped: [server.old] is in the agentgate config as a comment (from an earlier import); delete that block and import again to get a live section',
        `wrote ${h.ini}: 4 added (3 remote, 2 of them converted from stdio wrappers), 2 skipped`,
    ])
        assert.ok(r.stdout.split('\n').includes(want), `report line\n  ${want}\nmissing from:\n${r.stdout}`);
});
