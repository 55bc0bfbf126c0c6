// The OAuth client end to end: `oauth2-mock-server` (npm) as the authorization server, in front
// of a protected MCP server written here with the SDK (Streamable HTTP; it demands a bearer
// token signed by the mock, answers 401 with a WWW-Authenticate challenge that points at its
// protected resource metadata). Driven through `agentgate login` / `logout` and the hidden
// `agentgate __oauth-token` (which asks the OAuth client for tokens N times at once and prints
// only their hashes).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { OAuth2Server } from 'oauth2-mock-server';

import { BIN, makeTmp, runBin as runBinRaw, sanitizerReport, startDaemon, within } from './harness.mjs';

// ---------------------------------------------------------------- the authorization server

const as = new OAuth2Server();
const seen = { grants: [], authorize: [], tokenBodies: [] };
const issued = { access: [], refresh: [] };
const mode = { expiresIn: 3600, revokeRefresh: false, noPkce: false, dcr: false };

as.service.on('beforeResponse', (resp, req) => {
    const body = req.body || {};
    seen.grants.push(body.grant_type);
    seen.tokenBodies.push({ ...body });
    if (body.grant_type === 'refresh_token' && mode.revokeRefresh) {
        resp.statusCode = 400;
        resp.body = { error: 'invalid_grant', error_description: 'the refresh token was revoked' };
        return;
    }
    if (resp.statusCode === 200) {
        resp.body.expires_in = mode.expiresIn;
        issued.access.push(resp.body.access_token);
        if (resp.body.refresh_token) issued.refresh.push(resp.body.refresh_token);
    }
});
as.service.on('beforeAuthorizeRedirect', (_redirect, req) => {
    seen.authorize.push(Object.fromEntries(new URL(req.url, 'http://x').searchParams));
});
as.service.on('beforeWellKnownOpenIdConfiguration', (resp) => {
    if (mode.noPkce) delete resp.body.code_challenge_methods_supported;
    if (mode.dcr) resp.body.registration_endpoint = `${mcpBase}/register`;
});

// ---------------------------------------------------------------- the protected MCP server

let mcpBase = '';
let mcpUrl = '';
const registrations = [];
const prmFetches = [];
let jwks = null;

function b64urlJson(s) {
    return JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
}

/** Checks a JWT from the mock: RS256 signature against its JWKS, issuer, expiry. */
async function verify(token) {
    const parts = token.split('.');
    if (parts.length !== 3) return false;
    if (!jwks) jwks = await (await fetch(`${as.issuer.url}/jwks`)).json();
    const header = b64urlJson(parts[0]);
    const jwk = jwks.keys.find((k) => k.kid === header.kid) || jwks.keys[0];
    const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
    const ok = crypto.verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), key, Buffer.from(parts[2], 'base64url'));
    if (!ok) return false;
    const payload = b64urlJson(parts[1]);
    return payload.iss === as.issuer.url && payload.exp * 1000 > Date.now();
}

function mcpServer() {
    const s = new McpServer({ name: 'protected', version: '1.0.0' });
    s.tool('whoami', 'who the token belongs to', async () => ({ content: [{ type: 'text', text: 'johndoe' }] }));
    return s;
}

function challenge(res) {
    res.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': `Bearer error="invalid_token", resource_metadata="${mcpBase}/.well-known/oauth-protected-resource/mcp", scope="mcp:read"`,
    });
    res.end(JSON.stringify({ error: 'invalid_token' }));
}

