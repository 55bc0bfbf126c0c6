// State files are opened without following symlinks (issue 9, item 11). Symlinks planted in the
// state directory at audit.jsonl, revoked, pins and logs/<server>.log, each pointing at a file
// outside it: the daemon starts and serves (chosen behaviour: a refused state file costs only
// its feature, as an unwritable one always did), logs one refusal per file naming it, and the
// files the links point at stay exactly as they were. A state directory that others can write
// to is refused at start.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';

import { IS_GATEWAY, demoSection, makeTmp, rawHttp, resultText, runBin, sleep, testKit, untilTool, waitFor, assertCleanStop } from './harness.mjs';

const skip = !IS_GATEWAY && 'gateway only';
const T = { timeout: 30000, skip };
const kit = testKit('statefiles');
const { wrap } = kit;
after(kit.cleanup);

test('symlinks at audit.jsonl, revoked, pins and logs/demo.log are refused, their targets untouched', T, wrap(async () => {
    const tmp = makeTmp('statefiles');
    const outside = path.join(tmp, 'outside');
    const state = path.join(tmp, 'state');
    fs.mkdirSync(outside, { mode: 0o700 });
    fs.mkdirSync(path.join(state, 'logs'), { recursive: true, mode: 0o700 });
    const planted = {
        'audit.jsonl': 'audit',
        revoked: 'revoked',
        pins: 'pins',
        'logs/demo.log': 'demo.log',
    };
    const before = {};
    for (const [rel, name] of Object.entries(planted)) {
        const target = path.join(outside, name);
        // A pins file that would load if it were followed (mode 0600, valid JSON).
        const text = name === 'pins' ? '{"version":1,"servers":{}}\n' : `precious ${name}\n`;
        fs.writeFileSync(target, text, { mode: 0o644 });
        fs.symlinkSync(target, path.join(state, rel));
        before[target] = { text, mode: fs.statSync(target).mode & 0o7777 };
    }
    fs.chmodSync(path.join(outside, 'pins'), 0o600);
    before[path.join(outside, 'pins')].mode = 0o600;

    const d = await kit.start({ config: demoSection(), extraArgs: ['--state-dir', state] });
    const c = await untilTool(await kit.client(d));
    assert.equal(resultText(await c.client.callTool({ name: 'demo__echo', arguments: { message: 'hi' } })), 'hi');
    // A DELETE writes the session id to <state>/revoked.
    const del = await rawHttp({ port: d.port, method: 'DELETE', headers: { 'mcp-session-id': c.sessionId } });
    assert.ok(del.status >= 200 && del.status < 300, `DELETE: HTTP ${del.status} ${del.text}`);
    c.closed = true; // the session is gone; nothing to close
    await sleep(300); // audit lines are flushed every 50 ms

    for (const [target, want] of Object.entries(before)) {
        assert.equal(fs.readFileSync(target, 'utf8'), want.text, `${target} was written through a link`);
        assert.equal(fs.statSync(target).mode & 0o7777, want.mode, `${target}'s mode was changed through a link`);
    }
    for (const rel of Object.keys(planted)) {
        const p = path.join(state, rel);
        assert.ok(fs.lstatSync(p).isSymbolicLink(), `${rel} is still the planted link`);
        await waitFor(() => d.stderr.includes(p), { timeout: 3000, what: `the daemon's log to name ${p}:\n${d.tail()}` });
    }
    assert.match(d.stderr, /audit\.jsonl: is a symbolic link, which agentgate does not follow/);
    assert.ok(d.alive, 'the daemon keeps serving');
    await assertCleanStop(assert, d);
}));

test('a state directory others can write to, or that is a symlink, is refused at start', T, async () => {
    const tmp = makeTmp('statefiles-dir');
    const state = path.join(tmp, 'state');
    fs.mkdirSync(state);
    fs.chmodSync(state, 0o777);
    const args = (s) => ['serve', '--listen', 'off', '--socket', path.join(tmp, 'run', 's.sock'), '--state-dir', s];
    fs.mkdirSync(path.join(tmp, 'run'), { mode: 0o700 });
    const r = await runBin(args(state));
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.trim(), `agentgate: ${state}: mode 0777 lets other users write to it; run \`chmod 700 ${state}\``);
    assert.deepEqual(fs.readdirSync(state), [], 'nothing was created in it');

    const link = path.join(tmp, 'state-link');
    fs.chmodSync(state, 0o700);
    fs.symlinkSync(state, link);
    const r2 = await runBin(args(link));
    assert.equal(r2.code, 1, r2.stderr);
    assert.match(r2.stderr, new RegExp(`${link.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: is a symbolic link`));
    assert.deepEqual(fs.readdirSync(state), []);
});
