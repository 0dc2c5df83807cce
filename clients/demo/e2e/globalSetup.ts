/**
 * Starts what the browser test drives: the demo page (built with esbuild and served by a
 * node:http server) and one real sync server of this repository (../typescript's test
 * server: a fresh SQLite database, a free port of 127.0.0.1). The tests find them with
 * `inject("serverUrl")`, `inject("demoUrl")` and `inject("screenshots")`.
 */

import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";

import { startSyncServer } from "../../typescript/test/server/syncServer.js";
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

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium); no browser is downloaded`);
  }
  await build();
  const demo = await serveDemo();
  let server;
  try {
    // The demo page is served from another origin and calls the server from the browser.
    server = await startSyncServer({ CORS_ORIGINS: demo.url });
  } catch (error) {
    await demo.close();
    throw error;
  }
  const screenshots = join(DEMO, "screenshots");
  mkdirSync(screenshots, { recursive: true });
  project.provide("serverUrl", server.url);
  project.provide("demoUrl", demo.url);
  project.provide("screenshots", screenshots);
  return async () => {
    await server.stop();
    await demo.close();
  };
}
