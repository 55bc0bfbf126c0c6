// The gateway fronting server-everything (stdio) and server-filesystem (stdio), driven by the
// MCP SDK client over Streamable HTTP on TCP and on the Unix socket.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { CallToolResultSchema, CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

import {
    FILESYSTEM_JS,
    IS_GATEWAY,
    assertCleanStop,
    connectClient,
    everythingSection,
    makeTmp,
    resultText,
    serverSection,
    sleep,
    startTarget,
    waitFor,
    within,
    withLog,
} from './harness.mjs';

const T = { timeout: 30000 };
let target;
let files; // server-filesystem's directory
let extraRoot; // a second configured root, only reachable through roots/list
const clients = [];
const ev = (n) => target.name('everything', n);
const fsName = (n) => target.name('fs', n);
const wrap = (fn) => withLog(() => target?.daemon, fn);

async function client(opts) {
    const c = await connectClient(target, opts);
    clients.push(c);
    return c;
}

before(async () => {
    const dir = makeTmp('fsroot');
    files = path.join(dir, 'files');
    extraRoot = path.join(dir, 'extra');
    fs.mkdirSync(files);
    fs.mkdirSync(extraRoot);
    fs.writeFileSync(path.join(files, 'hello.txt'), 'hello from agentgate\nsecond line\n');
    const config =
        '[gateway]\nlog_level = debug\n\n' +
        everythingSection() +
        '\n' +
        serverSection('fs', {
            args: [FILESYSTEM_JS, files],
            prefix: 'fs',
            roots: [`file://${files}`, `file://${extraRoot}`],
        });
    target = await startTarget({ config, tag: 'fed' });
    // Upstreams start after the listener; wait until both are federated (and the tools that
    // server-everything registers only after initialize are there).
    const c = await client({ name: 'setup' });
    const want = [ev('echo'), ev('trigger-sampling-request'), ev('trigger-elicitation-request')];
    if (IS_GATEWAY) want.push(fsName('read_text_file'));
    await waitFor(
        async () => {
            const names = (await c.client.listTools()).tools.map((t) => t.name);
            return want.every((w) => names.includes(w));
        },
        { timeout: 20000, interval: 200, what: `tools ${want.join(', ')}` },
    );
});

after(async () => {
    for (const c of clients) await c.close();
    target?.daemon.kill();
});

test('tools/list merges both upstreams under their prefixes, in config order', T, wrap(async () => {
    const c = await client();
    const tools = (await c.client.listTools()).tools;
    const names = tools.map((t) => t.name);
    for (const n of ['echo', 'get-sum', 'trigger-long-running-operation', 'trigger-sampling-request', 'trigger-elicitation-request', 'toggle-subscriber-updates']) {
        assert.ok(names.includes(ev(n)), `missing ${ev(n)} in ${names.join(', ')}`);
    }
    assert.equal(new Set(names).size, names.length, 'duplicate tool names');
    for (const n of names) assert.match(n, /^[A-Za-z0-9_.-]{1,64}$/);
    const sum = tools.find((t) => t.name === ev('get-sum'));
    assert.deepEqual(Object.keys(sum.inputSchema.properties ?? {}).sort(), ['a', 'b'], 'get-sum inputSchema passed through');
    if (IS_GATEWAY) {
        for (const n of ['read_text_file', 'list_directory', 'list_allowed_directories']) {
            assert.ok(names.includes(fsName(n)), `missing ${fsName(n)}`);
        }
        assert.ok(!names.includes('echo') && !names.includes('read_text_file'), 'unprefixed names leaked');
        for (const n of names) assert.ok(n.startsWith('everything__') || n.startsWith('fs__'), `unexpected name ${n}`);
        const lastEv = names.findLastIndex((n) => n.startsWith('everything__'));
        const firstFs = names.findIndex((n) => n.startsWith('fs__'));
        assert.ok(lastEv < firstFs, 'everything (first in the config) is listed before fs');
    }
}));

