import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
    // The integration tests share one real sync server, started once for the run.
    globalSetup: ["./test/server/globalSetup.ts"],
    testTimeout: 20_000,
    hookTimeout: 30_000,
  },
});
