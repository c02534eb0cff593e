//! Writing the demo club into an empty database.

use twinsync_shared::demo::DemoRecord;
use twinsync_shared::record::EditError;
use twinsync_shared::{DocumentId, demo};

use crate::document::summarise;
use crate::store::{Append, Found, Store, StoreError};

/// Stores every demo record; returns how many.
pub fn demo(store: &Store) -> Result<usize, StoreError> {
    let records = made("demo", demo::build())?;
    store_as_the_servers(store, &records)?;
    Ok(records.len())
}

/// Stores the club record alone, with an empty index: without it, phones
/// would list the records they make nowhere and never see each other's.
pub fn empty_club(store: &Store) -> Result<DocumentId, StoreError> {
    let club = made("club", demo::empty_club())?;
    store_as_the_servers(store, std::slice::from_ref(&club))?;
    Ok(club.id)
}

/// Records the build made, or why it could not (`what` names them).
fn made<T>(what: &str, built: Result<T, EditError>) -> Result<T, StoreError> {
    built.map_err(|e| StoreError::Corrupt {
        doc: what.into(),
        reason: e.to_string(),
    })
}

/// Stores `records` whole, as the server's own: no device delivered them.
/// All of them or none: a club stored without the records its index lists
/// would count as seeded at the next start.
fn store_as_the_servers(store: &Store, records: &[DemoRecord]) -> Result<(), StoreError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let appends: Vec<Append> = records
        .iter()
        .map(|r| Append {
            doc: r.id,
            chunk: r.doc.doc().save(),
            summary: summarise(r.doc.doc()),
            origins: Vec::new(),
            listings: Vec::new(),
            now,
        })
        .collect();
    // One transaction: every result is the same.
    store
        .append_all(&appends)
        .into_iter()
        .try_for_each(|r| r.map(drop))
}

/// Every stored record, merged, as JSON: `[{id, url, record | errors |
/// unreadable}]`. A record damaged in storage is named with why
/// (`unreadable`) and the others are exported all the same: this is what
/// an operator turns to when something is wrong.
pub fn export(store: &Store) -> Result<serde_json::Value, StoreError> {
    let mut out = Vec::new();
    for row in store.list(None, None, None)? {
        let (id, doc) = match store.load_listed(&row.id)? {
            Found::Record(id, doc) => (id, doc),
            Found::Damaged(reason) => {
                tracing::warn!(id = %row.id, %reason, "a damaged record named, not exported");
                let url = row
                    .id
                    .parse::<DocumentId>()
                    .map(|id| id.url().to_string())
                    .ok();
                out.push(serde_json::json!({"id": row.id, "url": url, "unreadable": reason}));
                continue;
            }
        };
        let entry = match twinsync_shared::record::read_document(&doc) {
            Ok(record) => {
                serde_json::json!({"id": row.id, "url": id.url().to_string(), "record": record})
            }
            Err(errors) => {
                serde_json::json!({"id": row.id, "url": id.url().to_string(), "errors": errors})
            }
        };
        out.push(entry);
    }
    Ok(serde_json::Value::Array(out))
}
