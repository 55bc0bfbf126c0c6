// The audit log: one JSON line per tools/call in <state>/audit.jsonl (0600), whatever the
// outcome (ok, tool_error, error, unknown, denied), without the call's arguments; buffered and
// flushed within ~50 ms; rotated at audit_max; absent with audit = off.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';

import {
    IS_GATEWAY,
    bearer,
    clientSection,
    demoSection,
    fileMode,
    randomToken,
    resultText,
    rpcError,
    sha256Hex,
    sleep,
    testKit,
    untilTool,
    waitFor,
    assertCleanStop,
} from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 30000, skip };

const ALICE = randomToken('alice');
const SECRET = 'do-not-log-me-9f8e7d6c5b4a';
const kit = testKit('audit');
const { wrap } = kit;
after(kit.cleanup);

const start = (config, opts) => kit.start({ config, ...opts });
/** A client whose session already lists demo__echo. */
const client = async (d, opts) => untilTool(await kit.client(d, opts));
const auditPath = (d, suffix = '') => path.join(d.stateDir, `audit.jsonl${suffix}`);
function readLines(p) {
    if (!fs.existsSync(p)) return [];
    return fs.readFileSync(p, 'utf8').split('\n').filter(Boolean);
}

test('one JSON line per tools/call, every outcome, no arguments, mode 0600', T, wrap(async () => {
    const d = await start(
        '[gateway]\nauth = token\n\n' + clientSection('alice', { token_sha256: sha256Hex(ALICE), deny: 'demo__sum' }) + '\n' + demoSection(),
        { auth: 'token' },
    );
    const c = await client(d, { headers: bearer(ALICE) });
    const t0 = Date.now();
    const big = SECRET + 'x'.repeat(2000);

    const ok = await c.client.callTool({ name: 'demo__echo', arguments: { message: big } });
    assert.equal(resultText(ok), big);
    const toolErr = await c.client.callTool({ name: 'demo__fail', arguments: { note: SECRET } });
    assert.equal(toolErr.isError, true);
    const rpcErr = await rpcError(c.client.callTool({ name: 'demo__echo', arguments: { not_message: SECRET } }));
    assert.equal(rpcErr.code, -32602, 'the demo server answers a missing message with -32602');
    const unknown = await c.client.callTool({ name: 'nothing__zzq', arguments: { secret: SECRET } });
    assert.equal(resultText(unknown), 'Unknown tool: nothing__zzq');
    const denied = await c.client.callTool({ name: 'demo__sum', arguments: { a: 1, b: 2, note: SECRET } });
    assert.equal(resultText(denied), 'Unknown tool: demo__sum');
    // Lists are not audited.
    await c.client.listTools();
    await c.client.listPrompts();

    const file = auditPath(d);
    const lines = await waitFor(() => (readLines(file).length >= 5 ? readLines(file) : null), { timeout: 3000, what: '5 lines in audit.jsonl' });
    await sleep(200);
    assert.equal(readLines(file).length, 5, `exactly one line per tools/call:\n${readLines(file).join('\n')}`);
    assert.equal(fileMode(file), 0o600, 'audit.jsonl mode');
    const text = fs.readFileSync(file, 'utf8');
    assert.ok(!text.includes(SECRET), 'the arguments (and results) never reach the audit log');
    assert.ok(!text.includes('xxxxxxxxxx'), 'no argument text at all');

    const recs = lines.map((l) => JSON.parse(l));
    assert.deepEqual(recs.map((r) => r.outcome), ['ok', 'tool_error', 'error', 'unknown', 'denied']);
    const session = recs[0].session;
    assert.equal(typeof session, 'string');
    assert.ok(session.length > 0);
    for (const r of recs) {
        for (const k of ['time', 'client', 'session', 'server', 'tool', 'duration_ms', 'outcome', 'bytes_in', 'bytes_out']) assert.ok(k in r, `${k} missing in ${JSON.stringify(r)}`);
        assert.match(r.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        const t = Date.parse(r.time);
        assert.ok(t >= t0 - 1000 && t <= Date.now() + 1000, `time ${r.time} is now`);
        assert.equal(r.client, 'alice');
        assert.equal(r.session, session, 'the same session on every line');
        assert.equal(typeof r.duration_ms, 'number');
        assert.ok(r.duration_ms >= 0 && r.duration_ms < 10000, `duration_ms ${r.duration_ms}`);
        assert.ok(Number.isInteger(r.bytes_in) && r.bytes_in >= 0, `bytes_in ${r.bytes_in}`);
        assert.ok(Number.isInteger(r.bytes_out) && r.bytes_out >= 0, `bytes_out ${r.bytes_out}`);
        assert.equal(Object.keys(r).filter((k) => /arg/i.test(k)).length, 0, `no arguments field: ${JSON.stringify(r)}`);
    }
    // server and tool of the calls that name a real server's tool (the tool by its upstream or exposed name).
    for (const [i, orig] of [
        [0, 'echo'],
        [1, 'fail'],
        [2, 'echo'],
        [4, 'sum'],
    ]) {
        assert.equal(recs[i].server, 'demo', JSON.stringify(recs[i]));
        assert.ok([orig, `demo__${orig}`].includes(recs[i].tool), JSON.stringify(recs[i]));
    }
    assert.match(String(recs[3].tool), /zzq/, JSON.stringify(recs[3]));
    assert.ok(recs[0].bytes_in >= 2000, `bytes_in of a 2000-byte argument: ${recs[0].bytes_in}`);
    assert.ok(recs[0].bytes_out >= 2000, `bytes_out of a 2000-byte result: ${recs[0].bytes_out}`);

    // A call just before SIGTERM is flushed at exit; the daemon stops cleanly.
    await c.client.callTool({ name: 'demo__echo', arguments: { message: 'last' } });
    await c.close();
    await assertCleanStop(assert, d);
    assert.equal(readLines(file).length, 6, 'the last call was flushed at exit');
}));

test('audit_max: the log rotates to audit.jsonl.1, .2 ...; anonymous calls log client null', T, wrap(async () => {
    const d = await start('[gateway]\nauth = none\naudit_max = 1KiB\n\n' + demoSection());
    const c = await client(d);
    const N = 10;
    for (let i = 0; i < N; i++) {
        await c.client.callTool({ name: 'demo__echo', arguments: { message: `r${i}` } });
        await sleep(70); // one flush per call
    }
    await waitFor(
        () => {
            const all = ['', '.1', '.2', '.3'].flatMap((s) => readLines(auditPath(d, s)));
            return all.length >= N;
        },
        { timeout: 3000, what: `${N} audit lines across the rotated files` },
    );
    assert.ok(fs.existsSync(auditPath(d, '.1')), 'audit.jsonl.1 after passing audit_max');
    assert.ok(!fs.existsSync(auditPath(d, '.4')), 'at most 3 rotated files');
    let total = 0;
    for (const s of ['', '.1', '.2', '.3']) {
        const p = auditPath(d, s);
        if (!fs.existsSync(p)) continue;
        assert.ok(fs.statSync(p).size <= 1024, `${path.basename(p)} is ${fs.statSync(p).size} bytes, over audit_max`);
        assert.equal(fileMode(p), 0o600, `${path.basename(p)} mode`);
        for (const l of readLines(p)) {
            const r = JSON.parse(l);
            assert.equal(r.client, null, 'anonymous: client null');
            assert.equal(r.outcome, 'ok');
            total++;
        }
    }
    assert.equal(total, N, 'no line lost or duplicated by the rotation');
}));

test('audit = off: no audit.jsonl', T, wrap(async () => {
    const d = await start('[gateway]\nauth = none\naudit = off\n\n' + demoSection());
    const c = await client(d);
    assert.equal(resultText(await c.client.callTool({ name: 'demo__echo', arguments: { message: 'unaudited' } })), 'unaudited');
    await sleep(300);
    assert.ok(!fs.existsSync(auditPath(d)), 'audit.jsonl written although audit = off');
}));
