//! Replicas of one record, as on two phones: what the record tests start from.

use automerge::ActorId;
use twinsync_shared::record::{Commit, RecordDoc};

pub fn commit(message: &str, time: i64) -> Commit {
    Commit::new(message, time)
}

/// A second replica of `doc` with its own actor, as on another phone.
pub fn fork(doc: &RecordDoc) -> RecordDoc {
    let mut other = RecordDoc::load(&doc.save()).unwrap();
    other.doc_mut().set_actor(ActorId::random());
    other
}

/// Both replicas take each other's changes.
pub fn merge(a: &mut RecordDoc, b: &mut RecordDoc) {
    a.doc_mut().merge(b.doc_mut()).unwrap();
    b.doc_mut().merge(a.doc_mut()).unwrap();
}