test('echo and get-sum are routed to server-everything', T, wrap(async () => {
    const c = await client();
    const echo = await c.client.callTool({ name: ev('echo'), arguments: { message: 'hello gateway ✓ "quoted"' } });
    assert.equal(echo.isError ?? false, false);
    assert.equal(resultText(echo), 'Echo: hello gateway ✓ "quoted"');
    const sum = await c.client.callTool({ name: ev('get-sum'), arguments: { a: 2.5, b: 40 } });
    assert.equal(resultText(sum), 'The sum of 2.5 and 40 is 42.5.');
}));

test('trigger-long-running-operation with a progressToken delivers progress', T, wrap(async () => {
    const c = await client();
    const seen = [];
    const res = await c.client.callTool(
        { name: ev('trigger-long-running-operation'), arguments: { duration: 1, steps: 4 } },
        CallToolResultSchema,
        { onprogress: (p) => seen.push(p), timeout: 20000 },
    );
    assert.match(resultText(res), /Duration: 1 seconds, Steps: 4/);
    assert.ok(seen.length >= 1, 'no progress notification reached the client');
    assert.ok(seen.every((p) => p.total === 4), `totals: ${JSON.stringify(seen)}`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i].progress > seen[i - 1].progress, 'progress increases');
    // The raw notifications carry exactly the token this client sent.
    const sent = c.outbox.find((m) => m.method === 'tools/call' && m.params?.name === ev('trigger-long-running-operation'));
    const token = sent.params._meta.progressToken;
    const raw = c.notifications('notifications/progress');
    assert.ok(raw.length >= 1);
    for (const n of raw) assert.deepEqual(n.params.progressToken, token, 'progress token restored with its JSON type');
}));

test('trigger-sampling-request is answered by the client and the answer reaches the tool', T, wrap(async () => {
    const asked = [];
    const c = await client({
        handlers: (cl) =>
            cl.setRequestHandler(CreateMessageRequestSchema, async (req) => {
                asked.push(req.params);
                return { model: 'agentgate-test-model', role: 'assistant', content: { type: 'text', text: 'sampled-answer-7f3a' } };
            }),
    });
    const res = await c.client.callTool({ name: ev('trigger-sampling-request'), arguments: { prompt: 'ping-from-test', maxTokens: 17 } });
    assert.equal(asked.length, 1, 'the sampling request reached this client once');
    assert.match(JSON.stringify(asked[0].messages), /ping-from-test/);
    assert.equal(asked[0].maxTokens, 17);
    const text = resultText(res);
    assert.match(text, /sampled-answer-7f3a/);
    assert.match(text, /agentgate-test-model/);
}));

test('trigger-elicitation-request is answered by the client and the answer reaches the tool', T, wrap(async () => {
    const asked = [];
    const c = await client({
        handlers: (cl) =>
            cl.setRequestHandler(ElicitRequestSchema, async (req) => {
                asked.push(req.params);
                return { action: 'accept', content: { name: 'Ada Lovelace', check: true, integer: 7 } };
            }),
    });
    const res = await c.client.callTool({ name: ev('trigger-elicitation-request'), arguments: {} });
    assert.equal(asked.length, 1, 'the elicitation request reached this client once');
    assert.ok(asked[0].requestedSchema?.properties?.name, 'requestedSchema passed through');
    const text = resultText(res);
    assert.match(text, /- Name: Ada Lovelace/);
    assert.match(text, /- Agreed to terms: true/);
    assert.match(text, /- Favorite Integer: 7/);
}));

test('resources: list, templates and read pass URIs through verbatim', T, wrap(async () => {
    const c = await client();
    const list = (await c.client.listResources()).resources;
    const doc = list.find((r) => r.uri.startsWith('demo://resource/static/document/'));
    assert.ok(doc, `no static document in ${list.map((r) => r.uri).join(', ')}`);
    const read = await c.client.readResource({ uri: doc.uri });
    assert.equal(read.contents[0].uri, doc.uri);
    assert.ok((read.contents[0].text ?? read.contents[0].blob ?? '').length > 0, 'resource has content');
    const templates = (await c.client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate);
    assert.ok(templates.includes('demo://resource/dynamic/text/{resourceId}'), `templates: ${templates.join(', ')}`);
    const dyn = await c.client.readResource({ uri: 'demo://resource/dynamic/text/7' });
    assert.equal(dyn.contents[0].uri, 'demo://resource/dynamic/text/7');
    assert.match(dyn.contents[0].text, /^Resource 7: This is a plaintext resource/);
}));

