import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["e2e/**/*.test.ts"],
    environment: "node",
    // One real sync server and the demo's static server, started once for the run.
    globalSetup: ["./e2e/globalSetup.ts"],
    // The story's steps build on each other: one file, in order.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
