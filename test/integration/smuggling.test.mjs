// What the gateway checked is exactly what it forwards: a request that repeats a key the gateway
// reads (name, uri, ref, _meta.progressToken, cursor, id, method ...) is refused with -32600 and
// nothing reaches a server, and only exposed names route, so a raw upstream name cannot walk
// around a deny rule (issue 9, items 1 and 2). The server is test/integration/hostile-server.mjs.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
    IS_GATEWAY,
    NODE,
    bearer,
    clientSection,
    demoSection,
    randomToken,
    rawSession,
    reply,
    resultText,
    serverSection,
    sha256Hex,
    testKit,
    waitFor,
} from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 30000, skip };
const HOSTILE = path.join(path.dirname(new URL(import.meta.url).pathname), 'hostile-server.mjs');
const LONG = 'x'.repeat(80);

const TOK = { alice: randomToken('alice'), bob: randomToken('bob') };
const config =
    '[gateway]\nauth = token\n\n' +
    clientSection('alice', {
        token_sha256: sha256Hex(TOK.alice),
        deny: 'demo__touch, evil__write_file, evil__x*, evil__bad_prompt, hostile://secret',
    }) +
    '\n' +
    clientSection('bob', { token_sha256: sha256Hex(TOK.bob) }) +
    '\n' +
    demoSection('demo') +
    '\n' +
    serverSection('evil', { command: NODE, args: [HOSTILE], prefix: 'evil', extra: { isolation: 'shared' } });

let d;
const C = {};
const R = {};
const kit = testKit('smuggle');
const { wrap } = kit;

before(async () => {
    if (!IS_GATEWAY) return;
    d = await kit.start({ config, auth: 'token' });
    for (const name of Object.keys(TOK)) {
        C[name] = await kit.client(d, { name, headers: bearer(TOK[name]) });
        R[name] = await rawSession(d, { headers: bearer(TOK[name]) });
    }
    await waitFor(
        async () => {
            const names = (await C.bob.client.listTools()).tools.map((t) => t.name);
            return names.includes('demo__echo') && names.includes('evil__echo');
        },
        { timeout: 15000, interval: 100, what: 'demo__echo and evil__echo' },
    );
});

after(kit.cleanup);

/** What the hostile server has received so far (tools/call, resources/read, prompts/get ...). */
async function seenByServer() {
    const r = await C.bob.client.callTool({ name: 'evil__calls', arguments: {} });
    return JSON.parse(resultText(r)).filter((x) => x.name !== 'calls');
}

let nextId = 100;
/** Posts a raw body (a string, so keys can repeat) on alice's session; returns {res, msg}. */
async function rawPost(body, who = 'alice') {
    const id = nextId++;
    const text = body.replace('"ID"', String(id));
    const res = await R[who].post(text, {}, { until: (ms) => ms.some((m) => (m.id === id || m.id === null) && !m.method) });
    return { res, msg: reply(res, id) ?? reply(res, null), id };
}

test('a repeated name, uri, ref or progress token is refused with -32600 and never reaches a server', T, wrap(async () => {
    const before = (await seenByServer()).length;
    const cases = [
        // The example: the denied touch hidden behind a permitted echo.
        '{"jsonrpc":"2.0","id":"ID","method":"tools/call","params":{"name":"demo__touch","name":"demo__echo","arguments":{"message":"hi","uri":"demo://readme"}}}',
        '{"jsonrpc":"2.0","id":"ID","method":"tools/call","params":{"name":"evil__write_file","name":"evil__echo","arguments":{}}}',
        // The same key, spelled with an escape.
        '{"jsonrpc":"2.0","id":"ID","method":"tools/call","params":{"name":"evil__echo","n\\u0061me":"evil__write_file","arguments":{}}}',
        '{"jsonrpc":"2.0","id":"ID","method":"resources/read","params":{"uri":"hostile://secret","uri":"hostile://public"}}',
        '{"jsonrpc":"2.0","id":"ID","method":"resources/subscribe","params":{"uri":"hostile://secret","uri":"hostile://public"}}',
        '{"jsonrpc":"2.0","id":"ID","method":"prompts/get","params":{"name":"evil__bad_prompt","name":"evil__greet"}}',
        '{"jsonrpc":"2.0","id":"ID","method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"evil__bad_prompt","name":"evil__greet"},"argument":{"name":"a","value":"b"}}}',
        '{"jsonrpc":"2.0","id":"ID","method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"hostile://secret"},"ref":{"type":"ref/resource","uri":"hostile://public"},"argument":{"name":"a","value":"b"}}}',
        '{"jsonrpc":"2.0","id":"ID","method":"tools/call","params":{"name":"evil__echo","arguments":{},"_meta":{"progressToken":1,"progressToken":"x"}}}',
        '{"jsonrpc":"2.0","id":"ID","method":"tools/list","params":{"cursor":"a","cursor":"b"}}',
    ];
    for (const body of cases) {
        const { res, msg } = await rawPost(body);
        assert.equal(res.status, 200, `${body}: HTTP ${res.status} ${res.text}`);
        assert.ok(msg, `${body}: no answer: ${res.text}`);
        assert.equal(msg.error?.code, -32600, `${body}: ${JSON.stringify(msg)}`);
        assert.match(msg.error.message, /duplicate/);
    }
    assert.deepEqual((await seenByServer()).slice(before), [], 'nothing reached the server');
    // demo's touch did not run either: nothing was recorded for it in the audit log.
    const audit = fs.readFileSync(path.join(d.stateDir, 'audit.jsonl'), 'utf8');
    assert.ok(!audit.split('\n').some((l) => l.includes('"tool":"demo__touch"') && l.includes('"ok"')), audit);
}));

