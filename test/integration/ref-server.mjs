// A reference peer for checking the test clients themselves: server-everything's own
// Streamable HTTP mode, bound to 127.0.0.1 only, plus a Unix socket that forwards to it.
// Usage: node ref-server.mjs PORT SOCKET_PATH
// Used when AGENTGATE_TARGET=reference (see harness.mjs); never by `make test`.
import net from 'node:net';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [port, socketPath] = process.argv.slice(2);
if (!port || !socketPath) {
    console.error('usage: node ref-server.mjs PORT SOCKET_PATH');
    process.exit(2);
}
process.env.PORT = port;

// server-everything calls app.listen(PORT), which binds every interface: force loopback.
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
    if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
        const cb = args.find((a) => typeof a === 'function');
        return listen.call(this, { port: Number(args[0]), host: '127.0.0.1' }, cb);
    }
    return listen.apply(this, args);
};

const require = createRequire(import.meta.url);
const pkg = require.resolve('@modelcontextprotocol/server-everything/package.json');
await import(pathToFileURL(path.join(path.dirname(pkg), 'dist/transports/streamableHttp.js')).href);

// The Unix socket side: a byte-level forwarder to the TCP port.
net.createServer((c) => {
    const u = net.connect(Number(port), '127.0.0.1');
    c.pipe(u);
    u.pipe(c);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
}).listen(socketPath);