test('resources/subscribe: notifications/resources/updated reach the subscriber only', { timeout: 40000 }, wrap(async () => {
    const a = await client({ name: 'subscriber' });
    const b = await client({ name: 'bystander' });
    await sleep(300); // let both GET streams open
    const uri = 'demo://resource/dynamic/text/3';
    await a.client.subscribeResource({ uri });
    const on = await a.client.callTool({ name: ev('toggle-subscriber-updates'), arguments: {} });
    assert.match(resultText(on), /Started simulated resource updated notifications/);
    try {
        await waitFor(() => a.notifications('notifications/resources/updated').some((n) => n.params.uri === uri), {
            timeout: 12000,
            what: `notifications/resources/updated for ${uri}`,
        });
        await sleep(500);
        assert.deepEqual(b.notifications('notifications/resources/updated'), [], 'a session that did not subscribe got updates');
    } finally {
        const off = await a.client.callTool({ name: ev('toggle-subscriber-updates'), arguments: {} });
        assert.match(resultText(off), /Stopped simulated resource updates/);
    }
}));

test('prompts: list and get through the prefix', T, wrap(async () => {
    const c = await client();
    const prompts = (await c.client.listPrompts()).prompts;
    const names = prompts.map((p) => p.name);
    for (const n of ['simple-prompt', 'args-prompt', 'completable-prompt']) assert.ok(names.includes(ev(n)), `missing ${ev(n)}`);
    const args = prompts.find((p) => p.name === ev('args-prompt')).arguments;
    assert.deepEqual(args.find((a) => a.name === 'city')?.required, true);
    const got = await c.client.getPrompt({ name: ev('args-prompt'), arguments: { city: 'Paris', state: 'Texas' } });
    assert.equal(got.messages[0].content.text, "What's weather in Paris, Texas?");
    const simple = await c.client.getPrompt({ name: ev('simple-prompt') });
    assert.equal(simple.messages[0].content.text, 'This is a simple prompt without arguments.');
}));

test('completion/complete for a prompt argument and a resource template', T, wrap(async () => {
    const c = await client();
    const dept = await c.client.complete({ ref: { type: 'ref/prompt', name: ev('completable-prompt') }, argument: { name: 'department', value: 'Eng' } });
    assert.deepEqual(dept.completion.values, ['Engineering']);
    const who = await c.client.complete({
        ref: { type: 'ref/prompt', name: ev('completable-prompt') },
        argument: { name: 'name', value: '' },
        context: { arguments: { department: 'Sales' } },
    });
    assert.deepEqual(who.completion.values, ['David', 'Eve', 'Frank']);
    const id = await c.client.complete({
        ref: { type: 'ref/resource', uri: 'demo://resource/dynamic/text/{resourceId}' },
        argument: { name: 'resourceId', value: '42' },
    });
    assert.deepEqual(id.completion.values, ['42']);
}));

test('logging/setLevel is per session and notifications/message respect it', T, wrap(async () => {
    const a = await client({ name: 'debug-listener' });
    const b = await client({ name: 'quiet-listener' });
    await sleep(300); // let both GET streams open
    await a.client.setLoggingLevel('debug');
    await b.client.setLoggingLevel('emergency');
    // server-everything logs (level info) every subscribe request it gets.
    const uri = 'demo://resource/dynamic/text/5';
    await a.client.subscribeResource({ uri });
    const msg = await waitFor(
        () => a.notifications('notifications/message').find((m) => String(m.params.data).includes(`Received Subscribe Resource request for URI: ${uri}`)),
        { timeout: 5000, what: 'the info-level log message of the subscribe' },
    );
    assert.equal(msg.params.level, 'info');
    await sleep(300);
    const leaked = b.notifications('notifications/message').filter((m) => m.params.level !== 'emergency');
    assert.deepEqual(leaked, [], 'a session at level emergency got lower-level messages');
}));

