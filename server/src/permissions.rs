//! Who may read and write which record: the club's default rules, checked
//! on every `request` and `sync` against the record as it would be after
//! the incoming changes.
//!
//! - Every member reads every record of the club; a revoked device reads
//!   nothing.
//! - A coordinator writes everything.
//! - A delegate writes their cities' records (the city itself, its people),
//!   agreements where one of their cities is a party, projects their city
//!   owns, meetings they attend or created, and reports they wrote or
//!   created; a new city, agreement, project or person must be one of
//!   theirs too. In the club record they may only list a record in the
//!   index (one they created offline): a new entry, under a record id,
//!   for a record the index never held. An entry another phone wrote at
//!   the same time is let stand as it reads.
//! - Adopted minutes and ended agreements are read-only except to
//!   coordinators.
//! - An observer writes nothing.
//!
//! The rules are checked whenever a `request` or `sync` brings changes.
//! A write must also leave the record valid: no validation error that the
//! record did not already have.

use serde_json::Value as Json;
use twinsync_shared::record::ValidationError;

use crate::auth::{Device, Role};

/// Why a write was refused: the first field at fault and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub path: String,
    pub why: Why,
}

/// The reasons a write is refused. Each has a stable code, which the
/// server sends beside its English (`protocol::Refusal`) so that the app
/// can say it in the person's language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The record would not be valid; the validation error's reason.
    Invalid(String),
    /// Values nest deeper than the server reads.
    TooDeep(usize),
    Revoked,
    Observer,
    KindChanged,
    UnknownKind,
    Adopted,
    Ended,
    /// A delegate's write to a record of this kind that is not theirs.
    NotYours(String),
    /// A delegate's write to a record that does not pass validation now:
    /// whose it is, or whether it is adopted or ended, cannot be read.
    InvalidBefore,
    ClubCreated,
    ClubBeyondIndex,
    ClubIndexRemoved,
    /// A delegate's write to a record's entry already in the club index.
    ClubIndexChanged,
    /// A delegate's listing of a record a coordinator took out of the index.
    ClubIndexRelisted,
    /// A delegate's phone sent first a record another device listed in the
    /// club's index, before that device sent it: one of another person, or
    /// of no person the server can tell is the same.
    ListedByAnother,
}

/// The code of a change refused because the record would pass its size
/// limit (checked by the document task, not here).
pub const TOO_LARGE: &str = "too-large";

/// The code of changes not accepted because storing them failed (a full
/// or failing disk); the device sends them again on reconnecting.
pub const NOT_STORED: &str = "not-stored";

pub use twinsync_shared::protocol::{TOO_MANY_OPEN, UNREADABLE};

impl Why {
    /// The code the app translates.
    pub fn code(&self) -> &'static str {
        match self {
            Why::Invalid(_) => "invalid",
            Why::TooDeep(_) => "too-deep",
            Why::Revoked => "revoked",
            Why::Observer => "observer",
            Why::KindChanged => "kind-changed",
            Why::UnknownKind => "unknown-kind",
            Why::Adopted => "adopted",
            Why::Ended => "ended",
            Why::NotYours(_) => "not-yours",
            Why::InvalidBefore => "invalid-before",
            Why::ClubCreated => "club-created",
            Why::ClubBeyondIndex => "club-beyond-index",
            Why::ClubIndexRemoved => "club-index-removed",
            Why::ClubIndexChanged => "club-index-changed",
            Why::ClubIndexRelisted => "club-index-relisted",
            Why::ListedByAnother => "listed-by-another",
        }
    }
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Invalid(reason) => write!(f, "the record would not be valid: {reason}"),
            Why::TooDeep(depth) => write!(f, "values may nest at most {depth} deep"),
            Why::Revoked => f.write_str("this device was revoked"),
            Why::Observer => f.write_str("an observer's device writes nothing"),
            Why::KindChanged => f.write_str("a record's kind cannot change"),
            Why::UnknownKind => {
                f.write_str("only a coordinator may write a record of unknown kind")
            }
            Why::Adopted => {
                f.write_str("the minutes were adopted; only a coordinator may change them")
            }
            Why::Ended => f.write_str("the agreement has ended; only a coordinator may change it"),
            Why::NotYours(kind) => {
                let what = match kind.as_str() {
                    "city" => "a city that is not yours",
                    "agreement" => "an agreement none of your cities is a party to",
                    "project" => "a project your cities do not own",
                    "meeting" => "a meeting you do not attend",
                    "person" => "a person of another city",
                    "report" => "a report you did not write",
                    _ => "a record that is not yours",
                };
                write!(f, "as a delegate, you may not write {what}")
            }
            Why::InvalidBefore => f.write_str(
                "the record does not pass validation; only a coordinator may change it until it does",
            ),
            Why::ClubCreated => f.write_str("only a coordinator may create the club record"),
            Why::ClubBeyondIndex => f.write_str(
                "in the club record, a delegate may only list a record in the index, under its id",
            ),
            Why::ClubIndexRemoved => {
                f.write_str("only a coordinator may remove a record from the club index")
            }
            Why::ClubIndexChanged => {
                f.write_str("only a coordinator may change a record's entry in the club index")
            }
            Why::ClubIndexRelisted => f.write_str(
                "only a coordinator may list again a record taken out of the club index",
            ),
            Why::ListedByAnother => f.write_str(
                "another device listed this record in the club index; only that device, or another device of the same person, may send it first",
            ),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.why)
    }
}

