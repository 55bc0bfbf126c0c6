// server-everything in one of its HTTP modes, bound to 127.0.0.1 only (its own launcher calls
// app.listen(PORT), which binds every interface). Usage: node everything-http.mjs MODE PORT
// with MODE streamableHttp (POST/GET/DELETE /mcp) or sse (GET /sse, POST /message).
import net from 'node:net';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [mode, port] = process.argv.slice(2);
if (!['streamableHttp', 'sse'].includes(mode) || !/^\d+$/.test(port || '')) {
    console.error('usage: node everything-http.mjs streamableHttp|sse PORT');
    process.exit(2);
}
process.env.PORT = port;

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
await import(pathToFileURL(path.join(path.dirname(pkg), `dist/transports/${mode}.js`)).href);
