// A stdio MCP server that behaves the way a hostile or careless server may: names that need
// sanitising, server->client requests and log lines in the middle of other clients' calls,
// floods of notifications. Raw JSON-RPC over stdin/stdout, no SDK, so every byte is ours.
//
// Tools (arguments in parentheses):
//   echo (any)            the name it was called by and its arguments, as JSON text
//   touch, "write file", "x" * 80   answer "ran <name>"
//   calls                 every tools/call, resources/read and prompts/get received so far
//   sample (text, delay, meta)   after `delay` ms asks the client for sampling/createMessage
//                         with `text` (and, when meta is true, the call's progress token in
//                         params._meta), then answers with the client's text
//   log (text, delay, meta)      sends notifications/message `text` (the call's progress
//                         token in _meta when meta is true), then answers after `delay` ms
//   flood (count, size, level)   sends `count` notifications/message of `size` bytes each,
//                         then answers "flooded"
//   relist (count)        sends `count` notifications/tools/list_changed, then answers
//   lists                 how many tools/list requests it has received
//   hang (ms)             answers after ms
//   pid                   its process id
// Resources hostile://public and hostile://secret; prompts "greet" and "bad prompt".
// With --log-on-start TEXT it sends one notifications/message right after initialize.
import { drained, fail, initResult, reply, send, serve } from './stdio-server.mjs';

const args = process.argv.slice(2);
const logOnStart = args.includes('--log-on-start') ? args[args.indexOf('--log-on-start') + 1] : null;

const LONG = 'x'.repeat(80);
const TOOLS = ['echo', 'touch', 'write file', LONG, 'calls', 'sample', 'log', 'flood', 'relist', 'lists', 'hang', 'pid'].map((name) => ({
    name,
    description: `hostile ${name}`,
    inputSchema: { type: 'object' },
}));
const seen = [];
let lists = 0; // tools/list requests received
const waiting = new Map(); // our request id -> resolve
let nextId = 1;

// A flood waits for the pipe instead of buffering in memory.
async function sendPaced(m) {
    if (!send(m)) await drained();
}
const text = (id, t) => reply(id, { content: [{ type: 'text', text: t }] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function ask(method, params) {
    const id = `h${nextId++}`;
    send({ jsonrpc: '2.0', id, method, params });
    return new Promise((resolve) => waiting.set(id, resolve));
}

async function callTool(m) {
    const name = m.params?.name;
    const a = m.params?.arguments ?? {};
    const token = m.params?._meta?.progressToken;
    seen.push({ method: m.method, name });
    switch (name) {
        case 'echo':
            return text(m.id, JSON.stringify({ name, arguments: a }));
        case 'touch':
        case 'write file':
        case LONG:
            return text(m.id, `ran ${name}`);
        case 'calls':
            return text(m.id, JSON.stringify(seen));
        case 'sample': {
            await sleep(a.delay ?? 0);
            const params = {
                messages: [{ role: 'user', content: { type: 'text', text: String(a.text ?? '') } }],
                maxTokens: 10,
            };
            if (a.meta && token !== undefined) params._meta = { progressToken: token };
            const r = await ask('sampling/createMessage', params);
            if (r.error) return text(m.id, `sampling failed: ${r.error.code} ${r.error.message}`);
            return text(m.id, `sampled: ${r.result?.content?.text}`);
        }
        case 'log': {
            const params = { level: 'info', logger: 'hostile', data: String(a.text ?? '') };
            if (a.meta && token !== undefined) params._meta = { progressToken: token };
            send({ jsonrpc: '2.0', method: 'notifications/message', params });
            await sleep(a.delay ?? 0);
            return text(m.id, 'logged');
        }
        case 'flood': {
            const data = 'f'.repeat(a.size ?? 100);
            for (let i = 0; i < (a.count ?? 1000); i++)
                await sendPaced({ jsonrpc: '2.0', method: 'notifications/message', params: { level: a.level ?? 'info', data } });
            return text(m.id, 'flooded');
        }
        case 'relist':
            for (let i = 0; i < (a.count ?? 1000); i++) await sendPaced({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
            return text(m.id, 'relisted');
        case 'lists':
            return text(m.id, String(lists));
        case 'hang':
            await sleep(a.ms ?? 1000);
            return text(m.id, 'done');
        case 'pid':
            return text(m.id, String(process.pid));
        default:
            return fail(m.id, -32602, `Unknown tool: ${name}`);
    }
}

function onRequest(m) {
    switch (m.method) {
        case 'initialize':
            return reply(m.id, initResult(m, 'hostile', { tools: {}, prompts: {}, resources: { subscribe: true }, logging: {}, completions: {} }));
        case 'ping':
            return reply(m.id, {});
        case 'logging/setLevel':
            return reply(m.id, {});
        case 'tools/list':
            lists++;
            return reply(m.id, { tools: TOOLS });
        case 'tools/call':
            return callTool(m);
        case 'resources/list':
            return reply(m.id, { resources: [{ uri: 'hostile://public', name: 'public' }, { uri: 'hostile://secret', name: 'secret' }] });
        case 'resources/templates/list':
            return reply(m.id, { resourceTemplates: [] });
        case 'resources/read':
            seen.push({ method: m.method, uri: m.params?.uri });
            return reply(m.id, { contents: [{ uri: m.params?.uri, text: `content of ${m.params?.uri}` }] });
        case 'resources/subscribe':
        case 'resources/unsubscribe':
            seen.push({ method: m.method, uri: m.params?.uri });
            return reply(m.id, {});
        case 'prompts/list':
            return reply(m.id, { prompts: [{ name: 'greet' }, { name: 'bad prompt' }] });
        case 'prompts/get':
            seen.push({ method: m.method, name: m.params?.name });
            return reply(m.id, { messages: [{ role: 'user', content: { type: 'text', text: `prompt ${m.params?.name}` } }] });
        case 'completion/complete':
            seen.push({ method: m.method, ref: m.params?.ref });
            return reply(m.id, { completion: { values: [String(m.params?.ref?.name ?? m.params?.ref?.uri)] } });
        default:
            return fail(m.id, -32601, `no method ${m.method}`);
    }
}

serve((m) => {
    if (m.method && m.id !== undefined) {
        onRequest(m);
    } else if (!m.method && m.id !== undefined && waiting.has(m.id)) {
        const resolve = waiting.get(m.id);
        waiting.delete(m.id);
        resolve(m);
    } else if (m.method === 'notifications/initialized' && logOnStart) {
        send({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'warning', data: logOnStart } });
    }
});