/// Whether `device` may read the club's records.
pub fn may_read(device: &Device) -> bool {
    !device.is_revoked()
}

/// A record as read: its JSON, or what is wrong with it.
pub type Read = Result<Json, Vec<ValidationError>>;

/// One write to judge.
#[derive(Debug)]
pub struct Write<'a> {
    pub device: &'a Device,
    /// The record's document id.
    pub doc_id: &'a str,
    /// The device that created the record (delivered its first stored
    /// changes); `None` for the server's own records and new ones, but for
    /// a record a restore took away: its creator as the database replaced
    /// had it.
    pub creator: Option<&'a str>,
    /// The record before the changes; `None` for a record new to the server.
    pub before: Option<&'a Read>,
    pub after: &'a Read,
    /// Record paths the changes touch (`/status`, `/minutes`, ...).
    pub paths: &'a [String],
    /// For a delegate's write to the club record: what its index held
    /// before the changes, asked only as the rules need it.
    pub index: Option<&'a dyn IndexHistory>,
    /// Whether a device of another person listed this record in the club's
    /// index (`Store::lister`); asked only of a delegate's first delivery
    /// of a record new to the server whose creator nothing names.
    pub listed_by_another: bool,
}

/// What the rules ask of the club's index beyond the record as read.
pub trait IndexHistory: std::fmt::Debug {
    /// Whether the index held `key` at any time before the changes judged
    /// (a coordinator may have taken it out since).
    fn listed_before(&self, key: &str) -> bool;
    /// Where the changes do more than list records (`only_listings`: each
    /// a new map at a key of the index, over no value its writer had seen,
    /// beside an entry already there only of its kind and not archived),
    /// and why; judged op by op, losing values included.
    fn beyond_listings(&self) -> Option<(String, Why)>;
}

