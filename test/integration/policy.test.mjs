// Per-client policy: servers / allow / deny filter tools, prompts and resources per client, a
// hidden tool answers exactly like one that never existed, and `rate` is a token bucket whose
// refusals (-32029, data.retryAfterMs) never reach the upstream.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
    IS_GATEWAY,
    bearer,
    clientSection,
    demoSection,
    randomToken,
    resultText,
    rpcError,
    sha256Hex,
    sleep,
    testKit,
    waitFor,
    assertCleanStop,
} from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 30000, skip };

const DEMO_TOOLS = ['echo', 'blob', 'sum', 'sleep', 'fail', 'touch', 'log', 'toggle'];
const TOK = { alice: randomToken('alice'), bob: randomToken('bob'), carol: randomToken('carol'), dave: randomToken('dave') };
const config =
    '[gateway]\nauth = token\n\n' +
    clientSection('alice', { token_sha256: sha256Hex(TOK.alice), servers: 'demo', deny: 'demo__sleep' }) +
    '\n' +
    clientSection('bob', { token_sha256: sha256Hex(TOK.bob), allow: 'other__*, demo__echo' }) +
    '\n' +
    clientSection('carol', { token_sha256: sha256Hex(TOK.carol), rate: '2/s burst 2' }) +
    '\n' +
    clientSection('dave', { token_sha256: sha256Hex(TOK.dave) }) + // no restrictions at all
    '\n' +
    demoSection('demo') +
    '\n' +
    demoSection('other');

let d;
const C = {}; // a client per name in TOK
const kit = testKit('policy');
const { wrap } = kit;

before(async () => {
    if (!IS_GATEWAY) return;
    d = await kit.start({ config, auth: 'token' });
    for (const name of Object.keys(TOK)) C[name] = await kit.client(d, { name, headers: bearer(TOK[name]) });
    // Both upstreams federated (dave sees everything).
    await waitFor(
        async () => {
            const names = (await C.dave.client.listTools()).tools.map((t) => t.name);
            return names.includes('demo__echo') && names.includes('other__echo');
        },
        { timeout: 15000, interval: 100, what: 'demo__echo and other__echo' },
    );
});

after(kit.cleanup);

const toolNames = async (c) => (await c.client.listTools()).tools.map((t) => t.name).sort();
const exposed = (prefix, names) => names.map((n) => `${prefix}__${n}`);

/** The answer to tools/call NAME with the name itself replaced, to compare two answers. */
async function callShape(c, name, args = {}) {
    const res = await c.client.callTool({ name, arguments: args });
    return { res, shape: JSON.parse(JSON.stringify(res).split(name).join('NAME')) };
}

test('tools/list per client: servers, allow and deny (deny wins)', T, wrap(async () => {
    assert.deepEqual(await toolNames(C.dave), [...exposed('demo', DEMO_TOOLS), ...exposed('other', DEMO_TOOLS)].sort(), 'a client without policy sees everything');
    assert.deepEqual(await toolNames(C.alice), exposed('demo', DEMO_TOOLS.filter((t) => t !== 'sleep')).sort(), 'alice: servers = demo, deny = demo__sleep');
    assert.deepEqual(await toolNames(C.bob), ['demo__echo', ...exposed('other', DEMO_TOOLS)].sort(), 'bob: allow = other__*, demo__echo');
}));

