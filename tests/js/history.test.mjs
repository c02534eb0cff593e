// Unit tests for a record's history as its screen draws it
// (app/history.js): which changes share a line, and when a line's "what
// changed" must say that others wrote in between.

import { test } from "node:test";
import assert from "node:assert/strict";
import { runsOf, othersWithin } from "../../app/history.js";

/** A history entry as the client gives it: `fields` are paths. */
// Times are seconds since the epoch; 0 would be a change without one.
const change = (hash, actor, time, fields, deps = []) => ({ hash, actor, time, fields, deps });

test("one writer's keystrokes to one field within five minutes are one line", () => {
  // Newest first, as the screen reads the log.
  const runs = runsOf([
    change("a3", "A", 1160, ["/minutes"], ["a2"]),
    change("a2", "A", 1100, ["/minutes"], ["a1"]),
    change("a1", "A", 1000, ["/minutes"]),
  ]);
  assert.equal(runs.length, 1);
  assert.equal(runs[0].count, 3);
  assert.equal(runs[0].newest.hash, "a3");
  assert.equal(runs[0].first.hash, "a1");
  assert.deepEqual(runs[0].hashes, ["a3", "a2", "a1"]);
  assert.equal(runs[0].fields, "minutes");
});

test("another writer in the same field, or a long pause, starts a new line", () => {
  const between = runsOf([
    change("a2", "A", 1060, ["/minutes"], ["b1"]),
    change("b1", "B", 1030, ["/minutes/0"], ["a1"]),
    change("a1", "A", 1000, ["/minutes"]),
  ]);
  assert.deepEqual(between.map((r) => r.hashes), [["a2"], ["b1"], ["a1"]]);

  const paused = runsOf([
    change("a2", "A", 1301, ["/minutes"], ["a1"]),
    change("a1", "A", 1000, ["/minutes"]),
  ]);
  assert.deepEqual(paused.map((r) => r.hashes), [["a2"], ["a1"]]);
});

test("another writer in another field leaves the line whole", () => {
  const runs = runsOf([
    change("a2", "A", 1060, ["/minutes"], ["b1"]),
    change("b1", "B", 1030, ["/title/fr"], ["a1"]),
    change("a1", "A", 1000, ["/minutes"]),
  ]);
  assert.deepEqual(runs.map((r) => r.hashes), [["a2", "a1"], ["b1"]]);
});

/**
 * A's two keystrokes in the minutes, the second built on B's change to
 * `field`, which B made offline before A's first keystroke by B's clock
 * and A's phone received between the two. The log puts B's change before
 * A's line, so the line is whole.
 */
const receivedBetween = (field) => [
  change("a2", "A", 1060, ["/minutes"], ["a1", "b1"]),
  change("a1", "A", 1050, ["/minutes"], ["a0"]),
  change("b1", "B", 1010, [field], ["a0"]),
  change("a0", "A", 1000, ["/title/fr"]),
];

test("a line says others wrote in its field when its changes built on theirs", () => {
  const log = receivedBetween("/minutes");
  const [line] = runsOf(log);
  assert.deepEqual(line.hashes, ["a2", "a1"]);
  assert.equal(othersWithin(log, line), true);
});

test("a line says nothing of others' changes it started from or to other fields", () => {
  // B's change was there before A's first keystroke.
  const before = [
    change("a2", "A", 1060, ["/minutes"], ["a1"]),
    change("a1", "A", 1050, ["/minutes"], ["b1"]),
    change("b1", "B", 1010, ["/minutes"], []),
  ];
  assert.equal(othersWithin(before, runsOf(before)[0]), false);

  // B's change arrived in between, but in the title.
  const elsewhere = receivedBetween("/title/ar");
  const [line] = runsOf(elsewhere);
  assert.deepEqual(line.hashes, ["a2", "a1"]);
  assert.equal(othersWithin(elsewhere, line), false);
});