const mcp = http.createServer(async (req, res) => {
    const url = new URL(req.url, mcpBase);
    let body = '';
    for await (const chunk of req) body += chunk;
    if (url.pathname === '/.well-known/oauth-protected-resource/mcp') {
        prmFetches.push(url.pathname);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ resource: mcpUrl, authorization_servers: [as.issuer.url], scopes_supported: ['mcp:read', 'mcp:write'] }));
        return;
    }
    if (url.pathname === '/register' && req.method === 'POST') {
        const reg = JSON.parse(body);
        registrations.push(reg);
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ client_id: `dcr-client-${registrations.length}`, redirect_uris: reg.redirect_uris, token_endpoint_auth_method: 'none' }));
        return;
    }
    if (url.pathname !== '/mcp') {
        res.writeHead(404).end();
        return;
    }
    const auth = req.headers.authorization || '';
    if (!auth.startsWith('Bearer ') || !(await verify(auth.slice(7)))) {
        challenge(res);
        return;
    }
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    const server = mcpServer();
    res.on('close', () => {
        transport.close();
        server.close();
    });
    let parsed;
    try {
        parsed = body ? JSON.parse(body) : undefined;
    } catch {
        res.writeHead(400).end();
        return;
    }
    await server.connect(transport);
    await transport.handleRequest(req, res, parsed);
});

// ---------------------------------------------------------------- agentgate

/** runBin, failing on any sanitizer report (ASan/LSan/UBSan builds). */
async function runBin(args, opts) {
    const r = await runBinRaw(args, opts);
    assert.equal(sanitizerReport(r.stderr), null, `agentgate ${args[0]}: ${r.stderr}`);
    return r;
}

let dir;
let state;
let config;

function writeConfig(extra = '') {
    fs.writeFileSync(config, `[gateway]\nsocket = off\nlisten = off\n\n[server.prot]\nurl = ${mcpUrl}\nauth = oauth\nclient_id = agentgate-test\n\n` +
        `[server.dcr]\nurl = ${mcpUrl}\nauth = oauth\n${extra}`);
}

const base = () => ['--config', config, '--state-dir', state];

