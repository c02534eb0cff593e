//! Devices, invites and the quarantine of refused changes.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::Serialize;
use twinsync_shared::DocumentId;

use super::{Store, StoreError, holds_change};
use crate::auth::{Device, NewDevice, Role, Secret};

/// Why an invite could not be redeemed; the messages are what the caller sees.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error("this invite is not valid")]
    Unknown,
    #[error("this invite was already used; ask a coordinator for a new one")]
    Used,
    #[error("this invite expired; ask a coordinator for a new one")]
    Expired,
    #[error("a coordinator withdrew this invite; ask a coordinator for a new one")]
    Withdrawn,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a device's name and rights were not changed; the messages are what
/// the caller sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateRefused {
    #[error("no device `{0}`")]
    Unknown(String),
    #[error("a revoked device cannot be changed; invite its holder again")]
    Revoked,
    #[error(
        "this is the last coordinator device whose token still works: make another device a coordinator first, or nobody could manage devices"
    )]
    LastCoordinator,
    #[error("the device was changed meanwhile; try again")]
    ChangedMeanwhile,
}

/// Who makes an invite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitedBy<'a> {
    /// The server's first invite, printed at a start while no device
    /// exists: a later one, or any device made, ends it.
    Server,
    /// The operator, from the command line: to sign a coordinator in again
    /// when none can.
    Operator,
    /// A device, while it is a coordinator that is not revoked.
    Device(&'a str),
}

/// What `invites.created_by` holds for an operator's invite: not a device
/// id, which is base58 and has no parentheses.
const BY_OPERATOR: &str = "(operator)";

/// How long before the last start accepted batches are looked at again
/// by [`Store::reopen_unapplied`]: a day, for a clock set back.
const ACCEPTS_RECHECKED: i64 = 86_400;

/// An invite as created: the code is shown once and never stored.
#[derive(Debug, Clone, Serialize)]
pub struct Invite {
    pub id: String,
    pub code: String,
    pub name: String,
    pub role: Role,
    pub cities: Vec<String>,
    pub person: Option<String>,
    pub expires_at: i64,
}

/// An invite nobody has used yet, as coordinators see it: never its code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingInvite {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub cities: Vec<String>,
    pub person: Option<String>,
    /// The device that made it; `None` for the server's first invite and
    /// the operator's.
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A refused batch of changes, kept for a coordinator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quarantined {
    pub id: i64,
    pub doc_id: String,
    pub device_id: String,
    pub device_name: Option<String>,
    /// That device's role now: a name is the device's own choice (the
    /// person redeeming an invite gives it), the role the coordinator's.
    pub device_role: Option<String>,
    pub peer_id: String,
    pub hashes: Vec<String>,
    pub path: Option<String>,
    pub reason: String,
    /// `reason` as a code the app translates (`permissions::Why::code`);
    /// `None` for batches kept before codes were.
    pub code: Option<String>,
    pub received_at: i64,
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    /// For a pending batch, the other pending batches of its record that
    /// hold changes it builds on, directly or through one another, by id:
    /// it cannot apply before them, and those of them that build on none
    /// can be judged first.
    pub builds_on: Vec<i64>,
}

/// Where [`Store::quarantine`] put a refused batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// The quarantine entry.
    pub id: i64,
    /// The entry was discarded, with the changes the batch builds on: the
    /// batch is not kept again.
    pub discarded: bool,
}

impl Kept {
    fn pending(id: i64) -> Self {
        Self {
            id,
            discarded: false,
        }
    }
}

/// The discarded entry a refused batch lies behind, if each of its changes
/// was discarded or builds on one that was; see [`behind_discarded`].
fn discarded_before(conn: &Connection, refused: &Refused<'_>) -> Result<Option<i64>, StoreError> {
    behind_discarded(conn, refused.doc, refused.hashes, refused.changes)
}

/// The discarded entry of record `doc` that a batch (`hashes`, and its
/// `changes` in the order applied) lies behind, if each of its changes was
/// discarded or builds on one that was; see [`Fates::behind`].
fn behind_discarded(
    conn: &Connection,
    doc: DocumentId,
    hashes: &[String],
    changes: &[u8],
) -> Result<Option<i64>, StoreError> {
    let (fates, _) = Fates::read(conn, doc, false)?;
    if fates.discarded.is_empty() {
        return Ok(None);
    }
    Ok(fates.behind(hashes, &parsed(changes)))
}

/// A batch's changes, each with its dependencies, in the order applied;
/// `None` if they do not parse.
type Parsed = Option<Vec<(automerge::ChangeHash, Vec<automerge::ChangeHash>)>>;

fn parsed(changes: &[u8]) -> Parsed {
    twinsync_shared::record::changes_in(changes).map(|batch| {
        batch
            .iter()
            .map(|c| (c.hash(), c.deps().to_vec()))
            .collect()
    })
}

/// What one record's quarantine says of each change it holds: the first
/// discarded entry holding it (unless the record holds it since), and how many pending or accepted entries
/// hold it too. Read once, then kept up to date in memory as batches are
/// discarded, so that going over every pending batch costs one pass over
/// the record's entries rather than one per batch.
#[derive(Default)]
struct Fates {
    discarded: HashMap<automerge::ChangeHash, i64>,
    alive: HashMap<automerge::ChangeHash, usize>,
}

/// A pending entry: its id, its hashes as listed, its changes parsed.
type Pending = (i64, Vec<String>, Parsed);

impl Fates {
    /// The record's entries, and, if `with_pending`, its pending batches
    /// in the order kept.
    fn read(
        conn: &Connection,
        doc: DocumentId,
        with_pending: bool,
    ) -> Result<(Self, Vec<Pending>), StoreError> {
        let mut stmt = conn.prepare_cached(
            "SELECT id, hashes, status, CASE WHEN ?2 AND status = 'pending' THEN changes END
             FROM quarantine WHERE doc_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![doc.to_string(), with_pending], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<Vec<u8>>>(3)?,
            ))
        })?;
        let mut fates = Self::default();
        let mut pending = Vec::new();
        let doc_id = doc.to_string();
        for row in rows {
            let (id, listed, status, changes) = row?;
            let hashes = listed.split(',').filter_map(|h| h.parse().ok());
            if status == "discarded" {
                for h in hashes {
                    // One the record holds since (its device allowed it
                    // later and sent it again, or another device did) is
                    // not discarded: what builds on it is judged as any
                    // other change.
                    if !fates.discarded.contains_key(&h)
                        && !holds_change(conn, &doc_id, &h.to_string())?
                    {
                        fates.discarded.insert(h, id);
                    }
                }
            } else {
                for h in hashes {
                    *fates.alive.entry(h).or_default() += 1;
                }
            }
            if let Some(changes) = changes {
                let listed = listed.split(',').map(str::to_owned).collect();
                pending.push((id, listed, parsed(&changes)));
            }
        }
        Ok((fates, pending))
    }

    /// The discarded entry holding `hash`, unless a pending or accepted
    /// one holds it too.
    fn dead(&self, hash: &automerge::ChangeHash) -> Option<i64> {
        self.discarded
            .get(hash)
            .copied()
            .filter(|_| !self.alive.contains_key(hash))
    }

    /// The discarded entry a batch (`hashes`, and its changes parsed in
    /// the order applied) lies behind, if each of its changes was
    /// discarded or builds on one that was. A change that a pending or
    /// accepted entry holds too is not taken as discarded; changes that do
    /// not parse keep the batch.
    fn behind(&self, hashes: &[String], batch: &Parsed) -> Option<i64> {
        let batch = batch.as_ref()?;
        let mut within: HashMap<automerge::ChangeHash, i64> = HashMap::new();
        let dead = |h: &automerge::ChangeHash, within: &HashMap<_, i64>| {
            within.get(h).copied().or_else(|| self.dead(h))
        };
        let mut first = None;
        for (hash, deps) in batch {
            let id = dead(hash, &within).or_else(|| deps.iter().find_map(|d| dead(d, &within)))?;
            first.get_or_insert(id);
            within.insert(*hash, id);
        }
        let all = hashes
            .iter()
            .all(|h| h.parse().is_ok_and(|h| dead(&h, &within).is_some()));
        first.filter(|_| all)
    }

    /// Takes a pending entry's changes as discarded by it.
    fn discard(&mut self, id: i64, hashes: &[String]) {
        for h in hashes.iter().filter_map(|h| h.parse().ok()) {
            if let Some(n) = self.alive.get_mut(&h) {
                *n -= 1;
                if *n == 0 {
                    self.alive.remove(&h);
                }
            }
            let first = self.discarded.entry(h).or_insert(id);
            *first = (*first).min(id);
        }
    }
}

