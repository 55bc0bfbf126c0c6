// A small Streamable HTTP MCP server (the SDK's server transport, one session per initialize)
// that records what reaches it: one line `AUTH <Authorization header or ->` on stdout per HTTP
// request, `METHOD <HTTP method>`, and `SESSION <id>` for each new MCP session. It pages its tool list (tool-00 .. tool-24, ten a page)
// and has a tool `whoami`, whose description ends with DESCRIPTION_SUFFIX.
// Usage: node recorder-server.mjs PORT [REQUIRED_AUTHORIZATION|-] [DESCRIPTION_SUFFIX]
// With REQUIRED_AUTHORIZATION (not -), any other Authorization (or none) gets 401.
import http from 'node:http';
import { randomUUID } from 'node:crypto';

import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const [port, requiredArg, suffix = ''] = process.argv.slice(2);
const required = requiredArg && requiredArg !== '-' ? requiredArg : undefined;
const TOOLS = Array.from({ length: 25 }, (_, i) => ({
    name: `tool-${String(i).padStart(2, '0')}`,
    description: `tool number ${i}`,
    inputSchema: { type: 'object' },
}));
TOOLS.push({ name: 'whoami', description: `says hello${suffix}`, inputSchema: { type: 'object' } });
const PAGE = 10;

function makeServer() {
    const server = new Server({ name: 'recorder', version: '1.0.0' }, { capabilities: { tools: {} } });
    server.setRequestHandler(ListToolsRequestSchema, async (req) => {
        const start = req.params?.cursor ? Number(req.params.cursor) : 0;
        const page = TOOLS.slice(start, start + PAGE);
        const next = start + PAGE < TOOLS.length ? String(start + PAGE) : undefined;
        return next ? { tools: page, nextCursor: next } : { tools: page };
    });
    server.setRequestHandler(CallToolRequestSchema, async (req) => ({
        content: [{ type: 'text', text: `called ${req.params.name}` }],
    }));
    return server;
}

const sessions = new Map();
const httpServer = http.createServer(async (req, res) => {
    const auth = req.headers.authorization ?? '-';
    process.stdout.write(`AUTH ${auth}\nMETHOD ${req.method}\n`);
    if (required && auth !== required) {
        res.writeHead(401, { 'www-authenticate': 'Bearer realm="recorder"' }).end('unauthorized');
        return;
    }
    let body;
    if (req.method === 'POST') {
        let text = '';
        for await (const chunk of req) text += chunk;
        try {
            body = JSON.parse(text);
        } catch {
            res.writeHead(400).end('bad json');
            return;
        }
    }
    const sid = req.headers['mcp-session-id'];
    let transport = sid ? sessions.get(sid) : undefined;
    if (!transport) {
        if (sid || req.method !== 'POST' || body?.method !== 'initialize') {
            res.writeHead(sid ? 404 : 400).end(sid ? 'no such session' : 'initialize first');
            return;
        }
        transport = new StreamableHTTPServerTransport({
            sessionIdGenerator: () => randomUUID(),
            onsessioninitialized: (id) => {
                sessions.set(id, transport);
                process.stdout.write(`SESSION ${id}\n`);
            },
        });
        transport.onclose = () => {
            if (transport.sessionId) sessions.delete(transport.sessionId);
        };
        await makeServer().connect(transport);
    }
    await transport.handleRequest(req, res, body);
});
httpServer.listen(Number(port), '127.0.0.1', () => process.stdout.write(`LISTENING ${port}\n`));
