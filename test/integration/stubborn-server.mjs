// A minimal stdio MCP server that will not die politely: it ignores stdin closing and SIGTERM,
// and keeps a grandchild in its process group that ignores SIGTERM too. Only SIGKILL to the
// whole group ends them, which is what the supervisor's shutdown ladder must reach.
// Tool `pids` answers with the pids of both processes.
import { spawn } from 'node:child_process';

import { fail, initResult, reply, serve } from './stdio-server.mjs';

process.on('SIGTERM', () => {});
process.on('SIGINT', () => {});
const grandchild = spawn(process.execPath, ['-e', "process.on('SIGTERM',()=>{});setInterval(()=>{},1000)"], {
    stdio: 'ignore',
});
setInterval(() => {}, 1000);

// stdin closing must not end us.
serve(
    (m) => {
        if (m.id === undefined || !m.method) return; // notifications and responses
        switch (m.method) {
            case 'initialize':
                return reply(m.id, initResult(m, 'stubborn', { tools: {} }));
            case 'ping':
                return reply(m.id, {});
            case 'tools/list':
                return reply(m.id, { tools: [{ name: 'pids', description: 'pids of this server and its helper', inputSchema: { type: 'object' } }] });
            case 'tools/call':
                return reply(m.id, { content: [{ type: 'text', text: JSON.stringify({ pid: process.pid, grandchild: grandchild.pid }) }] });
            default:
                return fail(m.id, -32601, `no method ${m.method}`);
        }
    },
    { onClose: () => {} },
);
