/**
 * Starts what the browser test drives: the demo page (built with esbuild and served by a
 * node:http server) and one real sync server of this repository, both on free ports of
 * 127.0.0.1, the server over a fresh SQLite database in a temporary folder. The tests find
 * them with `inject("serverUrl")`, `inject("demoUrl")` and `inject("screenshots")`.
 */

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";

import { build } from "../build.mjs";
import { serveDemo } from "../serve.mjs";
import { CHROMIUM } from "./chromium.js";

declare module "vitest" {
  export interface ProvidedContext {
    serverUrl: string;
    demoUrl: string;
    screenshots: string;
  }
}

const DEMO = resolve(fileURLToPath(new URL("../", import.meta.url)));
const REPO = resolve(DEMO, "..", "..");
const SERVER = join(REPO, ".venv", "bin", "sync-server");
const STARTUP_DEADLINE_MS = 30_000;

function freePort(): Promise<number> {
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

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium); no browser is downloaded`);
  }
  if (!existsSync(SERVER)) {
    throw new Error(`${SERVER} is missing: run \`make test\` (or create the venv with pip install -e '.[dev]') first`);
  }
  await build();
  const demo = await serveDemo();

  const folder = mkdtempSync(join(tmpdir(), "touchline-e2e-"));
  const port = await freePort();
  const env = {
    ...process.env,
    DATABASE_URL: `sqlite+aiosqlite:///${join(folder, "touchline.db")}`,
    SECRET_KEY: "touchline-browser-tests-secret-key-0123456789abcdef",
    ENVIRONMENT: "test",
    ALLOW_SIGNUP: "true",
    HOST: "127.0.0.1",
    PORT: String(port),
    // The demo page is served from another origin and calls the server from the browser.
    CORS_ORIGINS: demo.url,
    RATE_LIMIT_PER_MINUTE: "100000",
    LOGIN_ATTEMPTS_PER_MINUTE: "10000",
    WS_MESSAGES_PER_SECOND: "1000",
    // Empty counts as unset: share links point at this server, and one process relays alone.
    PUBLIC_URL: "",
    REDIS_URL: "",
    DATABASE_SCHEMA: "",
  };
  const migrated = spawnSync(SERVER, ["migrate"], { cwd: folder, env, encoding: "utf8" });
  if (migrated.status !== 0) {
    await demo.close();
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
    await demo.close();
    rmSync(folder, { recursive: true, force: true });
    throw error;
  }

  const screenshots = join(DEMO, "screenshots");
  mkdirSync(screenshots, { recursive: true });
  project.provide("serverUrl", url);
  project.provide("demoUrl", demo.url);
  project.provide("screenshots", screenshots);
  return async () => {
    if (server.exitCode === null) {
      const exited = new Promise((done) => server.once("exit", done));
      server.kill("SIGTERM");
      const timer = setTimeout(() => server.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await demo.close();
    rmSync(folder, { recursive: true, force: true });
  };
}