/// Discards the pending batches of `doc` that lie behind a discarded one,
/// until none is left (a batch can lie behind one discarded just now).
fn discard_dependents(
    conn: &Connection,
    doc: DocumentId,
    by: &str,
    now: i64,
) -> Result<(), StoreError> {
    let (mut fates, mut pending) = Fates::read(conn, doc, true)?;
    let mut gone = Vec::new();
    loop {
        let before = gone.len();
        pending.retain(|(id, hashes, batch)| {
            if fates.behind(hashes, batch).is_none() {
                return true;
            }
            fates.discard(*id, hashes);
            gone.push(*id);
            false
        });
        if gone.len() == before {
            break;
        }
    }
    let mut update = conn.prepare_cached(
        "UPDATE quarantine SET status = 'discarded', decided_by = ?2, decided_at = ?3
         WHERE id = ?1 AND status = 'pending'",
    )?;
    for id in gone {
        update.execute(params![id, by, now])?;
    }
    Ok(())
}

/// What a batch's changes depend on outside it, as the `deps` column
/// keeps it: hashes, sorted, comma-separated; none if they do not parse.
fn outside_deps(changes: &[u8]) -> String {
    let Some(batch) = twinsync_shared::record::changes_in(changes) else {
        return String::new();
    };
    let own: std::collections::HashSet<automerge::ChangeHash> =
        batch.iter().map(automerge::Change::hash).collect();
    let mut deps: Vec<String> = batch
        .iter()
        .flat_map(|c| c.deps().to_vec())
        .filter(|d| !own.contains(d))
        .map(|d| d.to_string())
        .collect();
    deps.sort_unstable();
    deps.dedup();
    deps.join(",")
}

/// Fills in `builds_on` for the pending batches among `rows`: the other
/// pending batches of the same record holding a change one of theirs
/// depends on and the record does not hold, and in turn those these build
/// on, so that a chain of batches names its first at once. A batch kept
/// before `deps` was has it worked out now, once.
fn fill_builds_on(conn: &Connection, rows: &mut [Quarantined]) -> Result<(), StoreError> {
    if !rows.iter().any(|q| q.status == "pending") {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, doc_id, hashes, deps FROM quarantine WHERE status = 'pending' ORDER BY id",
    )?;
    let mut pending = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    drop(stmt);
    for (id, _, _, deps) in &mut pending {
        if deps.is_none() {
            let changes: Vec<u8> =
                conn.query_row("SELECT changes FROM quarantine WHERE id = ?1", [*id], |r| {
                    r.get(0)
                })?;
            let found = outside_deps(&changes);
            conn.execute(
                "UPDATE quarantine SET deps = ?2 WHERE id = ?1",
                params![*id, found],
            )?;
            *deps = Some(found);
        }
    }
    // The first pending batch holding each change.
    let mut holder: HashMap<(&str, &str), i64> = HashMap::new();
    for (id, doc, hashes, _) in &pending {
        for h in hashes.split(',') {
            holder.entry((doc.as_str(), h)).or_insert(*id);
        }
    }
    // Every pending batch of the records asked about: a chain runs
    // through batches not asked about.
    let docs: std::collections::HashSet<&str> = rows
        .iter()
        .filter(|q| q.status == "pending")
        .map(|q| q.doc_id.as_str())
        .collect();
    let mut parents: HashMap<i64, Vec<i64>> = HashMap::new();
    for (id, doc, _, deps) in &pending {
        if !docs.contains(doc.as_str()) {
            continue;
        }
        let mut on = Vec::new();
        for dep in deps.as_deref().unwrap_or("").split(',') {
            let Some(&parent) = holder.get(&(doc.as_str(), dep)) else {
                continue;
            };
            if parent != *id && !holds_change(conn, doc, dep)? {
                on.push(parent);
            }
        }
        on.sort_unstable();
        on.dedup();
        parents.insert(*id, on);
    }
    for q in rows.iter_mut().filter(|q| q.status == "pending") {
        let mut on = std::collections::BTreeSet::new();
        let mut next: Vec<i64> = parents.get(&q.id).cloned().unwrap_or_default();
        while let Some(parent) = next.pop() {
            if parent != q.id && on.insert(parent) {
                next.extend(parents.get(&parent).into_iter().flatten());
            }
        }
        q.builds_on = on.into_iter().collect();
    }
    Ok(())
}

/// A refused batch without the changes `pending` holds: their hashes and
/// bytes, in the batch's order; `None` if its changes do not parse.
fn without(
    refused: &Refused<'_>,
    pending: &HashMap<String, i64>,
) -> Option<(Vec<String>, Vec<u8>)> {
    let (mut hashes, mut changes) = (Vec::new(), Vec::new());
    let mut length = 0;
    for (_, chunk) in twinsync_shared::record::chunks(refused.changes) {
        let chunk = chunk?;
        length += chunk.len();
        let hash = automerge::Change::from_bytes(chunk.to_vec())
            .ok()?
            .hash()
            .to_string();
        if !pending.contains_key(&hash) {
            hashes.push(hash);
            changes.extend_from_slice(chunk);
        }
    }
    (length == refused.changes.len()).then_some((hashes, changes))
}

/// A refused batch to store.
#[derive(Debug, Clone)]
pub struct Refused<'a> {
    pub doc: DocumentId,
    pub device_id: &'a str,
    pub peer_id: &'a str,
    pub hashes: &'a [String],
    pub changes: &'a [u8],
    pub path: Option<&'a str>,
    pub reason: &'a str,
    pub code: &'a str,
}

const DEVICE_COLUMNS: &str =
    "id, name, role, cities, person, created_at, last_seen_at, revoked_at, rights, changed_at";

/// A quarantine entry as [`quarantine_row`] reads it, without its
/// changes: a list reads no batch's blob.
const QUARANTINE_SELECT: &str = "SELECT q.id, q.doc_id, q.device_id, d.name, q.peer_id, q.hashes,
        q.path, q.reason, q.received_at, q.status, q.decided_by, q.decided_at, q.code, d.role
     FROM quarantine q LEFT JOIN devices d ON d.id = q.device_id";

fn quarantine_row(r: &Row<'_>) -> rusqlite::Result<Quarantined> {
    let hashes: String = r.get(5)?;
    Ok(Quarantined {
        id: r.get(0)?,
        doc_id: r.get(1)?,
        device_id: r.get(2)?,
        device_name: r.get(3)?,
        device_role: r.get(13)?,
        peer_id: r.get(4)?,
        hashes: hashes
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect(),
        path: r.get(6)?,
        reason: r.get(7)?,
        code: r.get(12)?,
        received_at: r.get(8)?,
        status: r.get(9)?,
        decided_by: r.get(10)?,
        decided_at: r.get(11)?,
        builds_on: Vec::new(),
    })
}

