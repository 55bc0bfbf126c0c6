// auth = oauth in the daemon: `oauth2-mock-server` (npm) as the authorization server in front
// of a protected MCP server written here with the SDK. Before a login the server waits ("needs
// login", named in status and in the error its tools answer); `agentgate login` tells the
// daemon, which connects with the stored token; a token the server stops accepting mid-session
// is refreshed transparently (the call that met the 401 still succeeds); `agentgate logout`
// sends the server back to waiting. A client's own Authorization never reaches the server.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import http from 'node:http';
import { after, before, test } from 'node:test';

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ListToolsResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { OAuth2Server } from 'oauth2-mock-server';

import { BIN, IS_GATEWAY, assertCleanStop, bearer, clientSection, randomToken, sanitizerReport, sha256Hex, testKit, unixFetch, waitFor, within } from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 60000, skip };
const kit = testKit('remote-oauth');
const { wrap } = kit;

const as = new OAuth2Server();
const grants = [];
as.service.on('beforeResponse', (resp, req) => {
    grants.push((req.body || {}).grant_type);
    if (resp.statusCode === 200) resp.body.expires_in = 3600;
});

let mcpBase = '';
let mcpUrl = '';
let jwks = null;
// Tokens issued at or before this (JWT iat, seconds) are no longer accepted. (RS256 signatures
// are deterministic, so two tokens issued in the same second can be the same string.)
let revokedUpTo = 0;
const authSeen = []; // Authorization of every /mcp request
const publicAuthSeen = []; // ... and of every /public request (a server that needs no login)

async function verify(token) {
    const parts = token.split('.');
    if (parts.length !== 3) return false;
    if (!jwks) jwks = await (await fetch(`${as.issuer.url}/jwks`)).json();
    const header = JSON.parse(Buffer.from(parts[0], 'base64url'));
    const jwk = jwks.keys.find((k) => k.kid === header.kid) || jwks.keys[0];
    const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
    if (!crypto.verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), key, Buffer.from(parts[2], 'base64url'))) return false;
    const payload = JSON.parse(Buffer.from(parts[1], 'base64url'));
    return payload.iss === as.issuer.url && payload.exp * 1000 > Date.now() && payload.iat > revokedUpTo;
}

const mcp = http.createServer(async (req, res) => {
    const url = new URL(req.url, mcpBase);
    let body = '';
    for await (const chunk of req) body += chunk;
    if (url.pathname === '/.well-known/oauth-protected-resource/mcp') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ resource: mcpUrl, authorization_servers: [as.issuer.url], scopes_supported: ['mcp:read'] }));
        return;
    }
    if (url.pathname !== '/mcp' && url.pathname !== '/public') {
        res.writeHead(404).end();
        return;
    }
    const auth = req.headers.authorization || '';
    if (url.pathname === '/public') publicAuthSeen.push(auth);
    else authSeen.push(auth);
    if (url.pathname === '/mcp' && (!auth.startsWith('Bearer ') || !(await verify(auth.slice(7))))) {
        res.writeHead(401, {
            'content-type': 'application/json',
            'www-authenticate': `Bearer error="invalid_token", resource_metadata="${mcpBase}/.well-known/oauth-protected-resource/mcp", scope="mcp:read"`,
        });
        res.end(JSON.stringify({ error: 'invalid_token' }));
        return;
    }
    if (req.method !== 'POST') {
        res.writeHead(405).end();
        return;
    }
    const server = new McpServer({ name: 'protected', version: '1.0.0' });
    server.tool('whoami', 'who the token belongs to', async () => ({ content: [{ type: 'text', text: 'johndoe' }] }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
        transport.close();
        server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, JSON.parse(body));
});

async function status(d, name = 'prot') {
    const f = unixFetch(d.socket);
    try {
        return (await (await f('http://localhost/agentgate/status')).json()).servers.find((s) => s.name === name);
    } finally {
        await f.close?.();
    }
}

async function toolNames(c) {
    const r = await c.client.request({ method: 'tools/list', params: {} }, ListToolsResultSchema);
    return r.tools.map((t) => t.name);
}

/** `agentgate login prot` against the daemon's config, state dir and socket, completing the
 * redirect the way a browser would. */
async function login(d) {
    const args = ['login', 'prot', '--config', d.configPath, '--state-dir', d.stateDir, '--socket', d.socket, '--no-browser', '--timeout', '20'];
    const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...d.env } });
    let stdout = '';
    let stderr = '';
    proc.stderr.on('data', (x) => (stderr += x));
    const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
    const url = await within(15000, new Promise((resolve, reject) => {
        proc.stdout.on('data', (x) => {
            stdout += x;
            const m = /^ {2}(https?:\/\/\S+)$/m.exec(stdout);
            if (m) resolve(m[1]);
        });
        proc.on('exit', () => reject(new Error(`login exited before printing a URL: ${stderr}`)));
    }), 'the authorization URL');
    const authz = await fetch(url, { redirect: 'manual' });
    await fetch(authz.headers.get('location'));
    const code = await within(15000, exited, 'login to exit');
    assert.equal(sanitizerReport(stderr), null, stderr);
    return { code, stdout, stderr };
}

