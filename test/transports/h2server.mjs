// An HTTP/2 (and HTTP/1.1) server over TLS for test_hclient.c, on node's own http2 module.
// Usage: node h2server.mjs CERT KEY. Listens on 127.0.0.1 (a free port), prints the port as the
// first line on stdout, and exits when stdin closes (the test ends) or on SIGTERM.
//   /echo    JSON {session, proto, method, bytes, body} once the request body has arrived
//   /big?N   N patterned bytes (byte i is 'a' + (i * 7 + floor(i / 4096)) % 26), honouring
//            HTTP/2 flow control (the client's pauses hold the writes back)
//   /hold    one chunk "first", then nothing until the client goes away
//   /gzip?N  N bytes 'a', gzip-encoded (content-encoding: gzip)
//   /stats   JSON {aborted}: streams the client cancelled (RST_STREAM) or left
// Each stream the client leaves before its answer ended also prints "aborted" on stdout.
import fs from 'node:fs';
import http2 from 'node:http2';
import zlib from 'node:zlib';

const [cert, key] = process.argv.slice(2);
let sessions = 0;
let aborted = 0;

const server = http2.createSecureServer({
    cert: fs.readFileSync(cert),
    key: fs.readFileSync(key),
    allowHTTP1: true,
});
server.on('session', (s) => {
    s.id = ++sessions;
});

function bigByte(i) {
    return 97 + ((i * 7 + Math.floor(i / 4096)) % 26);
}

server.on('request', (req, res) => {
    const session = req.stream && req.stream.session ? req.stream.session.id : 0;
    const url = new URL(req.url, 'https://x');
    let done = false;
    res.on('close', () => {
        if (!done) {
            aborted++;
            process.stdout.write('aborted\n');
        }
    });
    if (url.pathname === '/echo') {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
            const body = Buffer.concat(chunks);
            done = true;
            res.setHeader('content-type', 'application/json');
            res.end(JSON.stringify({
                session, proto: req.httpVersion, method: req.method,
                bytes: body.length, body: body.subarray(0, 64).toString(),
            }));
        });
    } else if (url.pathname === '/big') {
        const total = Number(url.search.slice(1));
        let sent = 0;
        const pump = () => {
            while (sent < total) {
                const n = Math.min(16384, total - sent);
                const b = Buffer.alloc(n);
                for (let i = 0; i < n; i++)
                    b[i] = bigByte(sent + i);
                sent += n;
                if (!res.write(b)) {
                    res.once('drain', pump);
                    return;
                }
            }
            done = true;
            res.end();
        };
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        pump();
    } else if (url.pathname === '/hold') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first');
    } else if (url.pathname === '/gzip') {
        done = true;
        const body = zlib.gzipSync(Buffer.alloc(Number(url.search.slice(1)), 'a'));
        res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip',
                             'content-length': body.length });
        res.end(body);
    } else if (url.pathname === '/stats') {
        done = true;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ aborted, sessions }));
    } else {
        done = true;
        res.writeHead(404);
        res.end('no such path');
    }
});

server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${server.address().port}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