fn device_row(r: &Row<'_>) -> rusqlite::Result<(Device, Vec<u8>)> {
    let role: String = r.get(2)?;
    let cities: String = r.get(3)?;
    Ok((
        Device {
            id: r.get(0)?,
            name: r.get(1)?,
            role: role.parse().unwrap_or(Role::Observer),
            cities: serde_json::from_str(&cities).unwrap_or_default(),
            person: r.get(4)?,
            created_at: r.get(5)?,
            last_seen_at: r.get(6)?,
            revoked_at: r.get(7)?,
            rights: r.get(8)?,
            changed_at: r.get(9)?,
        },
        r.get(10)?,
    ))
}

/// Coordinators other than `id` that are not revoked and were seen since
/// `active_since`.
fn other_coordinators(conn: &Connection, id: &str, active_since: i64) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM devices
         WHERE role = 'coordinator' AND revoked_at IS NULL AND id <> ?1 AND last_seen_at >= ?2",
        params![id, active_since],
        |r| r.get(0),
    )
}

/// Device `id`, without its token's hash.
fn device_by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<Device>> {
    Ok(conn
        .query_row(
            &format!("SELECT {DEVICE_COLUMNS}, token_hash FROM devices WHERE id = ?1"),
            [id],
            device_row,
        )
        .optional()?
        .map(|(d, _)| d))
}

/// Whether device `id` is a coordinator, not revoked, and the only one
/// seen since `active_since`.
fn last_coordinator(conn: &Connection, id: &str, active_since: i64) -> rusqlite::Result<bool> {
    let role: Option<String> = conn
        .query_row(
            "SELECT role FROM devices WHERE id = ?1 AND revoked_at IS NULL",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(role.as_deref() == Some("coordinator") && other_coordinators(conn, id, active_since)? == 0)
}

/// Ends the unused invites device `id` made: it may no longer make them.
fn expire_invites_by(conn: &Connection, id: &str, now: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE invites SET expires_at = MIN(expires_at, ?2 - 1)
         WHERE created_by = ?1 AND redeemed_at IS NULL",
        params![id, now],
    )
}

/// Ends the unused invites made by nobody: those the server prints at
/// start while no device exists. Only the one printed last may make the
/// first device, and none once a device exists, however it was made: a
/// link left in an old log must not make a coordinator later.
fn expire_first_invites(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE invites SET expires_at = MIN(expires_at, ?1 - 1)
         WHERE created_by IS NULL AND redeemed_at IS NULL",
        [now],
    )
}

/// Who first listed a record in the club's index ([`Store::lister`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lister {
    pub device: String,
    pub person: Option<String>,
}

impl Store {
    /// Provisions a device and returns it with its token, shown only now.
    pub fn add_device(&self, new: &NewDevice, now: i64) -> Result<(Device, String), StoreError> {
        let secret = Secret::generate();
        let cities = serde_json::to_string(&new.cities).unwrap_or_else(|_| "[]".into());
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO devices (id, name, role, cities, person, token_hash, created_at, last_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![
                secret.id,
                new.name,
                new.role.as_str(),
                cities,
                new.person,
                secret.hash(),
                now
            ],
        )?;
        expire_first_invites(&tx, now)?;
        tx.commit()?;
        let device = Device {
            id: secret.id.clone(),
            name: new.name.clone(),
            role: new.role,
            cities: new.cities.clone(),
            person: new.person.clone(),
            created_at: now,
            last_seen_at: now,
            revoked_at: None,
            rights: 0,
            changed_at: None,
        };
        Ok((device, secret.token()))
    }