test('calling a tool the policy hides is answered exactly like a tool that never existed', T, wrap(async () => {
    // The gateway's own answer for a name no server has (CallToolResult, isError).
    const never = await callShape(C.alice, 'nothing__never_existed');
    assert.equal(never.res.isError, true);
    assert.equal(resultText(never.res), 'Unknown tool: nothing__never_existed');
    for (const [who, name, args] of [
        ['alice', 'demo__sleep', { ms: 1 }],
        ['alice', 'other__echo', { message: 'x' }],
        ['bob', 'demo__sum', { a: 1, b: 2 }],
        ['bob', 'demo__sleep', { ms: 1 }],
    ]) {
        const hidden = await callShape(C[who], name, args);
        assert.equal(hidden.res.isError, true, `${who} -> ${name}`);
        assert.equal(resultText(hidden.res), `Unknown tool: ${name}`, `${who} -> ${name}`);
        assert.deepEqual(hidden.shape, never.shape, `${who} -> ${name}: the same answer as an unknown tool`);
    }
    // The tools they may see still work.
    assert.equal(resultText(await C.alice.client.callTool({ name: 'demo__sum', arguments: { a: 2, b: 3 } })), '5');
    assert.equal(resultText(await C.bob.client.callTool({ name: 'demo__echo', arguments: { message: 'bob ok' } })), 'bob ok');
    assert.equal(resultText(await C.bob.client.callTool({ name: 'other__echo', arguments: { message: 'bob other' } })), 'bob other');
}));

test('prompts: lists per client; prompts/get and completion of a hidden prompt = unknown prompt (-32602)', T, wrap(async () => {
    const prompts = async (c) => (await c.client.listPrompts()).prompts.map((p) => p.name).sort();
    assert.deepEqual(await prompts(C.dave), ['demo__greeting', 'other__greeting']);
    assert.deepEqual(await prompts(C.alice), ['demo__greeting'], 'alice: servers = demo');
    assert.deepEqual(await prompts(C.bob), ['other__greeting'], 'bob: allow = other__*, demo__echo');
    const got = await C.alice.client.getPrompt({ name: 'demo__greeting', arguments: { name: 'Ada' } });
    assert.equal(got.messages[0].content.text, 'Say hello to Ada.');

    const norm = (e, name) => ({ code: e.code, message: e.message.split(name).join('NAME') });
    const never = await rpcError(C.alice.client.getPrompt({ name: 'other__never_existed', arguments: { name: 'x' } }));
    assert.equal(never.code, -32602);
    assert.match(never.message, /Unknown prompt: other__never_existed/);
    for (const [who, name] of [
        ['alice', 'other__greeting'],
        ['bob', 'demo__greeting'],
    ]) {
        const e = await rpcError(C[who].client.getPrompt({ name, arguments: { name: 'x' } }));
        assert.equal(e.code, -32602, `${who} prompts/get ${name}`);
        assert.match(e.message, new RegExp(`Unknown prompt: ${name}`));
        assert.deepEqual(norm(e, name), norm(never, 'other__never_existed'));
        const ce = await rpcError(C[who].client.complete({ ref: { type: 'ref/prompt', name }, argument: { name: 'name', value: 'A' } }));
        assert.equal(ce.code, -32602, `${who} completion/complete ${name}`);
        assert.match(ce.message, new RegExp(`Unknown prompt: ${name}`));
    }
    const ok = await C.bob.client.complete({ ref: { type: 'ref/prompt', name: 'other__greeting' }, argument: { name: 'name', value: 'A' } });
    assert.deepEqual(ok.completion.values, ['Alice']);
}));

test('resources: filtered by URI; reading or subscribing a hidden URI = resource not found (-32002)', T, wrap(async () => {
    // alice (servers = demo) sees demo's resources; bob's allow list (other__*, demo__echo)
    // matches no URI, so bob sees no resources and no templates at all.
    const aliceUris = (await C.alice.client.listResources()).resources.map((r) => r.uri);
    assert.ok(aliceUris.includes('demo://readme'), aliceUris.join(', '));
    const aliceTemplates = (await C.alice.client.listResourceTemplates()).resourceTemplates.map((r) => r.uriTemplate);
    assert.ok(aliceTemplates.includes('demo://items/{id}'), aliceTemplates.join(', '));
    const read = await C.alice.client.readResource({ uri: 'demo://readme' });
    assert.match(read.contents[0].text, /agentgate demo server/);

    assert.deepEqual((await C.bob.client.listResources()).resources, []);
    assert.deepEqual((await C.bob.client.listResourceTemplates()).resourceTemplates, []);
    const never = await rpcError(C.bob.client.readResource({ uri: 'nowhere://never/existed' }));
    assert.equal(never.code, -32002);
    for (const uri of ['demo://readme', 'demo://items/7']) {
        const e = await rpcError(C.bob.client.readResource({ uri }));
        assert.equal(e.code, -32002, `bob reads ${uri}`);
        assert.match(e.message, new RegExp(`Resource not found: ${uri.replace(/[/.]/g, '\\$&')}`));
        const s = await rpcError(C.bob.client.subscribeResource({ uri }));
        assert.equal(s.code, -32002, `bob subscribes ${uri}`);
    }
}));