let d;
const CLIENT_TOKEN = randomToken('me');

before(async () => {
    if (skip) return;
    await as.issuer.keys.generate('RS256');
    await as.start(0, '127.0.0.1');
    await new Promise((resolve) => mcp.listen(0, '127.0.0.1', resolve));
    mcpBase = `http://127.0.0.1:${mcp.address().port}`;
    mcpUrl = `${mcpBase}/mcp`;
    d = await kit.start({
        auth: 'token',
        config:
            '[gateway]\nlog_level = debug\n\n' +
            clientSection('me', { token_sha256: sha256Hex(CLIENT_TOKEN) }) +
            `\n[server.prot]\nurl = ${mcpUrl}\nauth = oauth\nclient_id = agentgate-test\nisolation = shared\n` +
            `\n[server.pub]\nurl = ${mcpBase}/public\nauth = oauth\nisolation = shared\n`,
    });
});

after(async () => {
    await kit.cleanup();
    await as.stop();
    mcp.closeAllConnections?.();
    await new Promise((resolve) => mcp.close(resolve));
});

test('before a login: the server waits, says why, and its tools are absent', T, wrap(async () => {
    const st = await waitFor(async () => {
        const s = await status(d);
        return s.state === 'needs-login' ? s : null;
    }, { timeout: 10000, what: 'prot in needs-login' });
    assert.match(st.last_error, /agentgate login prot/);
    const c = await kit.client(d, { headers: bearer(CLIENT_TOKEN) });
    assert.deepEqual((await toolNames(c)).filter((n) => n.startsWith('prot__')), []);
    await assert.rejects(c.client.callTool({ name: 'prot__whoami', arguments: {} }), /server 'prot' is unavailable: .*agentgate login prot/);
}));

test('auth = oauth on a server that asks for no login: it serves at once, with no token sent', T, wrap(async () => {
    await waitFor(async () => ((await status(d, 'pub')).state === 'ready' ? true : null), { timeout: 10000, what: 'pub ready' });
    const c = await kit.client(d, { headers: bearer(CLIENT_TOKEN) });
    assert.ok((await toolNames(c)).includes('pub__whoami'));
    const r = await c.client.callTool({ name: 'pub__whoami', arguments: {} });
    assert.equal(r.content[0].text, 'johndoe');
    assert.ok(publicAuthSeen.length > 0);
    assert.deepEqual(publicAuthSeen.filter((a) => a !== ''), []);
}));

test('agentgate login tells the daemon, which connects with the stored token', T, wrap(async () => {
    const r = await login(d);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /told the daemon/);
    const c = await kit.client(d, { headers: bearer(CLIENT_TOKEN) });
    await waitFor(async () => (await toolNames(c)).includes('prot__whoami'), { timeout: 15000, interval: 100, what: 'prot__whoami listed' });
    const res = await c.client.callTool({ name: 'prot__whoami', arguments: {} });
    assert.equal(res.content[0].text, 'johndoe');
    assert.equal((await status(d)).state, 'ready');
    assert.ok(!authSeen.some((a) => a.includes(CLIENT_TOKEN)), 'a client\'s Authorization reached the server');
    assert.ok(!d.stderr.includes(authSeen.at(-1).slice(7)), 'the access token is in the daemon log');
}));

test('a token the server stops accepting is refreshed mid-session; the call still succeeds', T, wrap(async () => {
    const c = await kit.client(d, { headers: bearer(CLIENT_TOKEN) });
    await waitFor(async () => (await toolNames(c)).includes('prot__whoami'), { timeout: 15000, what: 'listed' });
    const current = authSeen.at(-1).slice(7);
    await new Promise((r) => setTimeout(r, 1100)); // the refreshed token gets a later iat
    revokedUpTo = JSON.parse(Buffer.from(current.split('.')[1], 'base64url')).iat;
    const refreshes = grants.filter((g) => g === 'refresh_token').length;
    const res = await c.client.callTool({ name: 'prot__whoami', arguments: {} });
    assert.equal(res.content[0].text, 'johndoe');
    assert.equal(grants.filter((g) => g === 'refresh_token').length, refreshes + 1, 'one refresh');
    assert.notEqual(authSeen.at(-1).slice(7), current, 'the retry carried the new token');
}));

test('agentgate logout sends the server back to waiting for a login', T, wrap(async () => {
    const args = ['logout', 'prot', '--config', d.configPath, '--state-dir', d.stateDir, '--socket', d.socket];
    const r = await d.cli(args.slice(0, 2).concat(['--state-dir', d.stateDir]), { state: false });
    assert.equal(r.code, 0, r.stderr);
    const st = await waitFor(async () => {
        const s = await status(d);
        return s.state === 'needs-login' ? s : null;
    }, { timeout: 10000, what: 'prot back in needs-login' });
    assert.match(st.last_error, /agentgate login prot/);
}));

test('the daemon with an OAuth server stops cleanly', T, wrap(async () => {
    await kit.closeClients();
    await assertCleanStop(assert, d);
}));
