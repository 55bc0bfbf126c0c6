// `agentgate serve` start-up: bad config files, the embedded default (demo server), a taken port.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, test } from 'node:test';

import {
    EVERYTHING_JS,
    IS_GATEWAY,
    NODE,
    assertCleanStop,
    connectClient,
    freePort,
    makeTmp,
    resultText,
    runBin,
    sanitizerReport,
    startDaemon,
    waitFor,
    within,
    withLog,
} from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const server = `[server.everything]\ncommand = ${NODE}\nargs = ${JSON.stringify([EVERYTHING_JS, 'stdio'])}\n`;

// [name, file text, expected line, text the message must contain]
const BAD = [
    ['unknown key in a server section', `${server}comand = node\n`, 4, 'comand'],
    ['unknown section', `[gateway]\nlog_level = info\n\n[servr.x]\ncommand = node\n`, 4, 'servr'],
    ['unknown key in [gateway]', `[gateway]\nlisten = 127.0.0.1:7821\nlog_levle = debug\n`, 3, 'log_levle'],
    ['args that are not a JSON array', `[server.x]\ncommand = node\nargs = --foo bar\n`, 3, 'args'],
    ['args with a non-string element', `[server.x]\ncommand = node\nargs = ["a", 1]\n`, 3, 'args'],
    ['a bad isolation value', `${server}isolation = sometimes\n`, 4, 'isolation'],
    ['a bad restart value', `${server}restart = maybe\n`, 4, 'restart'],
    ['a bad request_timeout', `${server}request_timeout = soon\n`, 4, 'request_timeout'],
    ['an unset ${env:NAME}', `${server}env.KEY = \${env:AGENTGATE_TEST_SURELY_UNSET_VAR}\n`, 4, 'AGENTGATE_TEST_SURELY_UNSET_VAR'],
    ['a line that is not key = value', `[gateway]\nthis is not ini\n`, 2, ''],
    ['a key outside any section', `log_level = info\n[gateway]\n`, 1, 'log_level'],
    ['a server without a command', `[server.a]\nprefix = a\n\n[gateway]\nlog_level = info\n`, 1, 'command'],
    ['two servers with the same prefix', `[server.a]\ncommand = node\nprefix = p\n\n[server.b]\ncommand = node\nprefix = p\n`, 7, 'prefix'],
    ['a duplicate key', `[gateway]\nlog_level = info\nlog_level = debug\n`, 3, 'log_level'],
];

const reEscape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

for (const [what, text, line, mention] of BAD) {
    test(`bad config (${what}) → exit 2 and one line "agentgate: FILE:${line}: …"`, { timeout: 15000, skip }, async () => {
        const dir = makeTmp('cfg');
        const file = path.join(dir, 'agentgate.ini');
        fs.writeFileSync(file, text);
        const port = await freePort();
        const r = await runBin(['serve', '--config', file, '--listen', `127.0.0.1:${port}`, '--socket', path.join(dir, 's.sock'), '--state-dir', path.join(dir, 'state')], {
            env: { XDG_RUNTIME_DIR: dir, XDG_STATE_HOME: dir, XDG_CONFIG_HOME: dir },
        });
        assert.equal(r.code, 2, `exit status (signal ${r.signal}); stderr:\n${r.stderr}`);
        const lines = r.stderr.trimEnd().split('\n');
        assert.equal(lines.length, 1, `exactly one line on stderr, got:\n${r.stderr}`);
        assert.match(lines[0], new RegExp(`^agentgate: ${reEscape(file)}:${line}: \\S`));
        if (mention) assert.ok(lines[0].includes(mention), `the message names ${mention}: ${lines[0]}`);
        assert.ok(!fs.existsSync(path.join(dir, 's.sock')), 'nothing listened');
    });
}

test('a missing --config file is refused with exit status 2', { timeout: 15000, skip }, async () => {
    const dir = makeTmp('cfg');
    const file = path.join(dir, 'nope.ini');
    const port = await freePort();
    const r = await runBin(['serve', '--config', file, '--listen', `127.0.0.1:${port}`, '--socket', path.join(dir, 's.sock'), '--state-dir', path.join(dir, 'state')], {
        env: { XDG_RUNTIME_DIR: dir, XDG_STATE_HOME: dir, XDG_CONFIG_HOME: dir },
    });
    assert.equal(sanitizerReport(r.stderr), null, r.stderr);
    assert.equal(r.code, 2, `stderr:\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^agentgate: ${reEscape(file)}`));
});

let demo;
let good;
after(() => {
    demo?.kill();
    good?.kill();
});

