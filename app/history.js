// The history of a record as its screen draws it, without the DOM (node
// tests it in tests/js/history.test.mjs): the runs of changes one line
// each, and whether others wrote in a run's fields between its changes.

export const topFields = (paths) => [...new Set(paths.map((p) => p.split("/")[1]).filter(Boolean))];

/**
 * Typing makes a change per keystroke: one line per run of changes by one
 * writer to the same fields of one record, each within five minutes of the
 * next. Others may write in between, in other fields: a change to any of a
 * run's fields by someone else (or by the same writer along with other
 * fields) ends the run, so that what a line shows changed is its writer's
 * alone. `entries` (`{id?, actor, time, hash, fields}`, fields as paths)
 * newest first; the runs come newest first, each with its newest and first
 * entries, its count and hashes, and its fields' names joined by commas.
 */
export function runsOf(entries) {
  const runs = [];
  const open = new Map();
  // The key of the open run last given each field of each record: a
  // change to the field under another key ends that run.
  const holders = new Map();
  for (const e of entries) {
    const named = topFields(e.fields ?? []);
    const fields = named.join(",");
    const key = `${e.id ?? ""}\n${e.actor ?? e.hash}\n${fields}`;
    for (const f of named) {
      const at = `${e.id ?? ""}\n${f}`;
      const holder = holders.get(at);
      if (holder !== undefined && holder !== key) open.delete(holder);
      holders.set(at, key);
    }
    const run = open.get(key);
    if (run && e.time && run.first.time && Math.abs(run.first.time - e.time) < 300) {
      run.count++;
      run.first = e;
      run.hashes.push(e.hash);
    } else {
      const fresh = { id: e.id, actor: e.actor, fields, named: new Set(named), newest: e, first: e, count: 1, hashes: [e.hash] };
      runs.push(fresh);
      open.set(key, fresh);
    }
  }
  return runs;
}

/**
 * Whether, between a run's first change and its last, a change it built on
 * that is not its own touched one of its fields. `log`: the record's
 * history entries, each with its deps.
 */
export function othersWithin(log, run) {
  const byHash = new Map(log.map((e) => [e.hash, e]));
  const ancestors = (heads) => {
    const seen = new Set();
    const stack = [...heads];
    while (stack.length) {
      const hash = stack.pop();
      if (seen.has(hash)) continue;
      seen.add(hash);
      stack.push(...(byHash.get(hash)?.deps ?? []));
    }
    return seen;
  };
  const before = ancestors(run.first.deps ?? []);
  const own = new Set(run.hashes);
  for (const hash of ancestors([run.newest.hash])) {
    if (before.has(hash) || own.has(hash)) continue;
    if (topFields(byHash.get(hash)?.fields ?? []).some((f) => run.named.has(f))) return true;
  }
  return false;
}
