// A minimal stdio MCP server that will not die politely: it ignores stdin closing and SIGTERM,
// and keeps a grandchild in its process group that ignores SIGTERM too. Only SIGKILL to the
// whole group ends them, which is what the supervisor's shutdown ladder must reach.
// Tool `pids` answers with the pids of both processes.
import { spawn } from 'node:child_process';
import readline from 'node:readline';

process.on('SIGTERM', () => {});
process.on('SIGINT', () => {});
const grandchild = spawn(process.execPath, ['-e', "process.on('SIGTERM',()=>{});setInterval(()=>{},1000)"], {
    stdio: 'ignore',
});
setInterval(() => {}, 1000);

const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
    let m;
    try {
        m = JSON.parse(line);
    } catch {
        return;
    }
    if (m.id === undefined || !m.method) return; // notifications and responses
    switch (m.method) {
        case 'initialize':
            return send({
                jsonrpc: '2.0',
                id: m.id,
                result: {
                    protocolVersion: m.params?.protocolVersion ?? '2025-06-18',
                    capabilities: { tools: {} },
                    serverInfo: { name: 'stubborn', version: '1.0.0' },
                },
            });
        case 'ping':
            return send({ jsonrpc: '2.0', id: m.id, result: {} });
        case 'tools/list':
            return send({
                jsonrpc: '2.0',
                id: m.id,
                result: { tools: [{ name: 'pids', description: 'pids of this server and its helper', inputSchema: { type: 'object' } }] },
            });
        case 'tools/call':
            return send({
                jsonrpc: '2.0',
                id: m.id,
                result: { content: [{ type: 'text', text: JSON.stringify({ pid: process.pid, grandchild: grandchild.pid }) }] },
            });
        default:
            return send({ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: `no method ${m.method}` } });
    }
});
// stdin closing must not end us.
rl.on('close', () => {});