test('a config with comments, a custom prefix and env.KEY = ${env:NAME} reaches the child', { timeout: 30000, skip }, withLog(() => good, async () => {
    const text = [
        '; agentgate test config',
        '# both comment styles',
        '[gateway]',
        'log_level = debug          ; inline comment',
        'auth = none',
        '',
        '[server.everything]',
        `command = ${NODE}`,
        `args = ${JSON.stringify([EVERYTHING_JS, 'stdio'])}`,
        'env.AGENTGATE_TEST_KEY = ${env:AGENTGATE_TEST_SECRET}',
        'env.AGENTGATE_TEST_PLAIN = plain value',
        'prefix = ev                ; default: the section name',
        'isolation = shared',
        'restart = on-failure',
        'request_timeout = 300s',
        '',
    ].join('\n');
    good = await startDaemon({ config: text, tag: 'good', env: { AGENTGATE_TEST_SECRET: 's3cr3t-from-daemon-env' } });
    const c = await connectClient(good, { name: 'config-check' });
    try {
        await waitFor(async () => (await c.client.listTools()).tools.some((t) => t.name === 'ev__get-env'), {
            timeout: 15000,
            interval: 200,
            what: 'ev__get-env',
        });
        const names = (await c.client.listTools()).tools.map((t) => t.name);
        assert.ok(!names.some((n) => n.startsWith('everything__')), 'the section name is not used when prefix is set');
        const env = JSON.parse(resultText(await c.client.callTool({ name: 'ev__get-env', arguments: {} })));
        assert.equal(env.AGENTGATE_TEST_KEY, 's3cr3t-from-daemon-env');
        assert.equal(env.AGENTGATE_TEST_PLAIN, 'plain value');
    } finally {
        await c.close();
    }
    await within(20000, assertCleanStop(assert, good), 'clean stop');
}));

test('without a config file, serve runs the built-in demo server as "demo" and prints how to connect', { timeout: 30000, skip }, withLog(() => demo, async () => {
    demo = await startDaemon({ config: null, tag: 'demo' });
    const out = () => demo.stdout + demo.stderr;
    await waitFor(() => out().includes(`127.0.0.1:${demo.port}`), { what: 'the listen address printed at start' });
    await waitFor(() => out().includes('mcpServers'), { what: 'the mcpServers snippet printed at start' });
    // The Claude Desktop snippet runs this very binary's bridge on this daemon's socket.
    const snippet = JSON.parse(out().slice(out().indexOf('{\n  "mcpServers"')).split('\n}\n')[0] + '\n}');
    assert.deepEqual(snippet.mcpServers.agentgate.args, ['bridge', '--socket', demo.socket]);
    assert.ok(snippet.mcpServers.agentgate.command.endsWith('agentgate'));
    const c = await connectClient(demo, { name: 'demo-user' });
    try {
        let tools = [];
        await waitFor(
            async () => {
                tools = (await c.client.listTools()).tools;
                return tools.some((t) => t.name === 'demo__echo');
            },
            { timeout: 15000, interval: 200, what: 'demo__echo' },
        );
        const names = tools.map((t) => t.name);
        for (const n of ['demo__echo', 'demo__sum', 'demo__sleep']) assert.ok(names.includes(n), `missing ${n} in ${names.join(', ')}`);
        const echo = tools.find((t) => t.name === 'demo__echo');
        const strArg = Object.entries(echo.inputSchema.properties ?? {}).find(([, s]) => s.type === 'string')?.[0];
        assert.ok(strArg, `demo__echo has a string argument: ${JSON.stringify(echo.inputSchema)}`);
        const r = await c.client.callTool({ name: 'demo__echo', arguments: { [strArg]: 'demo says hi' } });
        assert.equal(r.isError ?? false, false, resultText(r));
        assert.match(resultText(r) + JSON.stringify(r.structuredContent ?? ''), /demo says hi/);
        const sum = await c.client.callTool({ name: 'demo__sum', arguments: { a: 2, b: 40 } });
        assert.match(resultText(sum) + JSON.stringify(sum.structuredContent ?? ''), /\b42\b/);
        const prompts = (await c.client.listPrompts()).prompts.map((p) => p.name);
        assert.ok(prompts.includes('demo__greeting'), `prompts: ${prompts.join(', ')}`);
        const res = (await c.client.listResources()).resources.map((x) => x.uri);
        assert.ok(res.includes('demo://readme'), `resources: ${res.join(', ')}`);
        const readme = await c.client.readResource({ uri: 'demo://readme' });
        assert.ok((readme.contents[0].text ?? '').length > 0);
    } finally {
        await c.close();
    }
    await within(20000, assertCleanStop(assert, demo), 'clean stop');
}));

test('a TCP port already in use is refused with a message naming it, not a hang', { timeout: 20000, skip }, async () => {
    const busy = net.createServer();
    await new Promise((r) => busy.listen({ port: 0, host: '127.0.0.1' }, r));
    const { port } = busy.address();
    const dir = makeTmp('busy');
    try {
        const r = await runBin(['serve', '--listen', `127.0.0.1:${port}`, '--socket', path.join(dir, 's.sock'), '--state-dir', path.join(dir, 'state')], {
            env: { XDG_RUNTIME_DIR: dir, XDG_STATE_HOME: dir, XDG_CONFIG_HOME: dir },
            timeout: 10000,
        });
        assert.equal(sanitizerReport(r.stderr), null, r.stderr);
        assert.notEqual(r.code, 0, 'exit status');
        assert.equal(r.signal, null, `killed by ${r.signal}`);
        assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${port}`), `stderr names the address:\n${r.stderr}`);
    } finally {
        busy.close();
    }
});
