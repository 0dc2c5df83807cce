// Bundles the demo (src/demo.ts, the sync client from ../typescript/src and Dexie) into one
// ES module, dist/demo.js. `node build.mjs` from the command line; `build()` from the tests.
import { build as esbuild } from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const DEMO_DIR = dirname(fileURLToPath(import.meta.url));

/** @returns {Promise<string>} the bundle's path */
export async function build() {
  await esbuild({
    entryPoints: [join(DEMO_DIR, "src", "demo.ts")],
    outfile: join(DEMO_DIR, "dist", "demo.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    sourcemap: true,
    minify: true,
    // The client's sources import Dexie's types only; the one runtime copy is this package's.
    alias: { dexie: join(DEMO_DIR, "node_modules", "dexie") },
    logLevel: "warning",
  });
  return join(DEMO_DIR, "dist", "demo.js");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = await build();
  console.log(`built ${out}`);
}
