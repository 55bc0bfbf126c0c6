// isolation = session: each client session gets its own child, started with the session and
// stopped when the session ends; shared servers keep one child for everybody.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { BIN, IS_GATEWAY, connectClient, resultText, serverSection, startDaemon, waitFor, withLog } from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
let daemon;
const wrap = (fn) => withLog(() => daemon, fn);

before(async () => {
    if (!IS_GATEWAY) return;
    const config =
        '[gateway]\nlog_level = debug\n\n' +
        serverSection('mine', { command: BIN, args: ['demo-server'], prefix: 'mine', extra: { isolation: 'session' } }) +
        '\n' +
        serverSection('ours', { command: BIN, args: ['demo-server', '--page-size', '100'], prefix: 'ours' });
    daemon = await startDaemon({ config, tag: 'iso' });
});

after(() => daemon?.kill());

const demoChildren = () => daemon.children().filter((c) => c.argv.includes('demo-server'));
const isolated = () => demoChildren().filter((c) => !c.argv.includes('--page-size'));

test('each session gets its own child; the shared server has one; ending a session stops its child', { timeout: 30000, skip }, wrap(async () => {
    await waitFor(() => demoChildren().length === 1, { what: 'the shared demo child alone' });
    const a = await connectClient(daemon, { name: 'a' });
    const b = await connectClient(daemon, { name: 'b' });
    try {
        await waitFor(() => isolated().length === 2, { what: 'two isolated children' });
        const [pa, pb] = isolated().map((c) => c.pid);
        assert.notEqual(pa, pb);
        // Both sessions reach their own child and the shared one through one prefix each.
        for (const [c, word] of [[a, 'alpha'], [b, 'beta']]) {
            const names = (await c.client.listTools()).tools.map((t) => t.name);
            assert.ok(names.includes('mine__echo') && names.includes('ours__echo'), names.join(','));
            const r = await c.client.callTool({ name: 'mine__echo', arguments: { message: word } });
            assert.equal(resultText(r), word);
        }
        await a.transport.terminateSession();
        await waitFor(() => isolated().length === 1, { what: "the ended session's child to stop" });
        assert.ok(isolated().some((c) => c.pid === pb || c.pid === pa));
        const r = await b.client.callTool({ name: 'ours__echo', arguments: { message: 'still' } });
        assert.equal(resultText(r), 'still');
        assert.equal(demoChildren().filter((c) => c.argv.includes('--page-size')).length, 1);
    } finally {
        await a.close();
        await b.close();
    }
}));