test('a repeated id or method is refused before anything happens (HTTP 400, id null)', T, wrap(async () => {
    const before = (await seenByServer()).length;
    for (const body of [
        '{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"evil__echo"}}',
        '{"jsonrpc":"2.0","id":3,"method":"tools/list","method":"tools/call","params":{"name":"evil__echo"}}',
        '{"jsonrpc":"2.0","id":4,"method":"initialize","params":{"protocolVersion":"2025-06-18","protocolVersion":"2024-11-05","capabilities":{}}}',
    ]) {
        const res = await R.alice.post(body);
        assert.equal(res.status, 400, `${body}: ${res.status} ${res.text}`);
        assert.equal(res.json?.error?.code, -32600, res.text);
        assert.equal(res.json?.id, null);
    }
    assert.deepEqual((await seenByServer()).slice(before), []);
}));

test('the same requests with single keys still work (the refusal is about the repeat)', T, wrap(async () => {
    const { msg } = await rawPost('{"jsonrpc":"2.0","id":"ID","method":"tools/call","params":{"name":"evil__echo","arguments":{"k":1,"k":2}}}');
    assert.equal(msg.error, undefined, JSON.stringify(msg));
    // Keys the gateway does not read (inside arguments) are the server's business.
    assert.match(msg.result.content[0].text, /"name":"echo"/);
}));

test('only exposed names route: raw upstream names are unknown tools, for every client', T, wrap(async () => {
    const before = (await seenByServer()).length;
    for (const who of ['alice', 'bob']) {
        for (const raw of ['evil__write file', `evil__${LONG}`]) {
            const r = await C[who].client.callTool({ name: raw, arguments: {} });
            assert.equal(r.isError, true, `${who} ${raw}: ${JSON.stringify(r)}`);
            assert.equal(resultText(r), `Unknown tool: ${raw}`);
        }
        const p = await C[who].client.getPrompt({ name: 'evil__bad prompt' }).then(
            () => null,
            (e) => e,
        );
        assert.equal(p?.code, -32602, `${who}: prompts/get by the raw name`);
    }
    assert.deepEqual((await seenByServer()).slice(before), [], 'no raw name reached the server');
}));

test('exposed (sanitised and shortened) names route, and deny rules apply to them', T, wrap(async () => {
    const tools = (await C.bob.client.listTools()).tools.map((t) => t.name);
    assert.ok(tools.includes('evil__write_file'), tools.join(','));
    const long = tools.find((t) => t.startsWith('evil__xxxx'));
    assert.ok(long && long.length <= 64, `a shortened name: ${long}`);
    assert.equal(resultText(await C.bob.client.callTool({ name: 'evil__write_file', arguments: {} })), 'ran write file');
    assert.equal(resultText(await C.bob.client.callTool({ name: long, arguments: {} })), `ran ${LONG}`);
    const bp = await C.bob.client.getPrompt({ name: 'evil__bad_prompt' });
    assert.equal(bp.messages[0].content.text, 'prompt bad prompt');
    // alice's deny list names the exposed names.
    const aliceTools = (await C.alice.client.listTools()).tools.map((t) => t.name);
    assert.ok(!aliceTools.includes('evil__write_file') && !aliceTools.some((t) => t.startsWith('evil__x')), aliceTools.join(','));
    const seenBefore = (await seenByServer()).length;
    for (const name of ['evil__write_file', long]) {
        const r = await C.alice.client.callTool({ name, arguments: {} });
        assert.equal(resultText(r), `Unknown tool: ${name}`);
    }
    const e = await C.alice.client.getPrompt({ name: 'evil__bad_prompt' }).then(() => null, (x) => x);
    assert.equal(e?.code, -32602);
    assert.deepEqual((await seenByServer()).slice(seenBefore), []);
}));
