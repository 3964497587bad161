import { defineConfig } from "vite";

// `npm run build` writes dist/, which the console edge serves. `npx vite` serves the sources
// with hot reload and forwards /api to an edge on CONSOLE_URL (default http://127.0.0.1:8080).
export default defineConfig({
  base: "/",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, target: "es2022" },
  server: {
    host: "127.0.0.1",
    proxy: { "/api": process.env.CONSOLE_URL ?? "http://127.0.0.1:8080" },
  },
});
