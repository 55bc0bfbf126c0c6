// One principal's data never reaches another through a server they share (issue 9, item 5).
// A server->client request or log line raised on a child that several client identities use
// goes only to the session it can be attributed to (the progress token it names, or the only
// session with calls in flight); otherwise the request gets an error naming isolation = client
// and the log line goes to the server's log file. With [client.*] sections every client gets
// its own child by default (isolation = client), where attribution is exact.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';

import { CallToolResultSchema, CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';

import {
    IS_GATEWAY,
    NODE,
    bearer,
    clientSection,
    randomToken,
    resultText,
    serverSection,
    sha256Hex,
    sleep,
    testKit,
    untilTool,
    waitFor,
} from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 40000, skip };
const HOSTILE = path.join(path.dirname(new URL(import.meta.url).pathname), 'hostile-server.mjs');

const TOK = { alice: randomToken('alice'), bob: randomToken('bob') };
const configWith = (isolation) =>
    '[gateway]\nauth = token\n\n' +
    clientSection('alice', { token_sha256: sha256Hex(TOK.alice) }) +
    '\n' +
    clientSection('bob', { token_sha256: sha256Hex(TOK.bob) }) +
    '\n' +
    serverSection('evil', { command: NODE, args: [HOSTILE], prefix: 'evil', extra: isolation ? { isolation } : {} });

const kit = testKit('attrib');
after(kit.cleanup);

/** A client of `who` that answers sampling with its own text and records what it was asked. */
async function clientOf(d, who) {
    const asked = [];
    const c = await kit.client(d, {
        name: who,
        headers: bearer(TOK[who]),
        handlers: (cl) =>
            cl.setRequestHandler(CreateMessageRequestSchema, async (req) => {
                asked.push(JSON.stringify(req.params));
                return { model: 'm', role: 'assistant', content: { type: 'text', text: `answer of ${who}` } };
            }),
    });
    c.asked = asked;
    await untilTool(c, 'evil__sample');
    return c;
}

const logsOf = (c, text) => c.notifications('notifications/message').filter((m) => JSON.stringify(m.params).includes(text));

test('shared child: a sampling request raised during alice\'s call never reaches bob\'s newer call', T, kit.wrap(async () => {
    const d = await kit.start({ config: configWith('shared'), auth: 'token' });
    const alice = await clientOf(d, 'alice');
    const bob = await clientOf(d, 'bob');
    // alice's call asks for sampling after 400 ms; meanwhile bob's unrelated call is newer.
    const a = alice.client.callTool({ name: 'evil__sample', arguments: { text: 'alice-secret-1', delay: 400 } });
    await sleep(100);
    const b = bob.client.callTool({ name: 'evil__hang', arguments: { ms: 1500 } });
    const ra = await a;
    assert.match(resultText(ra), /sampling failed: -32603 .*isolation = client/, resultText(ra));
    assert.deepEqual(bob.asked, [], 'bob was asked to sample with alice\'s data');
    assert.equal(resultText(await b), 'done');
    await kit.closeClients();
}));

test('shared child: a request that names its call\'s progress token, or the only session in flight, is delivered', T, kit.wrap(async () => {
    const d = await kit.start({ config: configWith('shared'), auth: 'token' });
    const alice = await clientOf(d, 'alice');
    const bob = await clientOf(d, 'bob');
    // Named by its progress token: exact, whatever else is in flight.
    const a = alice.client.callTool(
        { name: 'evil__sample', arguments: { text: 'alice-secret-2', delay: 400, meta: true } },
        CallToolResultSchema,
        { onprogress: () => {} },
    );
    await sleep(100);
    const b = bob.client.callTool({ name: 'evil__hang', arguments: { ms: 1500 } });
    assert.equal(resultText(await a), 'sampled: answer of alice');
    assert.equal(alice.asked.length, 1);
    assert.match(alice.asked[0], /alice-secret-2/);
    assert.deepEqual(bob.asked, []);
    await b;
    // Nothing else in flight: the only session with a call is alice's.
    assert.equal(resultText(await alice.client.callTool({ name: 'evil__sample', arguments: { text: 'alice-secret-3' } })), 'sampled: answer of alice');
    assert.deepEqual(bob.asked, []);
    await kit.closeClients();
}));

test('shared child: a log line that cannot be attributed goes to the server log, not to another client', T, kit.wrap(async () => {
    const d = await kit.start({ config: configWith('shared'), auth: 'token' });
    const alice = await clientOf(d, 'alice');
    const bob = await clientOf(d, 'bob');
    const b = bob.client.callTool({ name: 'evil__hang', arguments: { ms: 1500 } });
    await sleep(100);
    await alice.client.callTool({ name: 'evil__log', arguments: { text: 'alice-log-1', delay: 300 } });
    // Named by its progress token, it reaches alice's call stream and only that.
    await alice.client.callTool({ name: 'evil__log', arguments: { text: 'alice-log-2', delay: 300, meta: true } }, CallToolResultSchema, {
        onprogress: () => {},
    });
    await b;
    await sleep(300);
    assert.deepEqual(logsOf(bob, 'alice-log'), [], 'bob got alice\'s log lines');
    assert.deepEqual(logsOf(alice, 'alice-log-1'), [], 'an unattributable line was guessed onto a session');
    assert.equal(logsOf(alice, 'alice-log-2').length, 1);
    const file = path.join(d.stateDir, 'logs', 'evil.log');
    await waitFor(() => fs.existsSync(file) && fs.readFileSync(file, 'utf8').includes('alice-log-1'), {
        what: 'the unattributed line in the server log',
    });
    await kit.closeClients();
}));

test('with [client.*] sections each client gets its own child by default, and sampling is exact', T, kit.wrap(async () => {
    const d = await kit.start({ config: configWith(null), auth: 'token' });
    const alice = await clientOf(d, 'alice');
    const bob = await clientOf(d, 'bob');
    const pid = async (c) => resultText(await c.client.callTool({ name: 'evil__pid', arguments: {} }));
    const [pa, pb] = [await pid(alice), await pid(bob)];
    assert.notEqual(pa, pb, 'alice and bob share a child');
    // A second session of alice uses alice's child.
    const alice2 = await clientOf(d, 'alice');
    assert.equal(await pid(alice2), pa);
    const a = alice.client.callTool({ name: 'evil__sample', arguments: { text: 'alice-secret-4', delay: 300 } });
    await sleep(100);
    const b = bob.client.callTool({ name: 'evil__hang', arguments: { ms: 800 } });
    assert.equal(resultText(await a), 'sampled: answer of alice');
    assert.deepEqual(bob.asked, []);
    await b;
    // alice's last session ending stops her child; bob's stays.
    const alicePid = Number(pa);
    await alice.transport.terminateSession();
    await alice2.transport.terminateSession();
    await waitFor(() => !fs.existsSync(`/proc/${alicePid}`) || fs.readFileSync(`/proc/${alicePid}/stat`, 'utf8').split(' ')[2] === 'Z', {
        timeout: 8000,
        what: "alice's child to stop with her last session",
    });
    assert.equal(await pid(bob), pb);
    await kit.closeClients();
}));
