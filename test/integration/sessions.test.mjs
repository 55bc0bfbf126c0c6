// Sealed session tokens: the Mcp-Session-Id is an AES-256-GCM sealed value (SPEC: version 1 |
// key id | nonce | ciphertext | tag, base64url) that carries the whole session, so a daemon
// killed with SIGKILL and started again with the same state dir continues the session of a
// client that never re-initialises. Anything that does not open (tampered, random, another
// daemon's key, expired, sealed for another client) is HTTP 404 with JSON-RPC -32001.
// Both AES backends (mbedTLS, libsodium) open each other's tokens.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';

import {
    IS_GATEWAY,
    MCP_HEADERS,
    bearer,
    clientSection,
    demoSection,
    openSessionToken,
    randomToken,
    rawHttp,
    rawSession,
    resultText,
    sha256Hex,
    sleep,
    tamperToken,
    testKit,
    tokenParts,
    untilTool,
    waitFor,
    within,
} from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 30000, skip };

const ALICE = randomToken('alice');
const BOB = randomToken('bob');
const withClients = (gateway = '') =>
    `[gateway]\nauth = token\n${gateway}\n` +
    clientSection('alice', { token_sha256: sha256Hex(ALICE) }) +
    '\n' +
    clientSection('bob', { token_sha256: sha256Hex(BOB) }) +
    '\n' +
    demoSection();
const anonymous = (gateway = '') => `[gateway]\nauth = none\n${gateway}\n` + demoSection();

const kit = testKit('sess');
const { start, restart, client, wrap } = kit;
after(kit.cleanup);

const echo = async (c, message) => resultText(await within(15000, c.client.callTool({ name: 'demo__echo', arguments: { message } }), `demo__echo ${message}`));
const sessionKey = (d) => fs.readFileSync(path.join(d.stateDir, 'session.key'));
const initializes = (c) => c.outbox.filter((m) => m.method === 'initialize').length;

