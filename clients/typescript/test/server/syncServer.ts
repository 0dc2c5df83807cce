/**
 * One real sync server of this repository for a test run: `sync-server migrate`, then
 * `sync-server serve` on a free port of 127.0.0.1 over a fresh SQLite database in a temporary
 * folder, awaited on /health with a deadline and stopped (SIGTERM, then SIGKILL) at the end.
 * Used by this package's integration tests and by the demo's browser test.
 */

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(fileURLToPath(new URL("../../../../", import.meta.url)));
const SERVER = join(REPO, ".venv", "bin", "sync-server");
const STARTUP_DEADLINE_MS = 30_000;

export interface RunningServer {
  readonly url: string;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => (typeof address === "object" && address !== null ? done(address.port) : fail(new Error("no port"))));
    });
  });
}

async function waitForHealth(url: string, server: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + STARTUP_DEADLINE_MS;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`the sync server exited with ${server.exitCode}:\n${output()}`);
    try {
      const response = await fetch(`${url}/health`);
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new Error(`the sync server did not answer /health within ${STARTUP_DEADLINE_MS} ms:\n${output()}`);
}

/** Start a server with `extraEnv` on top of test settings (generous rate limits, signup open). */
export async function startSyncServer(extraEnv: Record<string, string> = {}): Promise<RunningServer> {
  if (!existsSync(SERVER)) {
    throw new Error(`${SERVER} is missing: run \`make test\` (or create the venv with pip install -e '.[dev]') first`);
  }
  const folder = mkdtempSync(join(tmpdir(), "touchline-server-"));
  const port = await freePort();
  const env = {
    ...process.env,
    DATABASE_URL: `sqlite+aiosqlite:///${join(folder, "touchline.db")}`,
    SECRET_KEY: "touchline-client-tests-secret-key-0123456789abcdef",
    ENVIRONMENT: "test",
    ALLOW_SIGNUP: "true",
    HOST: "127.0.0.1",
    PORT: String(port),
    // Every test signs up its own club and logs in several devices.
    RATE_LIMIT_PER_MINUTE: "100000",
    LOGIN_ATTEMPTS_PER_MINUTE: "10000",
    WS_MESSAGES_PER_SECOND: "1000",
    // Empty counts as unset: share links point at this server, and one process relays alone.
    PUBLIC_URL: "",
    REDIS_URL: "",
    DATABASE_SCHEMA: "",
    ...extraEnv,
  };
  const migrated = spawnSync(SERVER, ["migrate"], { cwd: folder, env, encoding: "utf8" });
  if (migrated.status !== 0) {
    rmSync(folder, { recursive: true, force: true });
    throw new Error(`sync-server migrate failed:\n${migrated.stdout}${migrated.stderr}`);
  }
  let log = "";
  const server = spawn(SERVER, ["serve", "--port", String(port), "--log-level", "warning"], { cwd: folder, env, stdio: ["ignore", "pipe", "pipe"] });
  server.stdout?.on("data", (chunk: Buffer) => (log += chunk.toString()));
  server.stderr?.on("data", (chunk: Buffer) => (log += chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHealth(url, server, () => log);
  } catch (error) {
    server.kill("SIGKILL");
    rmSync(folder, { recursive: true, force: true });
    throw error;
  }
  return {
    url,
    async stop() {
      if (server.exitCode === null) {
        const exited = new Promise((done) => server.once("exit", done));
        server.kill("SIGTERM");
        const timer = setTimeout(() => server.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(folder, { recursive: true, force: true });
    },
  };
}
