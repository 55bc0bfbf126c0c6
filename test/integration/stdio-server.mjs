// The plumbing the raw stdio MCP test servers share (no SDK, so every byte they send is theirs):
// newline-delimited JSON-RPC on stdin and stdout.
import readline from 'node:readline';

/** Writes one message; false when stdout is backed up (see `drained`). */
export const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');
export const reply = (id, result) => send({ jsonrpc: '2.0', id, result });
export const fail = (id, code, message) => send({ jsonrpc: '2.0', id, error: { code, message } });
/** Resolves once stdout has room again. */
export const drained = () => new Promise((r) => process.stdout.once('drain', r));

/** The initialize result of a server called `name` with these capabilities. */
export const initResult = (m, name, capabilities) => ({
    protocolVersion: m.params?.protocolVersion ?? '2025-06-18',
    capabilities,
    serverInfo: { name, version: '1.0.0' },
});

/**
 * Reads stdin line by line and calls onMessage with every JSON-RPC message that parses (other
 * lines are ignored); `onClose` runs when stdin ends (default: exit 0).
 */
export function serve(onMessage, { onClose = () => process.exit(0) } = {}) {
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (line) => {
        let m;
        try {
            m = JSON.parse(line);
        } catch {
            return;
        }
        onMessage(m);
    });
    rl.on('close', onClose);
}
