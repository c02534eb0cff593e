// One official automerge-repo client, driven from the Rust interop tests.
//
//   node peer.mjs WS_URL edit URL TEXT     insert TEXT at the start of the minutes, wait until the server has it
//   node peer.mjs WS_URL watch URL TEXT    wait until the minutes contain TEXT (printed as "SEEN")
//   node peer.mjs WS_URL create            create a report, wait until the server has it, print "URL <url>"
//   node peer.mjs WS_URL read URL          print the document as JSON ("DOC <json>")
//   node peer.mjs WS_URL await URL         ask for a record the server lacks: print "UNAVAILABLE"
//                                          when told so, then "DOC <json>" once it is offered
//   node peer.mjs WS_URL refused URL OTHER insert into URL's minutes a change the server refuses,
//                                          print the server's answer ("REFUSED <json>"), then read
//                                          OTHER ("DOC <json>") and say whether the socket stayed
//   node peer.mjs WS_URL party URL MEMBER  add MEMBER to the agreement URL's parties, as a raw change;
//                                          print "KEPT" once the server has it, or "REFUSED <json>"
//   node peer.mjs WS_URL kind URL KIND     make URL a record of KIND, as a raw change; print "KEPT"
//                                          once the server has it, or "REFUSED <json>"
//   node peer.mjs WS_URL foreign URL [N]   ask for a record under an N-byte id (32; the official client
//                                          takes any length): print "UNAVAILABLE" when told so, then
//                                          broadcast on it, read URL ("DOC <json>") and say whether
//                                          the socket stayed
//   node peer.mjs WS_URL presence URL TEXT a second client opens URL too; this one broadcasts TEXT
//                                          on it; print "HEARD <json>" once the second has it, then,
//                                          a second later, whether the second's socket stayed
//                                          ("SAME SOCKET" or "NEW SOCKET") and "ERRORS <json>"
//
// With PEER_STORE set to a directory, the client keeps its documents and
// sync states there (NodeFSStorageAdapter), as an app with storage does,
// and joins with that storage's id: a later run takes up where it stopped.
//
// Every mode ends by itself: exit 0 on success, 2 on timeout, 1 on error.
import { Repo, cbor, stringifyAutomergeUrl } from "@automerge/automerge-repo";
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs";
import * as A from "@automerge/automerge";

const [wsUrl, mode, url, text] = process.argv.slice(2);
const adapter = new WebSocketClientAdapter(wsUrl);
// The adapter only logs an `error` (to `debug`); note each one here, as it
// arrived, before the adapter takes the frame as usual.
const errors = [];
const receive = adapter.receiveMessage.bind(adapter);
adapter.receiveMessage = (bytes) => {
  try {
    const m = cbor.decode(new Uint8Array(bytes));
    if (m.type === "error") errors.push({ message: m.message, refusal: m.refusal });
  } catch { /* the adapter reports what it cannot decode */ }
  receive(bytes);
};
const storage = process.env.PEER_STORE ? new NodeFSStorageAdapter(process.env.PEER_STORE) : undefined;
const repo = new Repo({ network: [adapter], storage, peerId: `js-${mode}-${process.pid}` });
const timer = setTimeout(() => { console.log("TIMEOUT"); process.exit(2); }, 25000);
const finish = async (code) => { clearTimeout(timer); await new Promise((r) => setTimeout(r, 200)); process.exit(code); };

const serverPeer = () => new Promise((resolve) => {
  if (repo.peers.length) return resolve(repo.peers[0]);
  repo.networkSubsystem.on("peer", ({ peerId }) => resolve(peerId));
});

// Resolves once the server's announced heads equal ours.
async function serverHas(handle) {
  const storageId = repo.getStorageIdOfPeer(await serverPeer());
  await new Promise((resolve) => {
    const check = () => {
      const info = handle.getSyncInfo(storageId);
      if (info && JSON.stringify([...info.lastHeads].sort()) === JSON.stringify([...handle.heads()].sort())) resolve();
    };
    handle.on("remote-heads", check);
    check();
    setInterval(check, 100);
  });
}