test('rate = 2/s burst 2: the third call at once is -32029 with retryAfterMs, never reaches the upstream, and works after the wait', T, wrap(async () => {
    const c = C.carol;
    // carol has made no tools/call yet: her bucket is full (burst 2).
    const seen = (text) => c.notifications('notifications/message').some((m) => JSON.stringify(m.params).includes(text));
    // The demo's `log` tool sends notifications/message (level emergency passes any filter) when
    // the call reaches it: a refused call must leave no such trace.
    const texts = ['rate-a-71f', 'rate-b-71f', 'rate-c-71f'];
    const settled = await Promise.allSettled(texts.map((text) => c.client.callTool({ name: 'demo__log', arguments: { level: 'emergency', text } })));
    const refused = settled.map((s, i) => ({ s, text: texts[i] })).filter((x) => x.s.status === 'rejected');
    assert.equal(refused.length, 1, `exactly one of three immediate calls is refused: ${JSON.stringify(settled.map((s) => s.status))}`);
    const err = refused[0].s.reason;
    assert.equal(err.code, -32029, String(err));
    assert.match(err.message, /rate limit exceeded for client carol; retry in \d+ ms/);
    const retry = err.data?.retryAfterMs;
    assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 501, `data.retryAfterMs = ${JSON.stringify(err.data)}`);
    for (const x of settled) if (x.status === 'fulfilled') assert.equal(resultText(x.value), 'logged');

    const admitted = texts.filter((t) => t !== refused[0].text);
    await waitFor(() => admitted.every(seen), { timeout: 3000, what: 'the admitted calls\' log messages' });
    await sleep(300);
    assert.ok(!seen(refused[0].text), 'the refused call reached the upstream (its log message arrived)');

    await sleep(retry + 20);
    const res = await c.client.callTool({ name: 'demo__echo', arguments: { message: 'after the wait' } });
    assert.equal(resultText(res), 'after the wait');

    // Other clients are not limited.
    const many = await Promise.all(Array.from({ length: 6 }, (_, i) => C.dave.client.callTool({ name: 'demo__echo', arguments: { message: `d${i}` } })));
    many.forEach((r, i) => assert.equal(resultText(r), `d${i}`));
}));

test('a server\'s log messages reach only clients that may use that server', T, wrap(async () => {
    const text = 'other-log-5c2e';
    const seen = (c) => c.notifications('notifications/message').some((m) => JSON.stringify(m.params).includes(text));
    assert.equal(resultText(await C.dave.client.callTool({ name: 'other__log', arguments: { level: 'emergency', text } })), 'logged');
    await waitFor(() => seen(C.dave), { timeout: 3000, what: 'the log message at dave' });
    await sleep(300);
    assert.ok(!seen(C.alice), 'alice (servers = demo) got a log message of `other`');
    // bob may use `other` too, but with [client.*] sections every client has its own child
    // (isolation = client by default): dave's log line is not his.
    assert.ok(!seen(C.bob), "bob got a log line of dave's call");
}));

test('the daemon stops cleanly (exit 0, no sanitizer report)', T, wrap(async () => {
    await kit.closeClients();
    await assertCleanStop(assert, d);
}));
