// A raw stdio MCP server (no SDK, like stubborn-server.mjs) that shows what it was started
// with. Its one tool, `probe`, answers with {env, fds}: this process's environment, and its
// open file descriptors as [{fd, target}] read from /proc/self/fd (target is what the link
// points at: a path, "pipe:[N]", "socket:[N]", "anon_inode:[eventpoll]" ...).
//
// Options, for the pinning tests:
//   --title TEXT          the tool definition's title
//   --output-schema JSON  the tool definition's outputSchema; results then also carry
//                         structuredContent {ok: true}, so use a schema that allows it
import fs from 'node:fs';

import { fail, initResult, reply, serve } from './stdio-server.mjs';

const opts = {};
for (let i = 2; i < process.argv.length; i += 2) {
    const [k, v] = [process.argv[i], process.argv[i + 1]];
    if (k === '--title') opts.title = v;
    else if (k === '--output-schema') opts.outputSchema = JSON.parse(v);
    else {
        process.stderr.write(`env-probe-server: unknown option ${k}\n`);
        process.exit(2);
    }
}

function openFds() {
    const out = [];
    for (const name of fs.readdirSync('/proc/self/fd')) {
        let target;
        try {
            target = fs.readlinkSync(`/proc/self/fd/${name}`);
        } catch {
            continue; // the directory handle readdirSync used, closed by now
        }
        out.push({ fd: Number(name), target });
    }
    return out.sort((a, b) => a.fd - b.fd);
}

const tool = { name: 'probe', description: 'the environment and open descriptors of this server', inputSchema: { type: 'object' } };
if (opts.title !== undefined) tool.title = opts.title;
if (opts.outputSchema !== undefined) tool.outputSchema = opts.outputSchema;

serve((m) => {
    if (m.id === undefined || !m.method) return; // notifications and responses
    switch (m.method) {
        case 'initialize':
            return reply(m.id, initResult(m, 'env-probe', { tools: {} }));
        case 'ping':
            return reply(m.id, {});
        case 'tools/list':
            return reply(m.id, { tools: [tool] });
        case 'tools/call': {
            const result = { content: [{ type: 'text', text: JSON.stringify({ env: process.env, fds: openFds() }) }] };
            if (opts.outputSchema !== undefined) result.structuredContent = { ok: true };
            return reply(m.id, result);
        }
        default:
            return fail(m.id, -32601, `no method ${m.method}`);
    }
});
