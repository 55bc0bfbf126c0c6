// Session keys and client tokens from the command line: <state>/session.key (32 bytes, 0600,
// refused when group/other can read it or its size is wrong), `agentgate rotate-key` with a
// running daemon (old sessions keep working through the retired key, new ones use the new key),
// and `agentgate token create NAME` (token printed once, its SHA-256 in the config, live after
// the automatic reload).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';

import {
    IS_GATEWAY,
    MCP_HEADERS,
    PROTOCOL_VERSION,
    bearer,
    demoSection,
    fileMode,
    keyIdOf,
    makeTmp,
    openSessionToken,
    randomToken,
    rawHttp,
    rawSession,
    resultText,
    runBin,
    sha256Hex,
    testKit,
    tokenParts,
    untilTool,
    within,
} from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 30000, skip };

const kit = testKit('keys');
const { wrap, restart } = kit;
after(kit.cleanup);

const start = (config, opts) => kit.start({ config, ...opts });
/** A client whose session already lists demo__echo. */
const client = async (d, opts) => untilTool(await kit.client(d, opts));
const keyPath = (d) => path.join(d.stateDir, 'session.key');
const echo = async (c, message) => resultText(await within(15000, c.client.callTool({ name: 'demo__echo', arguments: { message } }), `echo ${message}`));
const anonConfig = '[gateway]\nauth = none\n\n' + demoSection();

test('session.key: 32 bytes, mode 0600, created at first start; the tokens carry its key id', T, wrap(async () => {
    const d = await start(anonConfig);
    const key = fs.readFileSync(keyPath(d));
    assert.equal(key.length, 32, 'session.key size');
    assert.equal(fileMode(keyPath(d)), 0o600, 'session.key mode');
    assert.ok(fs.statSync(keyPath(d)).isFile());
    const s = await rawSession(d);
    const p = tokenParts(s.sid);
    assert.ok(p, `the session id is a sealed value: ${s.sid}`);
    assert.equal(p.version, 1);
    assert.deepEqual(p.keyId, keyIdOf(key), 'key id = first 4 bytes of SHA-256(session.key)');
    assert.ok(openSessionToken(s.sid, key, ''), 'the token opens with session.key');
}));

test('a group/other-readable or wrong-size session.key: the daemon refuses to start, naming session.key', T, wrap(async () => {
    let d = await start(anonConfig);
    const key = fs.readFileSync(keyPath(d));
    await d.stop();
    for (const [what, prepare] of [
        ['mode 0644', () => fs.chmodSync(keyPath(d), 0o644)],
        ['mode 0640', () => fs.chmodSync(keyPath(d), 0o640)],
        ['31 bytes', () => {
            fs.writeFileSync(keyPath(d), key.subarray(0, 31));
            fs.chmodSync(keyPath(d), 0o600);
        }],
    ]) {
        prepare();
        const err = await restart(d).then(
            (n) => {
                n.kill();
                return null;
            },
            (e) => e,
        );
        assert.ok(err, `${what}: the daemon started anyway`);
        assert.ok(err.daemon && !err.daemon.alive && err.daemon.exit.code !== 0, `${what}: the daemon exits with an error: ${err.message}`);
        assert.match(err.daemon.stderr, /session\.key/, `${what}: the message names session.key`);
        // The key file is left alone (never replaced by a new key).
        if (what.startsWith('mode')) assert.deepEqual(fs.readFileSync(keyPath(d)), key, `${what}: the key was rewritten`);
        d = err.daemon;
        // Put it right again.
        fs.writeFileSync(keyPath(d), key);
        fs.chmodSync(keyPath(d), 0o600);
    }
    const n = await restart(d);
    assert.deepEqual(fs.readFileSync(keyPath(n)), key, 'the restored key is used, not replaced');
    const s = await rawSession(n);
    assert.ok(openSessionToken(s.sid, key, ''), 'tokens are sealed with the restored key');
}));

