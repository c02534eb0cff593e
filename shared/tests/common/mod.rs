//! What several of these test files start from.

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjType};

/// A meeting with minutes that every replica starts from. A fixed actor,
/// and Automerge's timestamps of 0, make its hash the same in every run.
pub fn meeting() -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(ActorId::from([1, 0, 0, 0]));
    let minutes = doc
        .put_object(automerge::ROOT, "minutes", ObjType::Text)
        .unwrap();
    doc.splice_text(&minutes, 0, 0, "Procès-verbal. ").unwrap();
    doc.commit();
    doc
}