test('two clients using the same progressToken each see only their own progress', { timeout: 40000 }, wrap(async () => {
    const a = await client({ name: 'A' });
    const b = await client({ name: 'B' });
    const run = (c, steps) =>
        c.client.request(
            {
                method: 'tools/call',
                params: { name: ev('trigger-long-running-operation'), arguments: { duration: 1.5, steps }, _meta: { progressToken: 'shared-token' } },
            },
            CallToolResultSchema,
            { timeout: 20000 },
        );
    const [ra, rb] = await Promise.all([run(a, 3), run(b, 5)]);
    assert.match(resultText(ra), /Steps: 3/);
    assert.match(resultText(rb), /Steps: 5/);
    const pa = a.notifications('notifications/progress').map((n) => n.params);
    const pb = b.notifications('notifications/progress').map((n) => n.params);
    assert.ok(pa.length >= 1 && pb.length >= 1, `progress counts A=${pa.length} B=${pb.length}`);
    for (const p of pa) assert.deepEqual([p.progressToken, p.total], ['shared-token', 3], `A got ${JSON.stringify(p)}`);
    for (const p of pb) assert.deepEqual([p.progressToken, p.total], ['shared-token', 5], `B got ${JSON.stringify(p)}`);
    assert.ok(pa.length <= 3 && pb.length <= 5, `too many progress notifications: A=${pa.length} B=${pb.length}`);
}));

test('the Unix socket serves the same federated endpoint', T, wrap(async () => {
    const c = await client({ via: 'unix' });
    const names = (await c.client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes(ev('get-sum')));
    const sum = await c.client.callTool({ name: ev('get-sum'), arguments: { a: 2, b: 3 } });
    assert.equal(resultText(sum), 'The sum of 2 and 3 is 5.');
    const seen = [];
    const res = await c.client.callTool(
        { name: ev('trigger-long-running-operation'), arguments: { duration: 0.5, steps: 2 } },
        CallToolResultSchema,
        { onprogress: (p) => seen.push(p), timeout: 20000 },
    );
    assert.match(resultText(res), /Steps: 2/);
    assert.ok(seen.length >= 1, 'progress over the Unix socket');
}));

test('server-filesystem: fs__ tools read a file from its directory', { ...T, skip: !IS_GATEWAY && 'gateway only' }, wrap(async () => {
    const c = await client();
    const read = await c.client.callTool({ name: fsName('read_text_file'), arguments: { path: path.join(files, 'hello.txt') } });
    assert.equal(read.isError ?? false, false, resultText(read));
    assert.equal(resultText(read), 'hello from agentgate\nsecond line\n');
    const ls = await c.client.callTool({ name: fsName('list_directory'), arguments: { path: files } });
    assert.match(resultText(ls), /\[FILE\] hello\.txt/);
    const denied = await c.client.callTool({ name: fsName('read_text_file'), arguments: { path: '/etc/hostname' } });
    assert.equal(denied.isError, true, 'a path outside the allowed directories is refused');
}));

test('roots/list from an upstream outside any request is answered with its configured roots', { ...T, skip: !IS_GATEWAY && 'gateway only' }, wrap(async () => {
    const c = await client();
    // server-filesystem asks for roots right after initialize and replaces its directories
    // with them; only the configured roots name `extra`.
    const text = await waitFor(
        async () => {
            const r = await c.client.callTool({ name: fsName('list_allowed_directories'), arguments: {} });
            const t = resultText(r);
            return t.includes(extraRoot) ? t : null;
        },
        { timeout: 5000, interval: 200, what: `${extraRoot} among the allowed directories` },
    );
    assert.ok(text.includes(files));
}));

test('daemon stops on SIGTERM: exit 0, socket removed, no child left, no sanitizer report', { timeout: 30000, skip: !IS_GATEWAY && 'gateway only' }, async () => {
    for (const c of clients.splice(0)) await c.close();
    await within(20000, assertCleanStop(assert, target.daemon), 'clean stop');
});