test('rotate-key with a running daemon: old sessions keep working, new sessions use the new key', T, wrap(async () => {
    let d = await start(anonConfig);
    const oldKey = fs.readFileSync(keyPath(d));
    const a = await client(d);
    assert.equal(await echo(a, 'before rotation'), 'before rotation');
    assert.deepEqual(tokenParts(a.transport.sessionId).keyId, keyIdOf(oldKey));

    const r = await d.cli(['rotate-key']);
    assert.equal(r.code, 0, `agentgate rotate-key: ${r.stdout}${r.stderr}`);
    const newKey = fs.readFileSync(keyPath(d));
    assert.equal(newKey.length, 32);
    assert.notDeepEqual(newKey, oldKey, 'a new session.key');
    assert.equal(fileMode(keyPath(d)), 0o600);
    const retired = fs.readdirSync(d.stateDir).filter((f) => /^session\.key\.\d+$/.test(f));
    assert.equal(retired.length, 1, `one retired key file: ${fs.readdirSync(d.stateDir).join(', ')}`);
    const stamp = Number(retired[0].split('.').pop());
    assert.ok(Math.abs(stamp - Date.now() / 1000) < 60, `session.key.<UNIXTIME> is now: ${retired[0]}`);
    assert.deepEqual(fs.readFileSync(path.join(d.stateDir, retired[0])), oldKey, 'the retired file holds the old key');
    assert.equal(fileMode(path.join(d.stateDir, retired[0])), 0o600);

    // The session sealed with the old key keeps working.
    assert.equal(await echo(a, 'after rotation'), 'after rotation');
    // A new session is sealed with the new key (the daemon was told to reload).
    const b = await client(d);
    assert.equal(await echo(b, 'new session'), 'new session');
    assert.deepEqual(tokenParts(b.transport.sessionId).keyId, keyIdOf(newKey), 'a new session uses the new key');
    assert.ok(openSessionToken(b.transport.sessionId, newKey, ''));

    // Both survive a crash: the retired key is loaded from its file.
    d = await restart(d);
    assert.equal(await echo(a, 'old key after restart'), 'old key after restart');
    assert.equal(await echo(b, 'new key after restart'), 'new key after restart');
}));

test('token create NAME: prints the token once, stores its SHA-256 in the config, works after the automatic reload', T, wrap(async () => {
    const d = await start('[gateway]\nauth = token\n\n' + demoSection(), { auth: 'token' });
    const initBody = {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'keys', version: '1' } },
    };
    const before = await rawHttp({ port: d.port, headers: { ...MCP_HEADERS, ...bearer(randomToken('x')) }, body: initBody });
    assert.equal(before.status, 401, 'no client yet');

    const r = await d.cli(['token', 'create', 'bob']);
    assert.equal(r.code, 0, `agentgate token create bob: ${r.stderr}`);
    const out = r.stdout.trim().split('\n');
    assert.equal(out.length, 1, `stdout is the token alone: ${r.stdout}`);
    const token = out[0].trim();
    assert.ok(token.length >= 32 && !/\s/.test(token), `a token: ${token}`);

    const text = fs.readFileSync(d.configPath, 'utf8');
    assert.match(text, /^\[client\.bob\]\s*$/m, text);
    const m = /^\s*token_sha256\s*=\s*([0-9a-f]{64})\s*$/m.exec(text.slice(text.indexOf('[client.bob]')));
    assert.ok(m, `token_sha256 under [client.bob]:\n${text}`);
    assert.equal(m[1], sha256Hex(token), 'token_sha256 = SHA-256(token)');
    assert.ok(!text.includes(token), 'the token itself is not stored');

    const c = await client(d, { headers: bearer(token) });
    assert.equal(await echo(c, 'bob via a new token'), 'bob via a new token');
    const wrong = await rawHttp({ port: d.port, headers: { ...MCP_HEADERS, ...bearer(token + 'x') }, body: initBody });
    assert.equal(wrong.status, 401);

    // A second token for bob replaces the first.
    const r2 = await d.cli(['token', 'create', 'bob']);
    assert.equal(r2.code, 0, r2.stderr);
    const token2 = r2.stdout.trim();
    assert.notEqual(token2, token);
    const text2 = fs.readFileSync(d.configPath, 'utf8');
    assert.equal(text2.split('[client.bob]').length - 1, 1, `one [client.bob] section:\n${text2}`);
    assert.ok(text2.includes(sha256Hex(token2)) && !text2.includes(sha256Hex(token)), text2);
    const c2 = await client(d, { headers: bearer(token2) });
    assert.equal(await echo(c2, 'second token'), 'second token');
    const old = await rawHttp({ port: d.port, headers: { ...MCP_HEADERS, ...bearer(token) }, body: initBody });
    assert.equal(old.status, 401, 'the replaced token no longer authenticates');
}));

test('token create with no config file yet: the new file keeps the demo server and adds the client', T, wrap(async () => {
    const dir = makeTmp('keys-new');
    const r = await runBin(['token', 'create', 'carol', '--socket', path.join(dir, 'none.sock')], {
        env: { XDG_CONFIG_HOME: path.join(dir, 'config') },
    });
    assert.equal(r.code, 0, r.stderr);
    const token = r.stdout.trim();
    const file = path.join(dir, 'config', 'agentgate', 'agentgate.ini');
    assert.equal(fileMode(file), 0o600);
    const text = fs.readFileSync(file, 'utf8');
    assert.match(text, /^\[server\.demo\]$/m, text);
    assert.ok(text.includes(sha256Hex(token)), text);
    // The file as written serves the demo server to that token's holder.
    const d = await start(text, { auth: 'token' });
    const c = await client(d, { headers: bearer(token) });
    assert.equal(await echo(c, 'carol from a fresh config'), 'carol from a fresh config');
}));