/// Accepts the write or names the first field at fault.
pub fn check_write(w: &Write<'_>) -> Result<(), Refusal> {
    let first = || w.paths.first().cloned().unwrap_or_else(|| "/".to_owned());
    let refuse = |path: String, why: Why| Err(Refusal { path, why });
    if let Err(errors) = w.after {
        let old: &[ValidationError] = match w.before {
            Some(Err(old)) => old,
            _ => &[],
        };
        if let Some(e) = errors.iter().find(|e| !old.contains(e)) {
            return refuse(e.path.clone(), Why::Invalid(e.reason.clone()));
        }
    }
    if w.device.is_revoked() {
        return refuse(first(), Why::Revoked);
    }
    match w.device.role {
        Role::Coordinator => return Ok(()),
        Role::Observer => return refuse(first(), Why::Observer),
        Role::Delegate => {}
    }
    // Whose a record is, and whether it is adopted or ended, is read from
    // it as it stands; one that does not read as valid is a coordinator's
    // to mend first (the app offers a delegate no form for it).
    if matches!(w.before, Some(Err(_))) {
        return refuse(first(), Why::InvalidBefore);
    }
    let before = w.before.and_then(|r| r.as_ref().ok());
    let after = w.after.as_ref().ok();
    let kind = |j: Option<&Json>| j.and_then(|j| j.get("kind")?.as_str()).map(str::to_owned);
    if let (Some(b), Some(a)) = (kind(before), kind(after))
        && b != a
    {
        return refuse("/kind".into(), Why::KindChanged);
    }
    let Some(kind) = kind(after).or_else(|| kind(before)) else {
        return refuse(first(), Why::UnknownKind);
    };
    if let Some(b) = before {
        if kind == "meeting" && b.get("adopted").and_then(Json::as_bool) == Some(true) {
            return refuse(first(), Why::Adopted);
        }
        if kind == "agreement" && b.get("status").and_then(Json::as_str) == Some("ended") {
            return refuse(first(), Why::Ended);
        }
    }
    // Listed in the club's index by another person's phone, a record is
    // theirs to send first, whatever it names: a delegate following the
    // index could otherwise take its id, naming themselves in it.
    if w.before.is_none() && w.creator.is_none() && w.listed_by_another {
        return refuse(first(), Why::ListedByAnother);
    }
    if kind == "club" {
        return club_write(w, before, after);
    }
    // Meetings and reports belong to people: the device that created one
    // (or is creating it now) may write it. Cities, agreements, projects
    // and people belong to cities, even when new.
    let personal = kind == "meeting" || kind == "report";
    // A record new to the server is its sender's, unless its creator is
    // known already: one a restore took away, sent back by another phone.
    let created = match w.creator {
        Some(creator) => creator == w.device.id,
        None => w.before.is_none(),
    };
    let owns = |j: &Json| (personal && created) || owns(w.device, w.doc_id, &kind, j);
    let allowed = before.is_none_or(owns) && after.is_none_or(owns);
    if !allowed {
        return refuse(first(), Why::NotYours(kind));
    }
    Ok(())
}

/// Whether a record listed in the club's index by `lister` (a device, and
/// its person if it has one) is another person's than `device`'s: not the
/// same device, nor another phone of the same person.
pub fn listed_by_another(device: &Device, lister: &str, lister_person: Option<&str>) -> bool {
    let same_person = match (device.person.as_deref(), lister_person) {
        (Some(mine), Some(theirs)) => bare(mine) == bare(theirs),
        _ => false,
    };
    lister != device.id && !same_person
}

/// Whether a delegate's rules give them this record.
fn owns(device: &Device, doc_id: &str, kind: &str, record: &Json) -> bool {
    let text = |key: &str| record.get(key).and_then(Json::as_str);
    let mine =
        |city: Option<&str>| city.is_some_and(|c| device.cities.iter().any(|m| bare(m) == bare(c)));
    let is_me = |person: Option<&str>| {
        person.is_some_and(|p| {
            device
                .person
                .as_deref()
                .is_some_and(|me| bare(me) == bare(p))
        })
    };
    match kind {
        "city" => mine(Some(doc_id)),
        "agreement" => set(record, "parties").any(|p| mine(Some(p))),
        "project" => mine(text("owner_city")),
        "meeting" => {
            let attends = set(record, "attendees").any(|p| is_me(Some(p)));
            attends || is_me(text("chair"))
        }
        "person" => mine(text("city")) || is_me(Some(doc_id)),
        "report" => is_me(text("author")),
        _ => false,
    }
}

/// A reference without its `automerge:` prefix.
fn bare(link: &str) -> &str {
    link.strip_prefix("automerge:").unwrap_or(link)
}

/// A set field's members, whether read as an array or as a map.
fn set<'a>(record: &'a Json, key: &str) -> Box<dyn Iterator<Item = &'a str> + 'a> {
    match record.get(key) {
        Some(Json::Array(items)) => Box::new(items.iter().filter_map(Json::as_str)),
        Some(Json::Object(map)) => Box::new(map.keys().map(String::as_str)),
        _ => Box::new(std::iter::empty()),
    }
}

