// A static server for the demo page (node:http, 127.0.0.1 only). `npm start` builds the
// page and serves it on port 5173 (or $DEMO_PORT); the tests call `serveDemo()`.
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";

import { DEMO_DIR, build } from "./build.mjs";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
};
// Only what the page needs: the sources, the tests and node_modules are not served.
const SERVED = new Set(["index.html", "style.css", join("dist", "demo.js"), join("dist", "demo.js.map")]);

/**
 * Serve the demo's files on 127.0.0.1:`port` (0: any free port).
 * @param {number} [port]
 * @returns {Promise<{ url: string, close: () => Promise<unknown> }>}
 */
export function serveDemo(port = 0) {
  const server = createServer(async (request, response) => {
    const path = new URL(request.url ?? "/", "http://localhost").pathname;
    const relative = normalize(decodeURIComponent(path === "/" ? "/index.html" : path)).replace(/^[/\\]+/, "");
    if (!SERVED.has(relative) || relative.split(sep).includes("..")) {
      response.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found\n");
      return;
    }
    try {
      const body = await readFile(join(DEMO_DIR, relative));
      response.writeHead(200, { "content-type": TYPES[extname(relative)] ?? "application/octet-stream", "cache-control": "no-store" }).end(body);
    } catch {
      response.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not built yet: npm run build\n");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      const url = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : port}`;
      resolve({
        url,
        close: () =>
          new Promise((done) => {
            server.close(() => done(undefined));
            server.closeAllConnections();
          }),
      });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await build();
  const { url } = await serveDemo(Number(process.env.DEMO_PORT ?? 5173));
  console.log(`The coach demo is at ${url}/`);
  console.log(`Run the sync server with CORS_ORIGINS=${url} so the page may call it.`);
}
