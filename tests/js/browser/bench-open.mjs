// Benchmark, not a test: how long the WASM client takes to open a store
// of 500 records from IndexedDB in headless Chromium. Prints figures.
// Run with `cargo xtask bench-client` (which builds the server and client).

import { cleanup, dataDir, launch, openClient, persistentPhone, startServer } from "./harness.mjs";

const RECORDS = Number(process.env.RECORDS ?? 500);
const RUNS = Number(process.env.RUNS ?? 5);

const dir = dataDir();
const profile = dataDir();
const server = await startServer({ dir });
const { page, context } = await persistentPhone(profile);
try {
  await openClient(page, server, { offline: true });
  await page.evaluate(async (n) => {
    const kinds = ["report", "person", "meeting"];
    for (let i = 0; i < n; i++) {
      const kind = kinds[i % 3];
      const fields =
        kind === "report"
          ? { title: { fr: `Rapport ${i}`, ar: `تقرير ${i}` }, report_type: "visit", date: "2026-11-20", text: `Visite ${i} — زيارة `.repeat(20) }
          : kind === "person"
            ? { name: { fr: `Personne ${i}`, ar: `شخص ${i}` }, roles: ["délégué"] }
            : { title: { fr: `Réunion ${i}` }, date: "2026-11-20", minutes: `Procès-verbal ${i}. `.repeat(30) };
      const id = await window.tw.create(kind, fields, "bench");
      // A few edits each, so records are stored as several chunks.
      if (kind !== "person") {
        const path = kind === "report" ? "/text" : "/minutes";
        for (let e = 0; e < 3; e++) {
          await window.tw.edit(id, [{ op: "splice_text", path, index: 0, delete: 0, insert: `${e}` }], "edit");
        }
      }
    }
  }, RECORDS);
  const times = [];
  for (let r = 0; r < RUNS; r++) {
    await page.evaluate(() => window.tw.close());
    await page.reload();
    await page.evaluate(async () => {
      const mod = await import("/pkg/twinsync_client.js");
      await mod.default();
    });
    const ms = await page.evaluate(async () => {
      const mod = await import("/pkg/twinsync_client.js");
      const t0 = performance.now();
      window.tw = await mod.Client.open({ offline: true });
      const t1 = performance.now();
      if (window.tw.list().length < 500) throw new Error("records missing");
      return t1 - t0;
    });
    times.push(ms);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  console.log(`client store open: ${RECORDS} records, runs ${times.map((t) => t.toFixed(0)).join(" ")} ms`);
  console.log(`client open 500 records median ms: ${median.toFixed(0)}`);
} finally {
  await context.close();
  await server.stop();
  cleanup(dir);
  cleanup(profile);
}