/** `agentgate login SERVER --no-browser`, completing the redirect like a browser would. */
async function login(server = 'prot', extra = []) {
    const proc = spawn(BIN, ['login', server, ...base(), '--no-browser', '--timeout', '20', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
    const url = await within(15000, new Promise((resolve, reject) => {
        proc.stdout.on('data', (d) => {
            stdout += d;
            const m = /^ {2}(https?:\/\/\S+)$/m.exec(stdout);
            if (m) resolve(m[1]);
        });
        proc.on('exit', () => reject(new Error(`login exited before printing a URL: ${stderr}`)));
    }), 'the authorization URL');
    const authz = await fetch(url, { redirect: 'manual' });
    assert.equal(authz.status, 302);
    const cb = await fetch(authz.headers.get('location'));
    const page = await cb.text();
    const code = await within(15000, exited, 'login to exit');
    assert.equal(sanitizerReport(stderr), null, stderr);
    return { code, stdout, stderr, url, page, callbackStatus: cb.status };
}

async function token(args = []) {
    return runBin(['__oauth-token', 'prot', ...base(), ...args], { timeout: 20000 });
}

function stateFiles() {
    return fs.readdirSync(state).map((f) => fs.readFileSync(path.join(state, f)));
}

before(async () => {
    await as.issuer.keys.generate('RS256');
    await as.start(0, '127.0.0.1');
    await new Promise((resolve) => mcp.listen(0, '127.0.0.1', resolve));
    mcpBase = `http://127.0.0.1:${mcp.address().port}`;
    mcpUrl = `${mcpBase}/mcp`;
    dir = makeTmp('oauth');
    state = path.join(dir, 'state');
    config = path.join(dir, 'agentgate.ini');
    writeConfig();
});

after(async () => {
    await as.stop();
    await new Promise((resolve) => mcp.close(resolve));
});

test('login completes through the loopback redirect and stores the tokens encrypted', async () => {
    const before = seen.grants.length;
    const r = await login();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Logged in to prot\./);
    assert.equal(r.callbackStatus, 200);
    assert.match(r.page, /Logged in/);
    // The authorize request: PKCE S256, state, resource indicator, the challenge's scope.
    const q = seen.authorize.at(-1);
    assert.equal(q.client_id, 'agentgate-test');
    assert.equal(q.code_challenge_method, 'S256');
    assert.match(q.code_challenge, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(q.resource, mcpUrl);
    assert.equal(q.scope, 'mcp:read');
    assert.match(q.redirect_uri, /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    // Discovery went through the challenge's resource metadata.
    assert.ok(prmFetches.length >= 1);
    // The token request: the code with its verifier and the resource indicator.
    assert.deepEqual(seen.grants.slice(before), ['authorization_code']);
    const tb = seen.tokenBodies.at(-1);
    assert.match(tb.code_verifier, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(tb.resource, mcpUrl);
    assert.equal(tb.client_id, 'agentgate-test');
    // The files are private and hold no token, secret or URL in clear.
    for (const f of ['oauth.key', 'oauth.store', 'oauth.lock']) assert.equal(fs.statSync(path.join(state, f)).mode & 0o777, 0o600, f);
    const blobs = stateFiles();
    for (const secret of [...issued.access, ...issued.refresh, 'johndoe', mcpUrl]) {
        for (const b of blobs) assert.equal(b.includes(secret), false, 'a token in clear in the state dir');
    }
    // The redirect listener is gone: a second callback finds nobody.
    const port = Number(/127\.0\.0\.1:(\d+)/.exec(q.redirect_uri)[1]);
    await assert.rejects(fetch(`http://127.0.0.1:${port}/callback?code=x&state=y`));
    // The stored token works against the protected server.
    const t = await token(['--check']);
    assert.equal(t.code, 0, t.stdout + t.stderr);
    assert.match(t.stdout, /^0 ok sha256:[0-9a-f]{16}$/m);
    assert.match(t.stdout, /^0 check 200$/m);
    assert.equal(t.stdout.includes(issued.access.at(-1)), false);
    assert.equal(t.stderr.includes(issued.access.at(-1)), false);
});

test('a token near expiry is refreshed once for concurrent callers, with rotation', async () => {
    // Every token from now on lives 30 s, inside the 60 s refresh margin.
    mode.expiresIn = 30;
    let r = await login();
    assert.equal(r.code, 0, r.stderr);
    const loginRefresh = issued.refresh.at(-1);
    const count = () => seen.grants.filter((g) => g === 'refresh_token').length;
    const before = count();
    const t = await token(['--concurrent', '4', '--check']);
    assert.equal(t.code, 0, t.stdout + t.stderr);
    assert.equal(count() - before, 1, 'four concurrent callers, one refresh at the authorization server');
    const hashes = [...t.stdout.matchAll(/^\d ok (sha256:[0-9a-f]+)$/gm)].map((m) => m[1]);
    assert.equal(hashes.length, 4);
    assert.equal(new Set(hashes).size, 1, 'all callers got the refreshed token');
    assert.equal((t.stdout.match(/check 200/g) || []).length, 4);
    assert.equal(seen.tokenBodies.at(-1).refresh_token, loginRefresh);
    assert.equal(seen.tokenBodies.at(-1).resource, mcpUrl);
    // The next refresh uses the rotated refresh token.
    const rotated = issued.refresh.at(-1);
    assert.notEqual(rotated, loginRefresh);
    r = await token();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(count() - before, 2);
    assert.equal(seen.tokenBodies.at(-1).refresh_token, rotated);
    mode.expiresIn = 3600;
});

test('a revoked refresh token leaves the server needing login, with the reason', async () => {
    mode.expiresIn = 30;
    const r0 = await login();
    assert.equal(r0.code, 0, r0.stderr);
    mode.revokeRefresh = true;
    try {
        const r = await token();
        assert.equal(r.code, 1);
        assert.match(r.stdout, /error needs-login .*refused the refresh token \(invalid_grant: the refresh token was revoked\); run `agentgate login prot`/);
        // Said again without asking the authorization server.
        const n = seen.grants.length;
        const again = await token();
        assert.equal(again.code, 1);
        assert.match(again.stdout, /needs-login .*invalid_grant/);
        assert.equal(seen.grants.length, n);
    } finally {
        mode.revokeRefresh = false;
        mode.expiresIn = 3600;
    }
    // A new login clears it.
    const r1 = await login();
    assert.equal(r1.code, 0, r1.stderr);
    const ok = await token(['--check']);
    assert.match(ok.stdout, /0 check 200/);
});

test('logout forgets the tokens', async () => {
    const r = await runBin(['logout', 'prot', ...base()]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Logged out of prot/);
    const t = await token();
    assert.equal(t.code, 1);
    assert.match(t.stdout, /error needs-login not logged in: run `agentgate login prot`/);
    const again = await runBin(['logout', 'prot', ...base()]);
    assert.match(again.stdout, /No tokens were stored/);
});

test('dynamic client registration as a native public client, headless login', async () => {
    mode.dcr = true;
    try {
        const r = await runBin(['login', 'dcr', ...base(), '--headless'], { timeout: 20000 });
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /Logged in to dcr\./);
        assert.equal(registrations.length, 1);
        const reg = registrations[0];
        assert.equal(reg.application_type, 'native');
        assert.equal(reg.token_endpoint_auth_method, 'none');
        assert.match(reg.redirect_uris[0], /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
        assert.deepEqual(reg.grant_types, ['authorization_code', 'refresh_token']);
        assert.equal(seen.authorize.at(-1).client_id, 'dcr-client-1');
        assert.equal(seen.authorize.at(-1).redirect_uri, reg.redirect_uris[0]);
    } finally {
        mode.dcr = false;
    }
});

test('an authorization server without PKCE S256 is refused', async () => {
    mode.noPkce = true;
    try {
        const n = seen.authorize.length;
        const r = await runBin(['login', 'prot', ...base(), '--headless'], { timeout: 20000 });
        assert.equal(r.code, 1);
        assert.match(r.stderr, /does not support PKCE with S256/);
        assert.equal(seen.authorize.length, n, 'no authorization request was made');
    } finally {
        mode.noPkce = false;
    }
});

test('login refuses a server that is not remote with auth = oauth', async () => {
    fs.writeFileSync(path.join(dir, 'bad.ini'), `[gateway]\nsocket = off\n[server.plain]\nurl = ${mcpUrl}\n`);
    const r = await runBin(['login', 'plain', '--config', path.join(dir, 'bad.ini'), '--state-dir', state]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not a remote server with auth = oauth/);
    const u = await runBin(['login', 'nosuch', ...base()]);
    assert.equal(u.code, 1);
    assert.match(u.stderr, /has no \[server\.nosuch\]/);
});

test('login and logout tell a running daemon', async () => {
    // The daemon serves the same server from the same state directory.
    const d = await startDaemon({ tag: 'oauth-gw', config: `[server.prot]\nurl = ${mcpUrl}\nauth = oauth\nclient_id = agentgate-test\n` });
    const at = ['--config', d.configPath, '--state-dir', d.stateDir, '--socket', d.socket];
    try {
        const proc = spawn(BIN, ['login', 'prot', ...at, '--headless'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        proc.stderr.on('data', (c) => (stderr += c));
        const code = await within(15000, new Promise((resolve) => proc.on('exit', resolve)), 'login');
        assert.equal(code, 0, stderr);
        assert.match(stderr, /told the daemon/);
        const out = await runBin(['logout', 'prot', ...at]);
        assert.equal(out.code, 0, out.stderr);
        assert.match(out.stderr, /told the daemon/);
        // No daemon on the socket: login still succeeds, quietly.
        const r2 = await login('prot', ['--socket', path.join(dir, 'no-daemon.sock')]);
        assert.equal(r2.code, 0, r2.stderr);
        assert.doesNotMatch(r2.stderr, /daemon/);
    } finally {
        d.kill();
        await d.exited;
    }
});
