/**
 * Starts one real sync server for the integration tests (see ./syncServer.ts). The tests find
 * its URL with `inject("serverUrl")`.
 */

import type { TestProject } from "vitest/node";

import { startSyncServer } from "./syncServer.js";

declare module "vitest" {
  export interface ProvidedContext {
    serverUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startSyncServer();
  project.provide("serverUrl", server.url);
  return () => server.stop();
}