try {
  if (mode === "edit") {
    const handle = await repo.find(url);
    handle.change((d) => A.splice(d, ["minutes"], 0, 0, text), { message: "Edit from the JS client" });
    await serverHas(handle);
    console.log("EDITED");
  } else if (mode === "watch") {
    const handle = await repo.find(url);
    await new Promise((resolve) => {
      const check = () => { if ((handle.doc()?.minutes ?? "").includes(text)) resolve(); };
      handle.on("change", check);
      check();
    });
    console.log("SEEN");
  } else if (mode === "create") {
    await serverPeer();
    const handle = repo.create({
      schema: 1, kind: "report", title: { fr: "Rapport écrit en JavaScript", ar: "تقرير" },
      report_type: "field", date: "2026-11-23", text: "Écrit par le client officiel.", links: {},
    });
    await serverHas(handle);
    console.log(`URL ${handle.url}`);
  } else if (mode === "await") {
    await serverPeer();
    const { handle } = repo.findWithProgress(url);
    const when = (ok) => new Promise((resolve) => {
      const t = setInterval(() => { if (ok()) { clearInterval(t); resolve(); } }, 20);
    });
    await when(() => handle.isUnavailable());
    console.log("UNAVAILABLE");
    await when(() => handle.isReady() && handle.doc()?.title);
    console.log(`DOC ${JSON.stringify(handle.doc())}`);
  } else if (mode === "refused") {
    const handle = await repo.find(url);
    const socket = adapter.socket;
    handle.change((d) => A.splice(d, ["minutes"], 0, 0, "Refusé. "), { message: "A change the server refuses" });
    // The server answers with an `error` carrying twinsync's `refusal` key,
    // and closes nothing: the same socket then serves another record.
    await new Promise((resolve) => {
      const t = setInterval(() => { if (errors.length) { clearInterval(t); resolve(); } }, 20);
    });
    console.log(`REFUSED ${JSON.stringify(errors[0])}`);
    const other = await repo.find(text);
    console.log(`DOC ${JSON.stringify(other.doc())}`);
    console.log(adapter.socket === socket ? "SAME SOCKET" : "NEW SOCKET");
  } else if (mode === "party" || mode === "kind") {
    const handle = await repo.find(url);
    if (mode === "party") handle.change((d) => { d.parties[text] = true; }, { message: "A party added by the JS client" });
    else handle.change((d) => { d.kind = text; }, { message: "Made another kind by the JS client" });
    const refused = new Promise((resolve) => {
      const t = setInterval(() => { if (errors.length) { clearInterval(t); resolve(); } }, 20);
    });
    const kept = await Promise.race([serverHas(handle).then(() => true), refused.then(() => false)]);
    console.log(kept ? "KEPT" : `REFUSED ${JSON.stringify(errors[0])}`);
  } else if (mode === "foreign") {
    await serverPeer();
    const socket = adapter.socket;
    const long = stringifyAutomergeUrl(new Uint8Array(Number(text ?? 32)).map((_, i) => i + 1));
    const { handle } = repo.findWithProgress(long);
    await new Promise((resolve) => {
      const t = setInterval(() => { if (handle.isUnavailable()) { clearInterval(t); resolve(); } }, 20);
    });
    console.log("UNAVAILABLE");
    // Presence on that document still goes to the server, under its id.
    handle.broadcast({ note: "présence · حضور" });
    await new Promise((r) => setTimeout(r, 500));
    const other = await repo.find(url);
    console.log(`DOC ${JSON.stringify(other.doc())}`);
    console.log(adapter.socket === socket && socket.readyState === 1 ? "SAME SOCKET" : "NEW SOCKET");
  } else if (mode === "presence") {
    // The second client, as another phone would run it, with its own socket.
    const other = new WebSocketClientAdapter(wsUrl);
    const second = new Repo({ network: [other], peerId: `js-presence-second-${process.pid}` });
    const handle = await repo.find(url);
    const theirs = await second.find(url);
    const socket = await new Promise((resolve) => {
      const t = setInterval(() => { if (other.socket?.readyState === 1) { clearInterval(t); resolve(other.socket); } }, 20);
    });
    const theirErrors = [];
    const take = other.receiveMessage.bind(other);
    other.receiveMessage = (bytes) => {
      try {
        const m = cbor.decode(new Uint8Array(bytes));
        if (m.type === "error") theirErrors.push(m.message);
      } catch { /* as above */ }
      take(bytes);
    };
    const heard = new Promise((resolve) => theirs.on("ephemeral-message", ({ message }) => resolve(message)));
    // Sent until heard: the server relays to the second client once its
    // first sync of URL has reached the record.
    const again = setInterval(() => handle.broadcast({ said: text }), 200);
    handle.broadcast({ said: text });
    console.log(`HEARD ${JSON.stringify(await heard)}`);
    clearInterval(again);
    await new Promise((r) => setTimeout(r, 1000));
    console.log(other.socket === socket && socket.readyState === 1 ? "SAME SOCKET" : "NEW SOCKET");
    console.log(`ERRORS ${JSON.stringify(theirErrors)}`);
  } else if (mode === "read") {
    const handle = await repo.find(url);
    console.log(`DOC ${JSON.stringify(handle.doc())}`);
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  await finish(0);
} catch (e) {
  console.log(`ERROR ${e.message}`);
  await finish(1);
}
