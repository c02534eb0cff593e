// The official automerge-repo sync server, as the automerge-repo sync
// server runs it: a Repo with NodeWSServerAdapter on `ws` and
// NodeFSStorageAdapter, sharing nothing unasked. The benchmark's point of
// comparison.
//
//   node sync-server.mjs DATA_DIR [PORT]     prints "listening on 127.0.0.1:PORT"
import { WebSocketServer } from "ws";
import { Repo } from "@automerge/automerge-repo";
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket";
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs";

const [dir, port = "0"] = process.argv.slice(2);
const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(port) });
await new Promise((resolve) => wss.once("listening", resolve));
const repo = new Repo({
  network: [new NodeWSServerAdapter(wss)],
  storage: new NodeFSStorageAdapter(dir),
  peerId: `sync-server-${process.pid}`,
  sharePolicy: async () => false,
});
// The adapter attaches its handlers once the repo connects it, a tick
// after construction: say where to connect only then.
await new Promise((resolve) => setTimeout(resolve, 100));
console.error(`listening on 127.0.0.1:${wss.address().port}`);
