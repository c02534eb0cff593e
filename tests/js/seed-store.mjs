// Stores records straight through the official server's storage adapter,
// as its Repo stores a document it is sent: S3's setup for the official
// server, which takes longer than the bench allows to be sent 20,000
// records through its socket (17,000 stored in 480 s, 2026-12-04).
//
//   node seed-store.mjs DATA_DIR FILE
//
// FILE holds records one after another, each as a 4-byte big-endian
// length and the document id (UTF-8), then a 4-byte length and the saved
// document. Prints "stored N" once all are written.
import { readFileSync } from "node:fs";
import { Repo } from "@automerge/automerge-repo";
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs";

const [dir, file] = process.argv.slice(2);
const bytes = readFileSync(file);
const repo = new Repo({
  network: [],
  storage: new NodeFSStorageAdapter(dir),
  peerId: "seed-store",
  sharePolicy: async () => false,
});
let at = 0;
let stored = 0;
const take = () => {
  const len = bytes.readUInt32BE(at);
  const part = bytes.subarray(at + 4, at + 4 + len);
  at += 4 + len;
  return part;
};
while (at < bytes.length) {
  const id = take().toString("utf8");
  const doc = new Uint8Array(take());
  repo.import(doc, { docId: id });
  stored += 1;
  // In steps, so that the writes waiting stay few.
  if (stored % 500 === 0) await repo.flush();
}
await repo.flush();
console.error(`stored ${stored}`);
process.exit(0);