/** POST tools/list with a given Mcp-Session-Id (and headers); resolves the raw response. */
function listWith(d, sid, headers = {}) {
    return rawHttp({
        port: d.port,
        headers: { ...MCP_HEADERS, 'mcp-protocol-version': '2025-11-25', 'mcp-session-id': sid, ...headers },
        body: { jsonrpc: '2.0', id: 77, method: 'tools/list' },
        until: (ms) => ms.some((m) => m.id === 77 && !m.method),
    });
}
function assertSessionNotFound(r, what) {
    assert.equal(r.status, 404, `${what}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
    assert.ok(r.json, `${what}: the 404 has a JSON-RPC body: ${r.text.slice(0, 300)}`);
    assert.equal(r.json.error?.code, -32001, `${what}: ${r.text.slice(0, 300)}`);
    assert.match(r.json.error.message, /Session not found/, what);
}
function assertListed(r, what) {
    assert.equal(r.status, 200, `${what}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
    const rep = r.messages.find((m) => m.id === 77 && !m.method);
    assert.ok(rep?.result?.tools?.some((t) => t.name === 'demo__echo'), `${what}: ${r.text.slice(0, 300)}`);
}

test('SIGKILL + restart with the same state dir: the same client continues its session without initialize', T, wrap(async () => {
    let d = await start({ config: withClients(), auth: 'token' });
    const c = await client(d, { headers: bearer(ALICE) });
    await untilTool(c);
    assert.equal(await echo(c, 'before the crash'), 'before the crash');
    const sid0 = c.transport.sessionId;
    const key = sessionKey(d);
    assert.equal(key.length, 32, '<state>/session.key holds 32 bytes');
    const parts = tokenParts(sid0);
    assert.ok(parts, `Mcp-Session-Id is base64url of a sealed value: ${sid0}`);
    assert.equal(parts.version, 1, 'sealed value version byte');
    const p0 = openSessionToken(sid0, key, 'alice');
    assert.ok(p0, 'the Mcp-Session-Id opens with <state>/session.key and additional data "session\\0alice"');
    assert.equal(p0.v, 1);
    assert.equal(p0.c, 'alice');
    assert.match(String(p0.sid), /^[0-9a-f]+$/);
    assert.ok(p0.exp > p0.iat, 'exp after iat');

    d = await restart(d);
    assert.deepEqual(sessionKey(d), key, 'the restarted daemon keeps the session key');
    // The very same Client/transport (it still holds the old Mcp-Session-Id).
    assert.equal(await echo(c, 'after the crash'), 'after the crash');
    assert.equal(initializes(c), 0, 'the client sent no second initialize');
    const sid1 = c.transport.sessionId;
    if (sid1 !== sid0) {
        const p1 = openSessionToken(sid1, key, 'alice');
        assert.equal(p1?.sid, p0.sid, 'a re-sealed token names the same session');
    }
    const names = (await c.client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('demo__echo'), names.join(', '));
    // The old token also still works for a raw request after the restart.
    assertListed(await listWith(d, sid0, bearer(ALICE)), 'the original token after the restart');
}));

test('tampered, random, foreign and other-client tokens are 404 Session not found', T, wrap(async () => {
    const foreign = await start({ config: withClients(), auth: 'token', tag: 'sess-foreign' });
    const d = await start({ config: withClients(), auth: 'token' });
    const s = await rawSession(d, { headers: bearer(ALICE) });
    const tok = s.sid;
    assertListed(await listWith(d, tok, bearer(ALICE)), 'the genuine token');
    const len = Buffer.from(tok, 'base64url').length;

    const f = await rawSession(foreign, { headers: bearer(ALICE) });
    assertListed(await listWith(foreign, f.sid, bearer(ALICE)), 'the foreign daemon\'s own token at home');
    const cases = [
        ['one byte of the tag changed', tamperToken(tok, -1)],
        ['one byte of the ciphertext changed', tamperToken(tok, 17 + 3)],
        ['one byte of the nonce changed', tamperToken(tok, 8)],
        ['one byte of the key id changed', tamperToken(tok, 2)],
        ['the version byte changed', tamperToken(tok, 0)],
        ['a random base64url string of the same length', crypto.randomBytes(len).toString('base64url')],
        ['a short random base64url string', crypto.randomBytes(12).toString('base64url')],
        ['a token of a daemon with another state dir (another key)', f.sid],
    ];
    for (const [what, t] of cases) {
        assert.notEqual(t, tok);
        assertSessionNotFound(await listWith(d, t, bearer(ALICE)), what);
    }
    // Sealed for alice, presented by bob (bob's own bearer is valid).
    const b = await rawSession(d, { headers: bearer(BOB) });
    assertListed(await listWith(d, b.sid, bearer(BOB)), 'bob\'s own token');
    assertSessionNotFound(await listWith(d, tok, bearer(BOB)), 'alice\'s token with bob\'s bearer');
    assertSessionNotFound(await listWith(d, b.sid, bearer(ALICE)), 'bob\'s token with alice\'s bearer');
    // None of that hurt the genuine session.
    assertListed(await listWith(d, tok, bearer(ALICE)), 'the genuine token afterwards');

    // DELETE ends the session for good: 404 afterwards, also after kill -9 and a restart, while
    // another session of the same daemon carries on.
    const del = await rawHttp({ port: d.port, method: 'DELETE', headers: { ...bearer(ALICE), 'mcp-session-id': tok } });
    assert.ok(del.status >= 200 && del.status < 300, `DELETE: HTTP ${del.status} ${del.text}`);
    assertSessionNotFound(await listWith(d, tok, bearer(ALICE)), 'a deleted session');
    const d2 = await restart(d);
    assertSessionNotFound(await listWith(d2, tok, bearer(ALICE)), 'a deleted session after a restart');
    await waitFor(async () => (await listWith(d2, b.sid, bearer(BOB))).status === 200, { timeout: 10000, what: 'bob\'s session after the restart' });
}));

test('an expired token (session_ttl = 2s, 3 s later) is 404 Session not found', T, wrap(async () => {
    const d = await start({ config: anonymous('session_ttl = 2s') });
    const s = await rawSession(d);
    const key = sessionKey(d);
    const p = openSessionToken(s.sid, key, '');
    assert.ok(p, 'an anonymous session token opens with additional data "session\\0"');
    assert.equal(p.c ?? '', '', 'anonymous: no client name');
    assert.ok(Math.abs(p.exp - p.iat - 2) <= 1, `exp - iat = ${p.exp - p.iat}, session_ttl is 2s`);
    await waitFor(async () => (await listWith(d, s.sid)).status === 200, { timeout: 5000, what: 'tools/list with the fresh token' });
    await sleep(3000);
    assertSessionNotFound(await listWith(d, s.sid), 'an expired token');
}));

/** Starts a daemon forcing AGENTGATE_AES=backend; null when libsodium's AES-GCM is unavailable. */
async function startOrSkip(t, fn, backend) {
    try {
        return await fn();
    } catch (e) {
        if (backend === 'sodium' && e.daemon && !e.daemon.alive && /sodium/i.test(e.daemon.stderr)) {
            t.skip(`libsodium AES-256-GCM is unavailable here: ${e.daemon.stderr.trim().split('\n').pop()}`);
            return null;
        }
        throw e;
    }
}

/** When the daemon's start-up log names its AES backend ("sealed with X"), it is the forced one. */
function assertBackendLogged(d, backend) {
    const m = /sealed with (libsodium|mbedtls)/i.exec(d.stderr);
    if (m) assert.equal(m[1].toLowerCase(), backend === 'sodium' ? 'libsodium' : 'mbedtls', `AGENTGATE_AES=${backend} was not applied: ${m[0]}`);
}

test('AGENTGATE_AES with an unknown value: the daemon refuses to start and says why', T, wrap(async () => {
    const err = await start({ config: anonymous(), env: { AGENTGATE_AES: 'rot13' } }).then(
        () => null,
        (e) => e,
    );
    assert.ok(err, 'the daemon started with AGENTGATE_AES=rot13');
    assert.ok(err.daemon && !err.daemon.alive && err.daemon.exit.code !== 0, err.message);
    assert.match(err.daemon.stderr, /AGENTGATE_AES/, 'the message names AGENTGATE_AES');
}));

for (const [first, second] of [
    ['mbedtls', 'sodium'],
    ['sodium', 'mbedtls'],
]) {
    test(`AGENTGATE_AES=${first}, SIGKILL, restart with AGENTGATE_AES=${second}: the session continues`, T, wrap(async (t) => {
        let d = await startOrSkip(t, () => start({ config: anonymous(), env: { AGENTGATE_AES: first } }), first);
        if (!d) return;
        assertBackendLogged(d, first);
        const c = await client(d);
        await untilTool(c);
        assert.equal(await echo(c, `sealed by ${first}`), `sealed by ${first}`);
        const key = sessionKey(d);
        assert.ok(openSessionToken(c.transport.sessionId, key, ''), `${first}'s token opens with node's AES-256-GCM`);
        d = await startOrSkip(t, () => restart(d, { env: { AGENTGATE_AES: second } }), second);
        if (!d) return;
        assertBackendLogged(d, second);
        assert.equal(await echo(c, `opened by ${second}`), `opened by ${second}`);
        assert.equal(initializes(c), 0, 'no second initialize');
        // And a new session sealed by the second backend opens with the same key.
        const s = await rawSession(d);
        assert.ok(openSessionToken(s.sid, key, ''), `${second}'s token opens with node's AES-256-GCM`);
    }));
}

test('logging/setLevel re-seals the token; the level survives SIGKILL + restart', T, wrap(async () => {
    let d = await start({ config: anonymous() });
    const c = await client(d);
    await untilTool(c);
    await sleep(200); // let the GET stream open
    const before = c.transport.sessionId;
    await c.client.setLoggingLevel('error');
    const after = c.transport.sessionId;
    assert.notEqual(after, before, 'the setLevel response carries a fresh Mcp-Session-Id that the SDK adopted');
    const key = sessionKey(d);
    const p0 = openSessionToken(before, key, '');
    const p1 = openSessionToken(after, key, '');
    assert.ok(p0 && p1, 'both tokens open');
    assert.equal(p1.sid, p0.sid, 'the same session');
    assert.equal(p1.ll, 'error', 'the new token records the log level');
    // The older token of the same session keeps working.
    assertListed(await listWith(d, before), 'the token from before setLevel');

    const seen = (text) => c.notifications('notifications/message').some((m) => JSON.stringify(m.params).includes(text));
    const log = (level, text) => c.client.callTool({ name: 'demo__log', arguments: { level, text } });
    await log('warning', 'warning-before-crash-5e1');
    await log('error', 'error-before-crash-5e1');
    await waitFor(() => seen('error-before-crash-5e1'), { timeout: 3000, what: 'the error-level message' });
    assert.ok(!seen('warning-before-crash-5e1'), 'a warning reached a session at level error');

    d = await restart(d);
    await within(15000, log('warning', 'warning-after-crash-9c4'), 'log after the restart');
    await log('error', 'error-after-crash-9c4');
    await waitFor(() => seen('error-after-crash-9c4'), { timeout: 3000, what: 'the error-level message after the restart' });
    await sleep(200);
    assert.ok(!seen('warning-after-crash-9c4'), 'after the restart a warning reached a session at level error: the level was lost');
    assert.equal(initializes(c), 0, 'no second initialize');
}));
