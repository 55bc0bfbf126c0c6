// The README's command synopses (the Commands and Import blocks) say exactly what each command
// accepts (issue 9, item 12): every option listed there is accepted by the command, and every
// option in the command's own usage text is listed there.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { ROOT, runBin } from './harness.mjs';

const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** The `agentgate CMD ...` synopses in the fenced block after `heading`, continuation lines
 * joined: [{cmd, text}]. */
function synopses(heading) {
    const at = README.indexOf(`\n${heading}\n`);
    assert.ok(at >= 0, `README has a "${heading}" section`);
    const open = README.indexOf('```\n', at);
    const close = README.indexOf('\n```', open + 4);
    const out = [];
    for (const line of README.slice(open + 4, close).split('\n')) {
        if (line.startsWith('agentgate ')) out.push({ cmd: line.split(/\s+/)[1], text: line });
        else if (/^\s/.test(line) && out.length) out[out.length - 1].text += ' ' + line.trim();
    }
    return out;
}

/** The options of a synopsis or usage text: {name: takesValue}. "--" alone (before CMD) is not
 * an option. */
function options(text) {
    const words = text.replace(/[[\]]/g, ' ').split(/\s+/).filter(Boolean);
    const out = {};
    words.forEach((w, i) => {
        const m = /^(--[a-z][a-z-]*)$/.exec(w);
        if (!m) return;
        const next = words[i + 1];
        out[m[1]] = next !== undefined && !next.startsWith('-') && next !== '|';
    });
    return out;
}

const entries = [...synopses('## Commands'), ...synopses('### Import')];

test('the README lists every command once', () => {
    const cmds = entries.map((e) => e.cmd);
    assert.deepEqual([...cmds].sort(), ['approve', 'bridge', 'demo-server', 'import', 'login', 'logout', 'probe', 'reload', 'rotate-key', 'serve', 'status', 'token', 'wrap']);
});

for (const { cmd, text } of entries) {
    test(`README: ${text}`, async () => {
        const listed = options(text);
        // The command's own usage text (demo-server prints it on stderr), up to its first blank line.
        const help = await runBin([cmd, '--help']);
        assert.equal(help.code, 0, `${cmd} --help: ${help.stderr}`);
        const usage = (help.stdout || help.stderr).split('\n\n')[0];
        assert.match(usage, new RegExp(`usage: agentgate ${cmd}\\b`));
        assert.deepEqual(Object.keys(options(usage)).sort(), Object.keys(listed).sort(), `the README and \`agentgate ${cmd} --help\` list different options:\n${usage}`);
        if (cmd === 'demo-server') return; // it ignores unknown options: nothing more to learn
        // Each listed option is parsed (an unknown one is refused with exit 2 before --help).
        for (const [opt, takesValue] of Object.entries(listed)) {
            const args = [cmd, opt, ...(takesValue ? ['x'] : []), '--help'];
            const r = await runBin(args);
            assert.equal(r.code, 0, `agentgate ${args.join(' ')}: ${r.stderr}`);
        }
    });
}

test('reload takes no --state-dir (the daemon re-reads its own state)', async () => {
    const r = await runBin(['reload', '--state-dir', '/nonexistent', '--help']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /unknown option '--state-dir'/);
    assert.ok(!('--state-dir' in options(entries.find((e) => e.cmd === 'reload').text)));
});
