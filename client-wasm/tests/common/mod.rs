//! A stand-in for the server in the replica's tests: the shared sync
//! engine itself, with no network.

#![allow(clippy::unwrap_used, dead_code)] // a test panics to fail; each test uses a part

use std::collections::HashMap;

use automerge::Automerge;
use twinsync_client::replica::Replica;
use twinsync_shared::demo::DemoRecord;
use twinsync_shared::protocol::{DocSync, FrameLimit, Message, PROTOCOL_VERSION, PeerMetadata};
use twinsync_shared::record::Kind;
use twinsync_shared::{DocumentId, PeerId, StorageId};

pub const NOW: i64 = 1_790_000_000;

/// The first of the demo's `records` of `kind`.
pub fn demo_record(records: &[DemoRecord], kind: Kind) -> &DemoRecord {
    records.iter().find(|r| r.doc.kind() == Some(kind)).unwrap()
}

/// A server holding nothing yet, and a phone following `club` whose
/// `join` it has answered.
pub fn joined(club: DocumentId) -> (Server, Replica) {
    let server = Server {
        me: PeerId::new("server"),
        docs: HashMap::new(),
    };
    let mut phone = Replica::new(PeerId::new("phone"), StorageId::new("phone-storage"));
    phone.set_club(club);
    server.accept(&mut phone);
    (server, phone)
}

/// The server's copy of each record and its sync with the phone.
pub struct Server {
    pub me: PeerId,
    pub docs: HashMap<DocumentId, (Automerge, DocSync)>,
}

impl Server {
    /// Answers the phone's `join`, as on each socket it opens.
    pub fn accept(&self, phone: &mut Replica) {
        let accept = Message::Peer {
            sender_id: self.me.clone(),
            target_id: phone.peer_id().clone(),
            peer_metadata: PeerMetadata::default(),
            selected_protocol_version: PROTOCOL_VERSION.into(),
        };
        phone.receive(&accept.encode(), NOW).unwrap();
    }

    /// The phone's next socket: each record's sync with it starts afresh,
    /// and the phone's `join` is answered.
    pub fn reconnect(&mut self, phone: &mut Replica) {
        let id = phone.peer_id().clone();
        phone.disconnected();
        for (_, sync) in self.docs.values_mut() {
            sync.remove_peer(&id);
            sync.add_peer(id.clone(), Default::default());
        }
        self.accept(phone);
    }

    /// Holds `doc` as record `id`, syncing it with `phone` from a fresh state.
    pub fn hold(&mut self, phone: &PeerId, id: DocumentId, doc: Automerge) {
        let mut sync = DocSync::new(id);
        sync.add_peer(phone.clone(), Default::default());
        self.docs.insert(id, (doc, sync));
    }

    /// Handles the phone's frames: records it holds are synced, others
    /// answered `doc-unavailable`, as the real server does for a request.
    pub fn take(&mut self, phone: &PeerId, frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let mut replies = Vec::new();
        for frame in frames {
            let (document_id, data) = match Message::decode(&frame, FrameLimit::default()).unwrap()
            {
                Message::Sync {
                    document_id, data, ..
                }
                | Message::Request {
                    document_id, data, ..
                } => (document_id, data),
                other => panic!("unexpected {other:?}"),
            };
            match self.docs.get_mut(&document_id) {
                Some((doc, sync)) => {
                    sync.receive(doc, phone, &data).unwrap();
                }
                None => replies.push(
                    Message::DocUnavailable {
                        sender_id: self.me.clone(),
                        target_id: phone.clone(),
                        document_id,
                    }
                    .encode(),
                ),
            }
        }
        for (doc, sync) in self.docs.values_mut() {
            replies.extend(sync.generate(doc, &self.me).iter().map(Message::encode));
        }
        replies
    }
}

/// Exchanges frames until `done` holds; panics after a bounded number of rounds.
pub fn exchange(
    server: &mut Server,
    phone: &mut Replica,
    mut done: impl FnMut(&Server, &Replica) -> bool,
) {
    let me = phone.peer_id().clone();
    for _ in 0..50 {
        if done(server, phone) {
            return;
        }
        let replies = server.take(&me, phone.outgoing());
        for frame in replies {
            phone.receive(&frame, NOW).unwrap();
        }
    }
    panic!(
        "no agreement after 50 rounds; the phone has {} unconfirmed changes, and counts as unavailable {:?}",
        phone.unconfirmed(),
        phone.unavailable()
    );
}
