// An agentgate federating another agentgate (`wrap`) as a remote Streamable HTTP upstream with a
// bearer token: the set-up bench/run.sh measures in its remote rows. agentgate's own sealed
// Mcp-Session-Id tokens carry the client's capabilities and are ~270 bytes when the client is
// a gateway (sampling, elicitation, roots): the remote transport must keep such a session id,
// or every request after initialize is answered 400 "Mcp-Session-Id header is required".
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { BIN, IS_GATEWAY, randomToken, resultText, testKit, untilTool } from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 30000, skip };
const TOKEN = randomToken('wrap');
const kit = testKit('remote-wrap');
let upstream;
let gateway;

before(async () => {
    if (!IS_GATEWAY) return;
    upstream = await kit.start({
        tag: 'remote-wrap-up',
        env: { AGENTGATE_WRAP_TOKEN: TOKEN },
        argv: ({ port, stateDir }) => ['wrap', '--listen', `127.0.0.1:${port}`, '--state-dir', stateDir, '--', BIN, 'demo-server'],
    });
    const config = [
        '[server.demo]',
        `url = http://127.0.0.1:${upstream.port}/mcp`,
        'transport = streamable-http',
        'auth = bearer',
        'token_env = REMOTE_WRAP_TOKEN',
        '',
    ].join('\n');
    gateway = await kit.start({ config, env: { REMOTE_WRAP_TOKEN: TOKEN } });
});

after(async () => {
    if (IS_GATEWAY) await kit.cleanup();
});

test('tools of an agentgate wrap upstream are listed and called through the gateway', T, kit.wrap(async () => {
    const c = await kit.client(gateway);
    await untilTool(c, 'demo__echo');
    const names = (await c.client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('demo__echo') && names.includes('demo__blob'), names.join(','));
    for (let i = 0; i < 20; i++) {
        const msg = `over the remote hop ${i}`;
        assert.equal(resultText(await c.client.callTool({ name: 'demo__echo', arguments: { message: msg } })), msg);
    }
    // the gateway's upstream session id is agentgate's own sealed token, longer than 255 bytes
    assert.doesNotMatch(gateway.tail(), /malformed Mcp-Session-Id/);
    assert.doesNotMatch(gateway.tail(), /Mcp-Session-Id header is required/);
}));