/// In the club record a delegate may list records in the index, and
/// nothing else: an entry under a record id the index never held. Every
/// phone follows the index, so an entry changed, put back or made up
/// would reach them all; changing or removing one is a coordinator's
/// decision. Judged on the index as read before and after, key by key,
/// whatever paths the changes name. An entry already there may be written
/// again as a listing made at the same time (two phones holding a record
/// created offline both list it, and either may win the merge), of the
/// same kind and as archived as it was.
fn club_write(w: &Write<'_>, before: Option<&Json>, after: Option<&Json>) -> Result<(), Refusal> {
    let Some(before) = before else {
        return Err(Refusal {
            path: "/".into(),
            why: Why::ClubCreated,
        });
    };
    let refuse = |path: String, why| Err(Refusal { path, why });
    if let Some(path) = w.paths.iter().find(|p| !p.starts_with("/index/")) {
        return refuse(path.clone(), Why::ClubBeyondIndex);
    }
    if let Some((path, why)) = w.index.and_then(|i| i.beyond_listings()) {
        return refuse(path, why);
    }
    let empty = serde_json::Map::new();
    let was = before
        .get("index")
        .and_then(Json::as_object)
        .unwrap_or(&empty);
    let now = after
        .and_then(|a| a.get("index"))
        .and_then(Json::as_object)
        .unwrap_or(&empty);
    let same = |a: &Json, b: &Json, key: &str| a.get(key) == b.get(key);
    for (key, entry) in was {
        let path = format!("/index/{key}");
        match now.get(key) {
            None => return refuse(path, Why::ClubIndexRemoved),
            // Only listings, op by op: one made beside this entry won the
            // merge.
            Some(new) if new != entry => {
                let listing =
                    w.index.is_some() && same(entry, new, "kind") && same(entry, new, "archived");
                if !listing {
                    return refuse(path, Why::ClubIndexChanged);
                }
            }
            Some(_) => {}
        }
    }
    for key in now.keys().filter(|k| !was.contains_key(*k)) {
        let path = format!("/index/{key}");
        // The id as every phone reads it, and no other spelling of one.
        let id = key.parse::<twinsync_shared::DocumentId>();
        if id.map(|id| id.to_string()).as_deref() != Ok(key.as_str()) {
            return refuse(path, Why::ClubBeyondIndex);
        }
        if w.index.is_some_and(|i| i.listed_before(key)) {
            return refuse(path, Why::ClubIndexRelisted);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;
    use twinsync_shared::protocol::RATE_LIMITED;

    use super::*;

    fn delegate(cities: &[&str], person: Option<&str>) -> Device {
        Device {
            id: "dev".into(),
            name: "Delegate".into(),
            role: Role::Delegate,
            cities: cities.iter().map(|c| (*c).to_owned()).collect(),
            person: person.map(str::to_owned),
            created_at: 0,
            last_seen_at: 0,
            revoked_at: None,
            rights: 0,
            changed_at: None,
        }
    }

    fn check(
        device: &Device,
        doc: &str,
        before: Option<Json>,
        after: Json,
        paths: &[&str],
    ) -> Result<(), Refusal> {
        let before = before.map(Ok);
        let after = Ok(after);
        let paths: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
        check_write(&Write {
            device,
            doc_id: doc,
            creator: Some("someone-else"),
            before: before.as_ref(),
            after: &after,
            paths: &paths,
            index: None,
            listed_by_another: false,
        })
    }

    /// One of each reason. The match has no wildcard, so a new reason
    /// does not compile until it is listed here.
    fn every_why() -> Vec<Why> {
        let all = vec![
            Why::Invalid(String::new()),
            Why::TooDeep(16),
            Why::Revoked,
            Why::Observer,
            Why::KindChanged,
            Why::UnknownKind,
            Why::Adopted,
            Why::Ended,
            Why::NotYours("city".into()),
            Why::ClubCreated,
            Why::ClubBeyondIndex,
            Why::ClubIndexRemoved,
            Why::ClubIndexChanged,
            Why::ClubIndexRelisted,
            Why::ListedByAnother,
            Why::InvalidBefore,
        ];
        for why in &all {
            match why {
                Why::Invalid(_)
                | Why::TooDeep(_)
                | Why::Revoked
                | Why::Observer
                | Why::KindChanged
                | Why::UnknownKind
                | Why::Adopted
                | Why::Ended
                | Why::NotYours(_)
                | Why::InvalidBefore
                | Why::ClubCreated
                | Why::ClubBeyondIndex
                | Why::ClubIndexRemoved
                | Why::ClubIndexChanged
                | Why::ClubIndexRelisted
                | Why::ListedByAnother => {}
            }
        }
        all
    }

    #[test]
    fn the_app_says_every_reason_in_each_of_its_three_languages() {
        let strings = include_str!("../../app/i18n.js");
        let mut codes: Vec<&str> = every_why().iter().map(Why::code).collect();
        codes.extend([
            TOO_LARGE,
            NOT_STORED,
            UNREADABLE,
            TOO_MANY_OPEN,
            RATE_LIMITED,
        ]);
        let distinct: std::collections::HashSet<&str> = codes.iter().copied().collect();
        assert_eq!(distinct.len(), codes.len(), "two reasons share a code");
        for code in codes {
            let key = format!("\"refusal.{code}\":");
            assert_eq!(strings.matches(&key).count(), 3, "{key} in app/i18n.js");
        }
    }

    #[test]
    fn a_delegate_writes_agreements_of_their_city_only() {
        let d = delegate(&["smara"], None);
        let ours = json!({"kind": "agreement", "parties": ["automerge:smara", "dakar"], "status": "signed"});
        let theirs = json!({"kind": "agreement", "parties": ["pune", "dakar"], "status": "signed"});
        assert!(check(&d, "a", Some(ours.clone()), ours, &["/status"]).is_ok());
        let e = check(&d, "b", Some(theirs.clone()), theirs, &["/status"]).unwrap_err();
        assert_eq!(e.path, "/status");
        assert_eq!(e.why, Why::NotYours("agreement".into()));
        assert!(e.to_string().contains("party"), "{e}");
    }

    /// A project of another city that fails validation now: a delegate's
    /// change that mends it and names their own city must not pass, as
    /// whose it was cannot be read from it.
    #[test]
    fn a_delegate_cannot_take_a_record_that_does_not_pass_validation() {
        let d = delegate(&["smara"], None);
        let before: Read = Err(vec![ValidationError {
            path: "/status".into(),
            code: twinsync_shared::record::Problem::NotAnOption,
            reason: "`paused` is not one of the statuses".into(),
        }]);
        let after: Read = Ok(json!({"kind": "project", "owner_city": "smara", "status": "active"}));
        let paths = vec!["/owner_city".to_owned(), "/status".to_owned()];
        let write = |device| {
            check_write(&Write {
                device,
                doc_id: "p",
                creator: Some("someone-else"),
                before: Some(&before),
                after: &after,
                paths: &paths,
                index: None,
                listed_by_another: false,
            })
        };
        let e = write(&d).unwrap_err();
        assert_eq!(e.why, Why::InvalidBefore);
        assert_eq!(e.path, "/owner_city");
        // A coordinator mends it.
        let coordinator = Device {
            role: Role::Coordinator,
            ..d.clone()
        };
        assert!(write(&coordinator).is_ok());
    }

    #[test]
    fn a_delegate_cannot_move_a_record_out_of_their_city() {
        let d = delegate(&["smara"], None);
        let before = json!({"kind": "person", "city": "smara"});
        let after = json!({"kind": "person", "city": "pune"});
        assert!(check(&d, "p", Some(before), after, &["/city"]).is_err());
    }

    #[test]
    fn ended_agreements_and_adopted_minutes_are_locked_for_delegates() {
        let d = delegate(&["smara"], Some("me"));
        let ended = json!({"kind": "agreement", "parties": ["smara"], "status": "ended"});
        let e = check(&d, "a", Some(ended.clone()), ended, &["/status"]).unwrap_err();
        assert_eq!(e.why.code(), "ended");
        assert!(e.to_string().contains("ended"), "{e}");
        let adopted = json!({"kind": "meeting", "attendees": ["me"], "adopted": true});
        let e = check(&d, "m", Some(adopted.clone()), adopted, &["/minutes"]).unwrap_err();
        assert_eq!(e.why.code(), "adopted");
        assert!(e.to_string().contains("adopted"), "{e}");
        let open = json!({"kind": "meeting", "attendees": ["me"], "adopted": false});
        assert!(check(&d, "m", Some(open.clone()), open, &["/minutes"]).is_ok());
    }

    #[test]
    fn in_the_club_record_a_delegate_only_adds_index_entries() {
        let d = delegate(&["smara"], None);
        let (x, y) = (
            twinsync_shared::DocumentId::random().to_string(),
            twinsync_shared::DocumentId::random().to_string(),
        );
        let at = |key: &str| format!("/index/{key}");
        let club =
            json!({"kind": "club", "index": {&x: {"kind": "report", "title": {"fr": "Visite"}}}});
        let with_y =
            json!({"kind": "club", "index": {&x: club["index"][&x], &y: {"kind": "meeting"}}});
        // A new entry, under a record id.
        assert!(check(&d, "c", Some(club.clone()), with_y.clone(), &[&at(&y)]).is_ok());
        // One another phone listed at the same time, written as it reads.
        assert!(check(&d, "c", Some(club.clone()), club.clone(), &[&at(&x)]).is_ok());
        let e = check(&d, "c", Some(club.clone()), club.clone(), &["/name/fr"]).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.why.code()),
            ("/name/fr", "club-beyond-index")
        );
        let gone = json!({"kind": "club", "index": {}});
        let e = check(&d, "c", Some(club.clone()), gone, &[&at(&x)]).unwrap_err();
        assert_eq!(e.why.code(), "club-index-removed");
        // Another record's entry retitled or archived.
        let mut retitled = club.clone();
        retitled["index"][&x]["title"]["fr"] = json!("Autre chose");
        let e = check(&d, "c", Some(club.clone()), retitled, &[&at(&x)]).unwrap_err();
        assert_eq!(e.why.code(), "club-index-changed");
        // A key that names no record: every phone would ask the server
        // for it. Nor another spelling of a record's id, nor one with a
        // slash, which its path would show as a field of another entry.
        for key in [
            "zzz".to_owned(),
            format!("automerge:{y}"),
            format!("{x}/junk"),
        ] {
            let mut made_up = club.clone();
            made_up["index"][&key] = json!({"kind": "meeting"});
            let e = check(&d, "c", Some(club.clone()), made_up, &[&at(&key)]).unwrap_err();
            assert_eq!(e.why.code(), "club-beyond-index", "{key}");
        }
        // What the index held before, and what the changes wrote at once.
        #[derive(Debug)]
        struct Held {
            taken_out: String,
            beyond: Option<(String, Why)>,
        }
        impl IndexHistory for Held {
            fn listed_before(&self, key: &str) -> bool {
                key == self.taken_out
            }
            fn beyond_listings(&self) -> Option<(String, Why)> {
                self.beyond.clone()
            }
        }
        let judge = |held: &Held, before: Json, after: Json, path: &str| {
            let paths = vec![path.to_owned()];
            let (before, after) = (Ok(before), Ok(after));
            check_write(&Write {
                device: &d,
                doc_id: "c",
                creator: None,
                before: Some(&before),
                after: &after,
                paths: &paths,
                index: Some(held),
                listed_by_another: false,
            })
        };
        // A record a coordinator took out, listed again.
        let held = Held {
            taken_out: y.clone(),
            beyond: None,
        };
        let e = judge(&held, club.clone(), with_y.clone(), &at(&y)).unwrap_err();
        assert_eq!(e.why.code(), "club-index-relisted");
        // Two phones listed one record at once, and the later listing won
        // the merge with the title it had read: let stand. Not as a way to
        // archive it, nor to change its kind.
        let mut relisted = club.clone();
        relisted["index"][&x]["title"]["fr"] = json!("Visite à Pune");
        let held = Held {
            taken_out: String::new(),
            beyond: None,
        };
        assert!(judge(&held, club.clone(), relisted.clone(), &at(&x)).is_ok());
        for (field, value) in [("archived", json!(true)), ("kind", json!("meeting"))] {
            let mut changed = relisted.clone();
            changed["index"][&x][field] = value;
            let e = judge(&held, club.clone(), changed, &at(&x)).unwrap_err();
            assert_eq!(e.why.code(), "club-index-changed", "{field}");
        }
        // What the ops say, though the record as read shows nothing: a
        // value planted to lose the merge.
        let held = Held {
            taken_out: String::new(),
            beyond: Some((at(&x), Why::ClubIndexChanged)),
        };
        let e = judge(&held, club.clone(), club.clone(), &at(&x)).unwrap_err();
        assert_eq!(e.why.code(), "club-index-changed");
    }

    /// A city's record link.
    fn city() -> String {
        twinsync_shared::DocumentId::random().url().to_string()
    }

    #[test]
    fn a_record_another_person_listed_is_theirs_to_send_first() {
        let me = city();
        let d = delegate(&[], Some(me.as_str()));
        // Its own device, another phone of the same person (its link
        // spelled with or without the prefix), and another person's.
        assert!(!listed_by_another(&d, "dev", None));
        assert!(!listed_by_another(&d, "tablet", Some(bare(&me))));
        assert!(listed_by_another(&d, "tablet", None));
        assert!(listed_by_another(&d, "other", Some(city().as_str())));
        assert!(listed_by_another(&delegate(&[], None), "other", None));

        // A meeting naming the sender among those who attend.
        let after: Read = Ok(json!({"kind": "meeting", "attendees": [me]}));
        let paths = vec!["/attendees".to_owned()];
        let before: Read = Ok(json!({"kind": "meeting", "attendees": [me]}));
        let write = |creator, before, listed_by_another| {
            check_write(&Write {
                device: &d,
                doc_id: "new",
                creator,
                before,
                after: &after,
                paths: &paths,
                index: None,
                listed_by_another,
            })
        };
        let e = write(None, None, true).unwrap_err();
        assert_eq!(e.why.code(), "listed-by-another");
        write(None, None, false).unwrap();
        // Once stored, or with its creator known (a restore's), the
        // listing no longer decides.
        write(None, Some(&before), true).unwrap();
        write(Some("dev"), None, true).unwrap();
    }

    #[test]
    fn a_delegate_cannot_create_an_agreement_between_other_cities() {
        let (smara, pune, dakar) = (city(), city(), city());
        let d = delegate(&[smara.as_str()], None);
        let after: Read = Ok(json!({"kind": "agreement", "parties": [pune, dakar]}));
        let paths = vec!["/parties".to_owned()];
        let write = |after: &Read| {
            check_write(&Write {
                device: &d,
                doc_id: "new",
                creator: None,
                before: None,
                after,
                paths: &paths,
                index: None,
                listed_by_another: false,
            })
        };
        let e = write(&after).unwrap_err();
        assert_eq!(e.why, Why::NotYours("agreement".into()));
        let ours: Read = Ok(json!({"kind": "agreement", "parties": [smara, dakar]}));
        assert!(write(&ours).is_ok());
        // A meeting or report they create is theirs.
        let meeting: Read = Ok(json!({"kind": "meeting", "attendees": []}));
        assert!(write(&meeting).is_ok());
        // One a restore took away, sent back by a phone, is its creator's:
        // the first to send it back does not take it.
        let sent_back = |creator| {
            check_write(&Write {
                device: &d,
                doc_id: "restored",
                creator: Some(creator),
                before: None,
                after: &meeting,
                paths: &paths,
                index: None,
                listed_by_another: false,
            })
        };
        let e = sent_back("another-phone").unwrap_err();
        assert_eq!(e.why, Why::NotYours("meeting".into()));
        assert!(sent_back(d.id.as_str()).is_ok());
    }

    #[test]
    fn observers_and_revoked_devices_write_nothing() {
        let mut o = delegate(&["smara"], None);
        o.role = Role::Observer;
        let city = json!({"kind": "city"});
        let e = check(&o, "smara", Some(city.clone()), city.clone(), &["/mayor"]).unwrap_err();
        assert_eq!((e.path.as_str(), e.why), ("/mayor", Why::Observer));
        let mut r = delegate(&["smara"], None);
        r.revoked_at = Some(1);
        let e = check(&r, "smara", Some(city.clone()), city, &["/mayor"]).unwrap_err();
        assert_eq!(e.why, Why::Revoked);
    }

    #[test]
    fn a_write_that_breaks_the_schema_is_refused_even_for_coordinators() {
        let mut c = delegate(&[], None);
        c.role = Role::Coordinator;
        let bad: Read = Err(vec![ValidationError {
            path: "/status".into(),
            code: twinsync_shared::record::Problem::NotAnOption,
            reason: "not one of the statuses".into(),
        }]);
        let before: Read = Ok(json!({"kind": "agreement"}));
        let paths = vec!["/status".to_owned()];
        let e = check_write(&Write {
            device: &c,
            doc_id: "a",
            creator: None,
            before: Some(&before),
            after: &bad,
            paths: &paths,
            index: None,
            listed_by_another: false,
        })
        .unwrap_err();
        assert_eq!(e.path, "/status");
        assert_eq!(e.why, Why::Invalid("not one of the statuses".into()));
        assert_eq!(
            e.to_string(),
            "/status: the record would not be valid: not one of the statuses"
        );
    }
}