    /// The device a token names, if its secret matches; the caller checks
    /// expiry and revocation.
    pub fn device_for_token(&self, secret: &Secret) -> Result<Option<Device>, StoreError> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {DEVICE_COLUMNS}, token_hash FROM devices WHERE id = ?1"),
                [&secret.id],
                device_row,
            )
            .optional()?;
        // Compare even when the id is unknown, so timing does not tell.
        let (device, hash) = row.map_or((None, vec![0u8; 32]), |(d, h)| (Some(d), h));
        Ok(device.filter(|_| secret.matches(&hash)))
    }

    pub fn device(&self, id: &str) -> Result<Option<Device>, StoreError> {
        Ok(device_by_id(&self.conn(), id)?)
    }

    pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS}, token_hash FROM devices ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([], device_row)?;
        Ok(rows.map(|r| r.map(|(d, _)| d)).collect::<Result<_, _>>()?)
    }

    /// Every device's id, whether it is revoked, and its `rights`.
    pub fn device_rights(&self) -> Result<HashMap<String, (bool, i64)>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT id, revoked_at IS NOT NULL, rights FROM devices")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn has_devices(&self) -> Result<bool, StoreError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM devices", [], |r| r.get(0))?;
        Ok(n > 0)
    }

    /// Records that a device was seen, which keeps its token valid.
    pub fn touch_device(&self, id: &str, now: i64) -> Result<(), StoreError> {
        // A revoked device's sign-ins (it may still hand in what it holds)
        // do not keep its token alive: it lapses, as its sockets are not
        // counted as sightings either.
        self.conn().execute(
            "UPDATE devices SET last_seen_at = MAX(last_seen_at, ?2)
             WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now],
        )?;
        Ok(())
    }

    /// Records that devices connected now were seen, each at most once a
    /// minute: a socket kept open keeps its token alive as a sign-in does.
    /// Answers how many sightings it wrote.
    pub fn touch_devices(&self, ids: &[String], now: i64) -> Result<usize, StoreError> {
        let conn = self.conn();
        // Read first: a write would take SQLite's lock at every tick, a
        // read in WAL mode takes none.
        let mut stale = Vec::new();
        {
            let mut stmt = conn.prepare_cached(
                "SELECT 1 FROM devices
                 WHERE id = ?1 AND revoked_at IS NULL AND last_seen_at <= ?2 - 60",
            )?;
            for id in ids {
                if stmt.exists(params![id, now])? {
                    stale.push(id);
                }
            }
        }
        if stale.is_empty() {
            return Ok(0);
        }
        let tx = conn.unchecked_transaction()?;
        let mut touched = 0;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE devices SET last_seen_at = ?2
                 WHERE id = ?1 AND revoked_at IS NULL AND last_seen_at <= ?2 - 60",
            )?;
            for id in stale {
                touched += stmt.execute(params![id, now])?;
            }
        }
        tx.commit()?;
        Ok(touched)
    }

    /// Revokes a device; returns it, or `None` if there is no such device.
    /// The invites it made that are still unused lapse with it. With
    /// `guard`, the last coordinator seen since then may not be revoked
    /// (checked in the same transaction, so two coordinators revoking
    /// themselves at once cannot both pass).
    pub fn revoke_device(
        &self,
        id: &str,
        now: i64,
        guard: Option<i64>,
    ) -> Result<Result<Option<Device>, UpdateRefused>, StoreError> {
        {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(active_since) = guard
                && last_coordinator(&tx, id, active_since)?
            {
                return Ok(Err(UpdateRefused::LastCoordinator));
            }
            let found = tx.execute(
                "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                params![id, now],
            )?;
            // No such device made no invite: an id that is none (such as
            // what `created_by` holds for the operator's) ends nothing.
            if found > 0 {
                expire_invites_by(&tx, id, now)?;
            }
            tx.commit()?;
        }
        Ok(Ok(self.device(id)?))
    }

    /// Gives device `id` a new name, role, cities and person, which the
    /// caller checked; a change of rights is counted in `rights`. Refused
    /// for a revoked device, and for the role of the last coordinator
    /// seen since `active_since` (whose token still works), which would
    /// leave nobody to manage devices. A device that stops being a
    /// coordinator loses the invites it made that are still unused.
    ///
    /// `new` was made from `read`, the device as the caller read it; if it
    /// changed since (another request, or the command line), nothing is
    /// written and the answer is `UpdateRefused::ChangedMeanwhile`, for the
    /// caller to read it again.
    pub fn update_device(
        &self,
        read: &Device,
        new: &NewDevice,
        now: i64,
        active_since: i64,
    ) -> Result<Result<Device, UpdateRefused>, StoreError> {
        let id = read.id.as_str();
        let mut conn = self.conn();
        // Immediate: the read and the write are one, even beside a
        // command-line process writing the same database.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(old) = device_by_id(&tx, id)? else {
            return Ok(Err(UpdateRefused::Unknown(id.to_owned())));
        };
        if old.is_revoked() {
            return Ok(Err(UpdateRefused::Revoked));
        }
        if old.rights != read.rights || old.name != read.name {
            return Ok(Err(UpdateRefused::ChangedMeanwhile));
        }
        let stepping_down = old.role == Role::Coordinator && new.role != Role::Coordinator;
        if stepping_down && other_coordinators(&tx, id, active_since)? == 0 {
            return Ok(Err(UpdateRefused::LastCoordinator));
        }
        let set = |cities: &[String]| {
            let mut c = cities.to_vec();
            c.sort();
            c.dedup();
            c
        };
        let rights_changed = old.role != new.role
            || set(&old.cities) != set(&new.cities)
            || old.person != new.person;
        let cities = serde_json::to_string(&new.cities).unwrap_or_else(|_| "[]".into());
        tx.execute(
            "UPDATE devices SET name = ?2, role = ?3, cities = ?4, person = ?5,
                 rights = rights + ?6,
                 changed_at = CASE WHEN ?6 THEN ?7 ELSE changed_at END
             WHERE id = ?1",
            params![
                id,
                new.name,
                new.role.as_str(),
                cities,
                new.person,
                i64::from(rights_changed),
                now
            ],
        )?;
        if stepping_down {
            expire_invites_by(&tx, id, now)?;
        }
        tx.commit()?;
        Ok(Ok(Device {
            name: new.name.clone(),
            role: new.role,
            cities: new.cities.clone(),
            person: new.person.clone(),
            rights: old.rights + i64::from(rights_changed),
            changed_at: if rights_changed {
                Some(now)
            } else {
                old.changed_at
            },
            ..old
        }))
    }

    /// Test and operator hook: moves a device's last sighting back in time.
    pub fn set_last_seen(&self, id: &str, at: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE devices SET last_seen_at = ?2 WHERE id = ?1",
            params![id, at],
        )?;
        Ok(())
    }

    /// Creates a one-time invite valid until `expires_at`; `None` when the
    /// device making it is no longer a coordinator. The server's first
    /// invite ends the first invites before it.
    pub fn add_invite(
        &self,
        new: &NewDevice,
        by: InvitedBy<'_>,
        now: i64,
        expires_at: i64,
    ) -> Result<Option<Invite>, StoreError> {
        let secret = Secret::generate();
        let cities = serde_json::to_string(&new.cities).unwrap_or_else(|_| "[]".into());
        let created_by = match by {
            InvitedBy::Server => None,
            InvitedBy::Operator => Some(BY_OPERATOR),
            InvitedBy::Device(id) => Some(id),
        };
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if by == InvitedBy::Server {
            expire_first_invites(&tx, now)?;
        }
        // Made by a device only while it is a coordinator that is not
        // revoked, checked in the statement that stores the invite, so a
        // demotion just before cannot leave an invite behind.
        let made = tx.execute(
            "INSERT INTO invites (id, secret_hash, name, role, cities, person, created_by, created_at, expires_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9
             WHERE ?7 IS NULL OR ?7 = ?10 OR EXISTS (SELECT 1 FROM devices
                 WHERE id = ?7 AND role = 'coordinator' AND revoked_at IS NULL)",
            params![
                secret.id,
                secret.hash(),
                new.name,
                new.role.as_str(),
                cities,
                new.person,
                created_by,
                now,
                expires_at,
                BY_OPERATOR
            ],
        )?;
        tx.commit()?;
        if made == 0 {
            return Ok(None);
        }
        Ok(Some(Invite {
            id: secret.id.clone(),
            code: secret.token(),
            name: new.name.clone(),
            role: new.role,
            cities: new.cities.clone(),
            person: new.person.clone(),
            expires_at,
        }))
    }

    /// The invites that can still be redeemed at `now`, newest first.
    pub fn pending_invites(&self, now: i64) -> Result<Vec<PendingInvite>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, role, cities, person, created_by, created_at, expires_at FROM invites
             WHERE redeemed_at IS NULL AND cancelled_at IS NULL AND expires_at >= ?1
             ORDER BY created_at DESC, rowid DESC",
        )?;
        let rows = stmt.query_map([now], |r| {
            let role: String = r.get(2)?;
            let cities: String = r.get(3)?;
            let created_by: Option<String> = r.get(5)?;
            Ok(PendingInvite {
                id: r.get(0)?,
                name: r.get(1)?,
                role: role.parse().unwrap_or(Role::Observer),
                cities: serde_json::from_str(&cities).unwrap_or_default(),
                person: r.get(4)?,
                created_by: created_by.filter(|b| b != BY_OPERATOR),
                created_at: r.get(6)?,
                expires_at: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Withdraws an invite nobody has used, so that its link signs no one
    /// in; false if there is no such invite still pending.
    pub fn cancel_invite(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE invites SET cancelled_at = ?2
             WHERE id = ?1 AND redeemed_at IS NULL AND cancelled_at IS NULL AND expires_at >= ?2",
            params![id, now],
        )?;
        Ok(changed > 0)
    }

    /// Redeems an invite, once, for a new device and its token. Marking the
    /// invite used and creating the device are one transaction.
    pub fn redeem_invite(
        &self,
        code: &str,
        name: Option<&str>,
        now: i64,
    ) -> Result<(Device, String), RedeemError> {
        let secret = Secret::parse(code).ok_or(RedeemError::Unknown)?;
        let mut conn = self.conn();
        // Immediate: the invite read below is the one redeemed, whatever
        // other connection (a `device` command beside the server) writes.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        type InviteRow = (
            Vec<u8>,
            String,
            String,
            String,
            Option<String>,
            i64,
            Option<i64>,
            Option<i64>,
        );
        let row: Option<InviteRow> = tx
            .query_row(
                "SELECT secret_hash, name, role, cities, person, expires_at, redeemed_at, cancelled_at
                 FROM invites WHERE id = ?1",
                [&secret.id],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                },
            )
            .optional()
            .map_err(StoreError::from)?;
        let Some((hash, invited_name, role, cities, person, expires_at, redeemed_at, cancelled_at)) =
            row
        else {
            let _ = secret.matches(&[0u8; 32]);
            return Err(RedeemError::Unknown);
        };
        if !secret.matches(&hash) {
            return Err(RedeemError::Unknown);
        }
        if redeemed_at.is_some() {
            return Err(RedeemError::Used);
        }
        if cancelled_at.is_some() {
            return Err(RedeemError::Withdrawn);
        }
        if now > expires_at {
            return Err(RedeemError::Expired);
        }
        let device_secret = Secret::generate();
        let name = name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(&invited_name)
            .to_owned();
        tx.execute(
            "INSERT INTO devices (id, name, role, cities, person, token_hash, created_at, last_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![device_secret.id, name, role, cities, person, device_secret.hash(), now],
        )
        .map_err(StoreError::from)?;
        let redeemed = tx
            .execute(
                "UPDATE invites SET redeemed_at = ?2, device_id = ?3
                 WHERE id = ?1 AND redeemed_at IS NULL AND cancelled_at IS NULL",
                params![secret.id, now, device_secret.id],
            )
            .map_err(StoreError::from)?;
        if redeemed != 1 {
            return Err(RedeemError::Used);
        }
        expire_first_invites(&tx, now).map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        drop(conn);
        let device = self
            .device(&device_secret.id)?
            .ok_or_else(|| StoreError::Corrupt {
                doc: String::new(),
                reason: "a device vanished as it was created".into(),
            })?;
        Ok((device, device_secret.token()))
    }

    /// The device whose change first listed `doc` in the club's index, and
    /// its person, if it has one (`listings`; `None` for a record not
    /// listed, or listed by no device, such as the demo club's).
    pub fn lister(&self, doc: DocumentId) -> Result<Option<Lister>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .prepare_cached(
                "SELECT l.device, d.person FROM listings l
                 LEFT JOIN devices d ON d.id = l.device WHERE l.doc_id = ?1",
            )?
            .query_row([doc.to_string()], |r| {
                Ok(Lister {
                    device: r.get(0)?,
                    person: r.get(1)?,
                })
            })
            .optional()?)
    }

    /// The device that created a document: the one that delivered its
    /// first stored chunk. `None` for the server's own records (the demo
    /// club), whoever writes to them since, and for unknown documents; for
    /// one a restore took away, the device of its first change as the
    /// database replaced had it.
    pub fn creator_device(&self, doc: DocumentId) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        let id = doc.to_string();
        let stored: Option<Option<String>> = conn
            .query_row("SELECT creator FROM documents WHERE id = ?1", [&id], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(match stored {
            Some(creator) => creator,
            // Not stored, but a restore carried its origins: a record
            // the backup lacked, whose creator is its first change's device.
            None => super::first_origin(&conn, &id)?.flatten(),
        })
    }

    /// Keeps a refused batch for review. Changes a pending batch of the
    /// same record holds already are not kept twice: a batch holding only
    /// such changes answers with that batch, and one holding more is kept
    /// without them. A phone sends a refused change again with what it
    /// typed since, at each reconnection; a batch the coordinator is looking
    /// at never changes under them. A device's pending batches take at most
    /// `limit` bytes: every device, an observer's or a revoked one's too,
    /// can send refused changes, and none may fill the disk with them. A
    /// batch whose every change a coordinator discarded, or builds on one
    /// discarded, is not kept again: it would come back to the coordinators
    /// at each reconnection of the phone that holds it.
    pub fn quarantine(
        &self,
        refused: &Refused<'_>,
        now: i64,
        limit: u64,
    ) -> Result<Kept, StoreError> {
        let conn = self.conn();
        let existing: Option<i64> = conn
            .query_row(
                "SELECT id FROM quarantine WHERE doc_id = ?1 AND hashes = ?2 AND status = 'pending'",
                params![refused.doc.to_string(), refused.hashes.join(",")],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            return Ok(Kept::pending(id));
        }
        if let Some(id) = discarded_before(&conn, refused)? {
            return Ok(Kept {
                id,
                discarded: true,
            });
        }
        let mut stmt = conn.prepare_cached(
            "SELECT id, hashes FROM quarantine WHERE doc_id = ?1 AND status = 'pending'",
        )?;
        let rows = stmt.query_map([refused.doc.to_string()], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut pending: HashMap<String, i64> = HashMap::new();
        for row in rows {
            let (id, hashes) = row?;
            pending.extend(hashes.split(',').map(|h| (h.to_owned(), id)));
        }
        drop(stmt);
        let (hashes, changes) = match refused.hashes.iter().find_map(|h| pending.get(h)) {
            None => (refused.hashes.to_vec(), refused.changes.to_vec()),
            Some(&id) => match without(refused, &pending) {
                Some((hashes, _)) if hashes.is_empty() => return Ok(Kept::pending(id)),
                Some(rest) => rest,
                // Changes that do not parse: kept whole.
                None => (refused.hashes.to_vec(), refused.changes.to_vec()),
            },
        };
        let (batches, held): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(length(changes)), 0) FROM quarantine
             WHERE device_id = ?1 AND status = 'pending'",
            [refused.device_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (batches, held) = (batches.max(0) as u64, held.max(0) as u64);
        if held + changes.len() as u64 > limit || batches >= super::MAX_PENDING_BATCHES {
            return Err(StoreError::QuarantineFull {
                device: refused.device_id.to_owned(),
                pending: held,
                batches,
                limit,
            });
        }
        conn.execute(
            "INSERT INTO quarantine (doc_id, device_id, peer_id, hashes, changes, path, reason, code, received_at, deps)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                refused.doc.to_string(),
                refused.device_id,
                refused.peer_id,
                hashes.join(","),
                changes,
                refused.path,
                refused.reason,
                refused.code,
                now,
                outside_deps(&changes)
            ],
        )?;
        Ok(Kept::pending(conn.last_insert_rowid()))
    }

    /// Quarantined batches, pending first, newest first.
    pub fn quarantined(&self, status: Option<&str>) -> Result<Vec<Quarantined>, StoreError> {
        let conn = self.conn();
        // One status is read through its index (the app asks for the
        // pending ones), not by reading every batch ever kept.
        let mut stmt = match status {
            Some(_) => conn.prepare_cached(&format!(
                "{QUARANTINE_SELECT} WHERE q.status = ?1 ORDER BY q.id DESC"
            ))?,
            None => conn.prepare_cached(&format!(
                "{QUARANTINE_SELECT} ORDER BY q.status = 'pending' DESC, q.id DESC"
            ))?,
        };
        let mut rows = match status {
            Some(status) => stmt.query_map([status], quarantine_row)?,
            None => stmt.query_map([], quarantine_row)?,
        }
        .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        fill_builds_on(&conn, &mut rows)?;
        Ok(rows)
    }

    /// A quarantined batch and its changes.
    pub fn quarantined_changes(
        &self,
        id: i64,
    ) -> Result<Option<(Quarantined, Vec<u8>)>, StoreError> {
        let conn = self.conn();
        let found: Option<Quarantined> = conn
            .query_row(
                &format!("{QUARANTINE_SELECT} WHERE q.id = ?1"),
                [id],
                quarantine_row,
            )
            .optional()?;
        let found = match found {
            Some(entry) => Some((
                entry,
                conn.query_row("SELECT changes FROM quarantine WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?,
            )),
            None => None,
        };
        let Some((entry, changes)) = found else {
            return Ok(None);
        };
        let mut rows = [entry];
        fill_builds_on(&conn, &mut rows)?;
        let [entry] = rows;
        Ok(Some((entry, changes)))
    }

    /// Marks a pending batch accepted or discarded; false if it was not pending.
    /// A discarded batch takes with it the pending batches of the same
    /// record that build on it alone: they can never apply.
    pub fn decide(&self, id: i64, status: &str, by: &str, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE quarantine SET status = ?2, decided_by = ?3, decided_at = ?4
             WHERE id = ?1 AND status = 'pending'",
            params![id, status, by, now],
        )?;
        if n == 1 && status == "discarded" {
            let doc: String =
                tx.query_row("SELECT doc_id FROM quarantine WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?;
            if let Ok(doc) = doc.parse::<DocumentId>() {
                discard_dependents(&tx, doc, by, now)?;
            }
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Puts an accepted batch back to pending when it could not be applied.
    /// If the device sent its changes again meanwhile, alone or with what
    /// it typed since, they wait under that newer batch, and this one goes:
    /// two pending batches holding the same change would be judged twice
    /// (a discard of one, an accept of the other).
    pub fn reopen(&self, id: i64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        reopen_in(&tx, id)?;
        tx.commit()?;
        Ok(())
    }

    /// Puts back to pending every accepted batch whose changes its record
    /// does not hold, and returns their ids. An accept claims the batch,
    /// then appends its changes: a server stopped in between, or a failed
    /// append whose `reopen` failed too, would leave the batch off the
    /// review list with its changes in no record. Run at start, before any
    /// accept can be under way (`now`, the start). Only batches decided
    /// since the last start (a day before it, for a clock set back) are
    /// looked at: those before were looked at then.
    pub fn reopen_unapplied(&self, now: i64) -> Result<Vec<i64>, StoreError> {
        let accepted: Vec<(i64, String, String)> = {
            let conn = self.conn();
            let since: i64 = conn
                .query_row(
                    "SELECT value FROM meta WHERE key = 'accepts_checked_at'",
                    [],
                    |r| r.get::<_, String>(0),
                )
                .optional()?
                .and_then(|v| v.parse().ok())
                .map_or(i64::MIN, |at: i64| at.saturating_sub(ACCEPTS_RECHECKED));
            let mut stmt = conn.prepare(
                "SELECT id, doc_id, hashes FROM quarantine
                 WHERE status = 'accepted' AND decided_at >= ?1 ORDER BY id",
            )?;
            stmt.query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut reopened = Vec::new();
        for (id, doc, listed) in accepted {
            let Ok(doc) = doc.parse::<DocumentId>() else {
                continue;
            };
            let hashes: Vec<automerge::ChangeHash> =
                listed.split(',').filter_map(|h| h.parse().ok()).collect();
            if hashes.is_empty() {
                continue;
            }
            let held = self.stored_changes(doc, &hashes)?;
            if hashes.iter().any(|h| !held.contains(h)) {
                self.reopen(id)?;
                reopened.push(id);
            }
        }
        self.conn().execute(
            "INSERT INTO meta (key, value) VALUES ('accepts_checked_at', ?1)
             ON CONFLICT(key) DO UPDATE SET value = ?1",
            [now.to_string()],
        )?;
        Ok(reopened)
    }

    /// Finds city records by id or by a name in any language.
    pub fn find_city(&self, name_or_id: &str) -> Result<Vec<String>, StoreError> {
        let wanted = name_or_id.trim().to_lowercase();
        // A city's id, bare or as the `automerge:` URL records link it by.
        let id = name_or_id.trim();
        let id = id
            .strip_prefix(twinsync_shared::document_id::URL_PREFIX)
            .unwrap_or(id);
        Ok(self
            .list(Some("city"), None, None)?
            .into_iter()
            .filter(|l| {
                l.id == id
                    || l.summary.title.as_object().is_some_and(|t| {
                        t.values()
                            .filter_map(|v| v.as_str())
                            .any(|v| v.to_lowercase() == wanted)
                    })
            })
            .map(|l| l.id)
            .collect())
    }
}

/// [`Store::reopen`] within `tx`: a salvage puts back the batches it no
/// longer holds in the transaction that stops holding them.
pub(super) fn reopen_in(tx: &rusqlite::Transaction<'_>, id: i64) -> rusqlite::Result<()> {
    let own: Option<(String, String)> = tx
        .query_row(
            "SELECT doc_id, hashes FROM quarantine WHERE id = ?1 AND status = 'accepted'",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((doc, hashes)) = own else {
        return Ok(());
    };
    let listed = |hashes: &str| -> std::collections::HashSet<String> {
        hashes
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let wanted = listed(&hashes);
    let covered = {
        let mut stmt = tx.prepare(
            "SELECT hashes FROM quarantine WHERE doc_id = ?1 AND status = 'pending' AND id != ?2",
        )?;
        let pending = stmt.query_map(params![doc, id], |r| r.get::<_, String>(0))?;
        let mut covered = false;
        for other in pending {
            if wanted.is_subset(&listed(&other?)) {
                covered = true;
                break;
            }
        }
        covered
    };
    if covered {
        tx.execute("DELETE FROM quarantine WHERE id = ?1", [id])?;
    } else {
        tx.execute(
            "UPDATE quarantine SET status = 'pending', decided_by = NULL, decided_at = NULL
                 WHERE id = ?1",
            [id],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;

    fn coordinator(store: &Store, name: &str) -> Device {
        let new = NewDevice {
            name: name.into(),
            role: Role::Coordinator,
            cities: Vec::new(),
            person: None,
        };
        store.add_device(&new, 100).unwrap().0
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("twinsync.db")).unwrap();
        (dir, store)
    }

    /// The ids of the quarantined batches with `status`.
    fn batches(store: &Store, status: &str) -> Vec<i64> {
        store
            .quarantined(Some(status))
            .unwrap()
            .iter()
            .map(|q| q.id)
            .collect()
    }

    /// A phone's changes to `doc` refused for a status it may not set.
    fn refused<'a>(doc: DocumentId, hashes: &'a [String], changes: &'a [u8]) -> Refused<'a> {
        Refused {
            doc,
            device_id: "phone",
            peer_id: "peer",
            hashes,
            changes,
            path: Some("/status"),
            reason: "not yours",
            code: "not-yours",
        }
    }

    /// A revoked device signing in to hand in what it holds is not seen:
    /// its token lapses `token_ttl` after it was last seen before.
    #[test]
    fn a_revoked_devices_sign_ins_do_not_keep_its_token_alive() {
        let (_dir, store) = store();
        let amina = coordinator(&store, "Amina");
        let phone = coordinator(&store, "Phone");
        store.touch_device(&phone.id, 200).unwrap();
        assert_eq!(store.device(&phone.id).unwrap().unwrap().last_seen_at, 200);
        store
            .revoke_device(&phone.id, 300, None)
            .unwrap()
            .unwrap()
            .unwrap();
        store.touch_device(&phone.id, 400).unwrap();
        assert_eq!(store.device(&phone.id).unwrap().unwrap().last_seen_at, 200);
        store.touch_device(&amina.id, 400).unwrap();
        assert_eq!(store.device(&amina.id).unwrap().unwrap().last_seen_at, 400);
    }

    #[test]
    fn a_batch_reopened_after_its_changes_were_sent_again_leaves_one_pending() {
        let (_dir, store) = store();
        let doc = DocumentId::random();
        let hashes = vec!["h1".to_owned()];
        let refused = refused(doc, &hashes, b"changes");
        let first = store.quarantine(&refused, 100, 1 << 20).unwrap().id;
        assert!(store.decide(first, "accepted", "coordinator", 101).unwrap());
        // Sent again while the accept is being applied: a new pending batch.
        let again = store.quarantine(&refused, 102, 1 << 20).unwrap().id;
        assert_ne!(again, first);
        // The apply failed: the changes wait once, under the newer batch.
        store.reopen(first).unwrap();
        assert_eq!(batches(&store, "pending"), vec![again]);
        assert!(store.quarantined_changes(first).unwrap().is_none());
        // Without a twin, a reopened batch is pending again.
        assert!(store.decide(again, "accepted", "coordinator", 103).unwrap());
        store.reopen(again).unwrap();
        assert_eq!(batches(&store, "pending"), vec![again]);
        // Sent again with what the phone typed since: the newer batch
        // holds it all, and the one reopened goes.
        assert!(store.decide(again, "accepted", "coordinator", 104).unwrap());
        let more = vec!["h1".to_owned(), "h2".to_owned()];
        let typed_on = store
            .quarantine(
                &Refused {
                    hashes: &more,
                    changes: b"changes and more",
                    ..refused
                },
                105,
                1 << 20,
            )
            .unwrap()
            .id;
        store.reopen(again).unwrap();
        assert_eq!(batches(&store, "pending"), vec![typed_on]);
    }

    /// A device sending batch after tiny refused batch fills its share of
    /// the quarantine by their number, long before their bytes; another
    /// device's refused changes are still kept.
    #[test]
    fn the_quarantine_keeps_a_bounded_number_of_one_devices_batches() {
        let (_dir, store) = store();
        let doc = DocumentId::random();
        let hashes = |n: u64| vec![format!("h{n}")];
        use crate::store::MAX_PENDING_BATCHES;
        for n in 0..MAX_PENDING_BATCHES - 1 {
            store
                .quarantine(&refused(doc, &hashes(n), b"x"), 100, 1 << 20)
                .unwrap();
        }
        let last = hashes(MAX_PENDING_BATCHES - 1);
        let kept = store.quarantine(&refused(doc, &last, b"x"), 100, 1 << 20);
        assert!(!kept.unwrap().discarded);
        let over = hashes(MAX_PENDING_BATCHES);
        let err = store
            .quarantine(&refused(doc, &over, b"x"), 100, 1 << 20)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::QuarantineFull { batches, .. } if batches == MAX_PENDING_BATCHES),
            "{err}"
        );
        assert!(!err.is_storage_failure());
        // Sent again, a batch already kept is still found.
        assert!(
            store
                .quarantine(&refused(doc, &last, b"x"), 100, 1 << 20)
                .is_ok()
        );
        let other = Refused {
            device_id: "tablet",
            ..refused(doc, &over, b"x")
        };
        assert!(store.quarantine(&other, 100, 1 << 20).is_ok());
    }

    #[test]
    fn accepted_batches_decided_well_before_the_last_start_are_not_looked_at_again() {
        let (_dir, store) = store();
        let doc = DocumentId::random();
        let hashes = vec!["ef".repeat(32)];
        let id = store
            .quarantine(&refused(doc, &hashes, b"old"), 100, 1 << 20)
            .unwrap()
            .id;
        // Looked at a day and more after its decision, as if applied.
        assert!(store.decide(id, "accepted", "coordinator", 101).unwrap());
        assert_eq!(store.reopen_unapplied(101).unwrap(), vec![id]);
        assert!(store.decide(id, "accepted", "coordinator", 101).unwrap());
        assert_eq!(
            store.reopen_unapplied(101 + ACCEPTS_RECHECKED + 1).unwrap(),
            vec![id],
            "decided within a day of the last start: looked at again"
        );
        assert!(store.decide(id, "accepted", "coordinator", 101).unwrap());
        assert_eq!(
            store
                .reopen_unapplied(101 + 2 * ACCEPTS_RECHECKED + 3)
                .unwrap(),
            Vec::<i64>::new(),
            "decided over a day before the last start"
        );
    }

    #[test]
    fn an_accepted_batch_its_record_lacks_is_pending_again_at_start() {
        let (_dir, store) = store();
        let doc = DocumentId::random();
        let (applied, lost) = ("ab".repeat(32), "cd".repeat(32));
        let applied_hashes = vec![applied.clone()];
        let lost_hashes = vec![applied.clone(), lost];
        let one = store
            .quarantine(&refused(doc, &applied_hashes, b"one"), 100, 1 << 20)
            .unwrap()
            .id;
        let two = store
            .quarantine(&refused(doc, &lost_hashes, b"two"), 100, 1 << 20)
            .unwrap()
            .id;
        assert!(store.decide(one, "accepted", "coordinator", 101).unwrap());
        assert!(store.decide(two, "accepted", "coordinator", 101).unwrap());
        // The first batch's change reached the record; the second's
        // second change did not: the server stopped before its append.
        store
            .conn()
            .execute(
                "INSERT INTO change_origins (hash, doc_id, peer_id, device, received_at)
                 VALUES (?1, ?2, 'peer', 'phone', 101)",
                params![applied, doc.to_string()],
            )
            .unwrap();
        assert_eq!(store.reopen_unapplied(200).unwrap(), vec![two]);
        assert_eq!(batches(&store, "pending"), vec![two]);
        assert_eq!(batches(&store, "accepted"), vec![one]);
        // Nothing more to do the next time.
        assert_eq!(store.reopen_unapplied(200).unwrap(), Vec::<i64>::new());
    }

    /// A phone sends a refused change again with what it typed since: the
    /// batch is kept without what a pending batch holds, so the one a
    /// coordinator is looking at never changes. Discarded, a change and
    /// what builds on it are not kept again; a change of its own is.
    #[test]
    fn a_batch_is_kept_without_what_a_pending_one_holds_nor_what_was_discarded() {
        use automerge::transaction::Transactable;

        let (_dir, store) = store();
        let doc = DocumentId::random();
        let mut phone = automerge::AutoCommit::new();
        let mut chain = Vec::new();
        for i in 0..5i64 {
            phone.put(automerge::ROOT, "status", i).unwrap();
            chain.push(phone.commit().unwrap());
        }
        let mut other = automerge::AutoCommit::new();
        other.put(automerge::ROOT, "x", 1).unwrap();
        let x = other.commit().unwrap();
        let bytes = |doc: &mut automerge::AutoCommit, hashes: &[automerge::ChangeHash]| {
            hashes
                .iter()
                .flat_map(|h| doc.get_change_by_hash(h).unwrap().raw_bytes().to_vec())
                .collect::<Vec<u8>>()
        };
        let keep = |hashes: &[automerge::ChangeHash], from: &mut automerge::AutoCommit, limit| {
            let changes = bytes(from, hashes);
            let hashes: Vec<String> = hashes.iter().map(ToString::to_string).collect();
            store.quarantine(&refused(doc, &hashes, &changes), 100, limit)
        };
        let first = keep(&chain[..1], &mut phone, 1 << 20).unwrap();
        assert!(!first.discarded);
        let later = keep(&chain[..3], &mut phone, 1 << 20).unwrap();
        assert_ne!(later.id, first.id);
        let (row, changes) = store.quarantined_changes(later.id).unwrap().unwrap();
        let expected: Vec<String> = chain[1..3].iter().map(ToString::to_string).collect();
        assert_eq!(row.hashes, expected);
        assert_eq!(changes, bytes(&mut phone, &chain[1..3]));
        // It builds on the first, still pending, which builds on nothing.
        assert_eq!(row.builds_on, vec![first.id]);
        let listed = store.quarantined(Some("pending")).unwrap();
        let on: Vec<(i64, Vec<i64>)> = listed.iter().map(|q| (q.id, q.builds_on.clone())).collect();
        assert_eq!(on, vec![(later.id, vec![first.id]), (first.id, vec![])]);
        // A chain: a third batch names the second, and the first through
        // it, so the one to judge first is named at once. (Taken out
        // again: what follows starts from two batches.)
        let third = keep(&chain[..4], &mut phone, 1 << 20).unwrap();
        let (row, _) = store.quarantined_changes(third.id).unwrap().unwrap();
        assert_eq!(row.builds_on, vec![first.id, later.id]);
        store
            .conn()
            .execute("DELETE FROM quarantine WHERE id = ?1", [third.id])
            .unwrap();
        // A batch kept before `deps` was: worked out when first needed.
        store
            .conn()
            .execute("UPDATE quarantine SET deps = NULL", [])
            .unwrap();
        let (row, _) = store.quarantined_changes(later.id).unwrap().unwrap();
        assert_eq!(row.builds_on, vec![first.id]);
        // What the record holds is no batch's to wait on, even one pending.
        store
            .conn()
            .execute(
                "INSERT INTO change_origins (hash, doc_id, peer_id, device, received_at)
                 VALUES (?1, ?2, 'peer', 'phone', 100)",
                params![chain[0].to_string(), doc.to_string()],
            )
            .unwrap();
        let (row, _) = store.quarantined_changes(later.id).unwrap().unwrap();
        assert!(row.builds_on.is_empty(), "{row:?}");
        store
            .conn()
            .execute("DELETE FROM change_origins", [])
            .unwrap();
        // Held already: the batch that holds the first of them.
        assert_eq!(keep(&chain[..2], &mut phone, 1 << 20).unwrap(), first);
        // The limit counts what is kept.
        let held = bytes(&mut phone, &chain[..3]).len() as u64;
        let next = bytes(&mut phone, &chain[3..4]).len() as u64;
        assert!(matches!(
            keep(&chain[..4], &mut phone, held + next - 1),
            Err(StoreError::QuarantineFull { .. })
        ));
        assert_eq!(store.quarantined(Some("pending")).unwrap().len(), 2);

        // Discarded: it, and everything that builds on it, stays out; the
        // batch typed on it goes with it, as it can never apply.
        assert!(
            store
                .decide(first.id, "discarded", "coordinator", 101)
                .unwrap()
        );
        assert!(store.quarantined(Some("pending")).unwrap().is_empty());
        let (row, _) = store.quarantined_changes(later.id).unwrap().unwrap();
        assert_eq!(row.status, "discarded");
        let again = keep(&chain, &mut phone, 1 << 20).unwrap();
        assert_eq!(
            again,
            Kept {
                id: first.id,
                discarded: true
            }
        );
        assert!(store.quarantined(Some("pending")).unwrap().is_empty());
        let own = keep(&[x], &mut other, 1 << 20).unwrap();
        assert!(!own.discarded && own.id != later.id);
        let (row, _) = store.quarantined_changes(own.id).unwrap().unwrap();
        assert!(row.builds_on.is_empty());

        // The discarded changes stored since (their device allowed them
        // later, and sent them again): what builds on them is kept.
        for hash in &chain[..3] {
            store
                .conn()
                .execute(
                    "INSERT INTO change_origins (hash, doc_id, peer_id, device, received_at)
                     VALUES (?1, ?2, 'peer', 'phone', 102)",
                    params![hash.to_string(), doc.to_string()],
                )
                .unwrap();
        }
        let built_on = keep(&chain[3..], &mut phone, 1 << 20).unwrap();
        assert!(!built_on.discarded, "{built_on:?}");
        assert_eq!(
            store.quarantined(Some("pending")).unwrap().len(),
            2,
            "kept for review"
        );
    }

    /// Batches that lie behind a discarded one through others kept after
    /// them go too, whatever order they were kept in.
    #[test]
    fn a_discard_takes_every_batch_behind_it_kept_in_any_order() {
        use automerge::transaction::Transactable;

        let (_dir, store) = store();
        let doc = DocumentId::random();
        let mut phone = automerge::AutoCommit::new();
        let mut chain = Vec::new();
        for i in 0..4i64 {
            phone.put(automerge::ROOT, "status", i).unwrap();
            chain.push(phone.commit().unwrap());
        }
        let mut keep = |i: usize| {
            let changes = phone
                .get_change_by_hash(&chain[i])
                .unwrap()
                .raw_bytes()
                .to_vec();
            let hashes = vec![chain[i].to_string()];
            store
                .quarantine(&refused(doc, &hashes, &changes), 100, 1 << 20)
                .unwrap()
                .id
        };
        // The last change first: each batch lies behind one kept after it.
        let ids: Vec<i64> = [0, 3, 2, 1].into_iter().map(&mut keep).collect();
        assert_eq!(store.quarantined(Some("pending")).unwrap().len(), 4);
        assert!(
            store
                .decide(ids[0], "discarded", "coordinator", 101)
                .unwrap()
        );
        assert!(store.quarantined(Some("pending")).unwrap().is_empty());
        for id in ids {
            let (row, _) = store.quarantined_changes(id).unwrap().unwrap();
            assert_eq!(row.status, "discarded", "{row:?}");
        }
    }

    fn renamed(d: &Device, name: &str) -> NewDevice {
        NewDevice {
            name: name.into(),
            role: d.role,
            cities: d.cities.clone(),
            person: d.person.clone(),
        }
    }

    #[test]
    fn a_change_made_from_a_stale_read_is_refused_not_written() {
        let (_dir, store) = store();
        let read = coordinator(&store, "laptop");
        let _other = coordinator(&store, "desk");
        // Two requests read the device; the first demotes it.
        let demoted = NewDevice {
            role: Role::Observer,
            ..renamed(&read, "laptop")
        };
        let first = store.update_device(&read, &demoted, 200, 0).unwrap();
        assert_eq!(first.unwrap().rights, 1);
        // The second, renaming it from what it read, would have written the
        // coordinator's role back.
        let second = store
            .update_device(&read, &renamed(&read, "old laptop"), 201, 0)
            .unwrap();
        assert_eq!(second, Err(UpdateRefused::ChangedMeanwhile));
        let now = store.device(&read.id).unwrap().unwrap();
        assert_eq!((now.role, now.name.as_str()), (Role::Observer, "laptop"));
    }

    fn first(store: &Store, now: i64) -> Invite {
        let new = NewDevice {
            name: "First coordinator".into(),
            role: Role::Coordinator,
            cities: Vec::new(),
            person: None,
        };
        store
            .add_invite(&new, InvitedBy::Server, now, now + 3600)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn only_the_last_first_invite_works_and_none_once_a_device_exists() {
        let (_dir, store) = store();
        // Printed at one start, then at the next, before anyone used it.
        let old = first(&store, 100);
        let last = first(&store, 110);
        assert!(matches!(
            store.redeem_invite(&old.code, None, 120),
            Err(RedeemError::Expired)
        ));
        // An invite a coordinator makes is not the server's first.
        let (laptop, _) = store.redeem_invite(&last.code, None, 120).unwrap();
        let made = store
            .add_invite(
                &renamed(&laptop, "phone"),
                InvitedBy::Device(&laptop.id),
                130,
                3600,
            )
            .unwrap()
            .unwrap();
        // A first invite made while devices exist (the server printed it
        // just before a device was made) lapses with the next device.
        let stray = first(&store, 140);
        store.redeem_invite(&made.code, None, 150).unwrap();
        assert!(matches!(
            store.redeem_invite(&stray.code, None, 160),
            Err(RedeemError::Expired)
        ));
        // So does one when the operator adds a device by hand.
        let stray = first(&store, 170);
        coordinator(&store, "desk");
        assert!(matches!(
            store.redeem_invite(&stray.code, None, 180),
            Err(RedeemError::Expired)
        ));
    }

    #[test]
    fn two_coordinators_revoking_themselves_leave_one() {
        let (_dir, store) = store();
        let a = coordinator(&store, "a");
        let b = coordinator(&store, "b");
        assert!(store.revoke_device(&a.id, 300, Some(0)).unwrap().is_ok());
        assert_eq!(
            store.revoke_device(&b.id, 300, Some(0)).unwrap(),
            Err(UpdateRefused::LastCoordinator)
        );
        // The operator, from the command line, is not held back.
        let revoked = store.revoke_device(&b.id, 301, None).unwrap().unwrap();
        assert_eq!(revoked.unwrap().revoked_at, Some(301));
    }
}
