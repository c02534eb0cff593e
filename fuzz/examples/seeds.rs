//! Writes the seed corpora: `cargo run --example seeds` in `fuzz/`.
//!
//! Each `corpus/<target>/` is emptied and refilled with small valid inputs,
//! named by the SHA-1 of their content as libFuzzer names what it adds.
//! `fixtures/record.automerge` (the record `sync_engine` starts from) is
//! made only if missing: the sync seeds must be exchanges with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use automerge::sync::{self, BloomFilter, ChunkList, Have, MessageVersion, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT, ReadDoc};
use sha1::{Digest, Sha1};
use twinsync_fuzz::{Auth, HttpInput, Id, ROUTES, StepFlags, join_sync_steps, join_u32};
use twinsync_shared::demo::{self, WRITTEN_AT};
use twinsync_shared::protocol::{DocSync, HeadsAt, Message, PeerMetadata, Refusal};
use twinsync_shared::record::{Commit, Edit, Kind, RecordDoc, load_document, new_document};
use twinsync_shared::{DocumentId, PeerId, StorageId};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let records = demo::build()?;
    let base = fixture(&root, &records)?;
    let data = sync_payload(&base)?;

    write(&root, "frame", frame_seeds(data))?;
    write(&root, "sync_engine", sync_seeds(&base, &records)?)?;
    write(&root, "document_load", document_seeds(&base, &records)?)?;
    write(&root, "http_api", http_seeds())?;
    Ok(())
}

/// The project record of the demo club, saved once.
fn fixture(root: &Path, records: &[demo::DemoRecord]) -> Result<Automerge, Error> {
    let path = root.join("fixtures/record.automerge");
    if !path.exists() {
        let project = records
            .iter()
            .find(|r| r.doc.kind() == Some(Kind::Project))
            .ok_or("the demo club has a project")?;
        std::fs::create_dir_all(root.join("fixtures"))?;
        std::fs::write(&path, project.doc.save())?;
    }
    Ok(load_document(&std::fs::read(&path)?)?)
}

fn write(root: &Path, target: &str, inputs: Vec<Vec<u8>>) -> Result<(), Error> {
    let dir = root.join("corpus").join(target);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let mut bytes = 0;
    for input in &inputs {
        let name: String = Sha1::digest(input)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(dir.join(name), input)?;
        bytes += input.len();
    }
    println!("{target}: {} seeds, {bytes} bytes", inputs.len());
    Ok(())
}

fn commit(message: &str) -> Commit {
    Commit::new(message, WRITTEN_AT + 86_400)
}

/// A first sync message from a peer that holds the base record.
fn sync_payload(base: &Automerge) -> Result<Vec<u8>, Error> {
    let msg = base
        .generate_sync_message(&mut sync::State::new())
        .ok_or("a fresh state has something to say")?;
    Ok(msg.encode())
}

fn frame_seeds(data: Vec<u8>) -> Vec<Vec<u8>> {
    let (phone, server) = (PeerId::from("phone-1"), PeerId::from("twinsync-server"));
    let doc = DocumentId::from_bytes([7; 16]);
    let storage = StorageId::new("3f6c1a52-0b0e-4c1f-9d1a-6f1f2b9c0d11");
    let new_heads = BTreeMap::from([(
        storage.clone(),
        HeadsAt {
            heads: vec!["2Bx5UqCwG3LxBhq9YpnjV1ukHpTFZqQ1R1rzrZSLdEqWd3BqQ".into()],
            timestamp: 1_761_832_800_123.0,
        },
    )]);
    let messages = [
        Message::Join {
            sender_id: phone.clone(),
            peer_metadata: PeerMetadata {
                storage_id: Some(storage.clone()),
                is_ephemeral: false,
                answers_pings: false,
                hears_coming: false,
            },
            supported_protocol_versions: vec!["1".into()],
        },
        Message::Peer {
            sender_id: server.clone(),
            target_id: phone.clone(),
            peer_metadata: PeerMetadata::default(),
            selected_protocol_version: "1".into(),
        },
        Message::Error {
            refusal: None,
            sender_id: server.clone(),
            target_id: phone.clone(),
            message: "refused".into(),
        },
        Message::Error {
            sender_id: server.clone(),
            target_id: phone.clone(),
            message: "your change was refused".into(),
            refusal: Some(Refusal {
                document_id: doc,
                code: "adopted".into(),
                path: "/minutes".into(),
                quarantine: Some(7),
                discarded: false,
                retry_after: None,
            }),
        },
        Message::Sync {
            sender_id: phone.clone(),
            target_id: server.clone(),
            document_id: doc,
            data: data.clone(),
        },
        Message::Request {
            sender_id: phone.clone(),
            target_id: server.clone(),
            document_id: doc,
            data,
        },
        Message::DocUnavailable {
            sender_id: server.clone(),
            target_id: phone.clone(),
            document_id: doc,
        },
        Message::Ephemeral {
            sender_id: phone.clone(),
            target_id: server.clone(),
            document_id: doc,
            session_id: "session-1".into(),
            count: 3,
            data: vec![0xa1, 0x61, 0x78, 0x01],
        },
        Message::RemoteSubscriptionChange {
            sender_id: phone.clone(),
            target_id: server.clone(),
            add: vec![storage],
            remove: vec![],
        },
        Message::RemoteHeadsChanged {
            sender_id: server,
            target_id: phone,
            document_id: doc,
            new_heads,
        },
    ];
    messages.iter().map(Message::encode).collect()
}

/// Syncs `peer` into a copy of `base` until quiet, and returns what the
/// peer sent, with `flags` on every step (plus `REQUEST` where it was one).
fn exchange(base: &Automerge, peer: &Automerge, flags: u8) -> Result<Vec<(u8, Vec<u8>)>, Error> {
    let id = DocumentId::from_bytes([7; 16]);
    let (server_id, peer_id) = (PeerId::from("server"), PeerId::from("hostile"));
    let (mut server, mut phone) = (base.clone(), peer.clone());
    let (mut server_sync, mut phone_sync) = (DocSync::new(id), DocSync::new(id));
    server_sync.add_peer(peer_id.clone(), sync::State::new());
    phone_sync.add_peer(server_id.clone(), sync::State::new());
    let mut sent = Vec::new();
    for _ in 0..20 {
        let mut said = false;
        for msg in phone_sync.generate(&phone, &peer_id) {
            if let Message::Sync { data, .. } | Message::Request { data, .. } = &msg {
                said = true;
                let request = matches!(msg, Message::Request { .. });
                // Invalid changes are still sent; that is the point.
                let _ = server_sync.receive(&mut server, &peer_id, data);
                let f = if request {
                    flags | StepFlags::REQUEST
                } else {
                    flags
                };
                sent.push((f, data.clone()));
            }
        }
        for msg in server_sync.generate(&server, &server_id) {
            if let Message::Sync { data, .. } | Message::Request { data, .. } = &msg {
                said = true;
                phone_sync.receive(&mut phone, &server_id, data)?;
            }
        }
        if !said {
            break;
        }
    }
    Ok(sent)
}

fn steps(sent: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let steps: Vec<(u8, &[u8])> = sent.iter().map(|(f, d)| (*f, d.as_slice())).collect();
    join_sync_steps(&steps)
}

fn sync_seeds(base: &Automerge, records: &[demo::DemoRecord]) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = Vec::new();
    let strict = StepFlags::STRICT;

    // A delegate's valid edits: text, a status, a new milestone.
    let mut edited = RecordDoc::from_automerge(base.fork());
    edited.edit(
        &commit("Progress"),
        &[
            Edit::SpliceText {
                path: "/objectives".into(),
                index: 0,
                delete: 0,
                insert: "Update: ".into(),
            },
            Edit::Set {
                path: "/status".into(),
                value: serde_json::json!("on_hold"),
            },
        ],
    )?;
    edited.edit(
        &commit("New milestone"),
        &[Edit::InsertItem {
            path: "/milestones".into(),
            after: Some("$end".into()),
            item: serde_json::json!({"title": "Second report", "due": "2026-12-31", "status": "pending"}),
        }],
    )?;
    let valid = exchange(base, edited.doc(), strict)?;
    out.push(steps(&valid));
    // The same, lenient, with the connection lost after the first message.
    let mut lenient: Vec<(u8, Vec<u8>)> = valid
        .iter()
        .map(|(f, d)| (f & !strict, d.clone()))
        .collect();
    if let Some(second) = lenient.get_mut(1) {
        second.0 |= StepFlags::RESET;
    }
    out.push(steps(&lenient));

    // The same changes in one bundle chunk, Automerge 0.12's compact form,
    // which a peer may send as readily as change chunks.
    let hashes = edited
        .doc()
        .get_changes(&base.get_heads())
        .into_iter()
        .map(|c| c.hash());
    let bundle = edited.doc().bundle(hashes)?;
    let bundled = sync::Message {
        heads: edited.heads(),
        need: vec![],
        have: vec![],
        changes: ChunkList::from(bundle.bytes().to_vec()),
        flags: None,
        version: MessageVersion::V1,
    };
    out.push(join_sync_steps(&[(strict, &bundled.encode())]));

    // An edit that leaves the record invalid: the strict check refuses it.
    let mut broken = base.fork();
    broken
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(ROOT, "status", 42_i64)?;
            Ok(())
        })
        .map_err(|f| f.error)?;
    out.push(steps(&exchange(base, &broken, strict)?));

    // A peer with no copy: it sends `request`, then acknowledges.
    out.push(steps(&exchange(base, &new_document(), 0)?));

    // An unrelated record's history: concurrent `kind` and `schema`.
    let meeting = records
        .iter()
        .find(|r| r.doc.kind() == Some(Kind::Meeting))
        .ok_or("the demo club has a meeting")?;
    out.push(steps(&exchange(base, meeting.doc.doc(), strict)?));

    // A change sent ahead of its dependency.
    let mut ahead = RecordDoc::from_automerge(base.fork());
    let heads = base.get_heads();
    ahead.edit(
        &commit("First"),
        &[Edit::Set {
            path: "/budget_note".into(),
            value: serde_json::json!("1"),
        }],
    )?;
    let second = ahead
        .edit(
            &commit("Second"),
            &[Edit::Set {
                path: "/budget_note".into(),
                value: serde_json::json!("2"),
            }],
        )?
        .ok_or("the edit changed something")?;
    let change = ahead
        .doc()
        .get_change_by_hash(&second)
        .ok_or("the change exists")?;
    let skipped = sync::Message {
        heads: vec![second],
        need: vec![],
        have: vec![Have {
            last_sync: heads.clone(),
            bloom: BloomFilter::default(),
        }],
        changes: ChunkList::from(vec![change.raw_bytes().to_vec()]),
        flags: None,
        version: MessageVersion::V1,
    };
    out.push(join_sync_steps(&[(0, &skipped.encode())]));

    // Bloom filters Automerge would trust: too many probes, and no bits.
    for bloom in [
        &[0x01, 0x0a, 0xc8, 0x01, 0xff, 0xff][..],
        &[0x05, 0x00, 0x07][..],
    ] {
        let msg = sync::Message {
            heads: heads.clone(),
            need: vec![],
            have: vec![Have {
                last_sync: vec![],
                bloom: BloomFilter::try_from(bloom)?,
            }],
            changes: ChunkList::from(Vec::<Vec<u8>>::new()),
            flags: None,
            version: MessageVersion::V1,
        };
        out.push(join_sync_steps(&[(0, &msg.encode())]));
    }
    Ok(out)
}

fn document_seeds(base: &Automerge, records: &[demo::DemoRecord]) -> Result<Vec<Vec<u8>>, Error> {
    let club = records
        .iter()
        .find(|r| r.doc.kind() == Some(Kind::Club))
        .ok_or("the demo club has a club record")?;
    let mut edited = RecordDoc::from_automerge(base.clone());
    edited.edit(
        &commit("Status"),
        &[Edit::Set {
            path: "/status".into(),
            value: serde_json::json!("done"),
        }],
    )?;
    let saved = base.save();
    let incremental = edited.doc().save_after(&base.get_heads());
    let hashes = edited
        .doc()
        .get_changes(&base.get_heads())
        .into_iter()
        .map(|c| c.hash());
    let bundle = edited.doc().bundle(hashes)?;
    Ok(vec![
        join_u32(&[&club.doc.save()]),
        join_u32(&[&base.save_nocompress()]),
        join_u32(&[&incremental]),
        join_u32(&[&saved, &incremental]),
        join_u32(&[&saved, bundle.bytes()]),
    ])
}

fn http_seeds() -> Vec<Vec<u8>> {
    let route = |path: &str| {
        ROUTES
            .iter()
            .position(|r| *r == path)
            .expect("a listed route")
    };
    let get = |path: &str, auth: Auth, id: Id, query: &str| HttpInput {
        post: false,
        auth,
        json: false,
        route: route(path),
        id,
        query: query.as_bytes().to_vec(),
        bad_token: Vec::new(),
        body: Vec::new(),
    };
    let post = |path: &str, auth: Auth, id: Id, body: &str| HttpInput {
        post: true,
        json: true,
        body: body.as_bytes().to_vec(),
        ..get(path, auth, id, "")
    };
    let raw = |s: &str| Id::Raw(s.as_bytes().to_vec());
    let none = Id::Known(0);
    let mut bad = get("/api/devices", Auth::Bad, none.clone(), "");
    bad.bad_token = b"2bYq3kLx9Vd.notthesecret".to_vec();
    [
        get(
            "/api/records",
            Auth::Coordinator,
            none.clone(),
            "kind=city&status=active",
        ),
        get(
            "/api/records/{id}",
            Auth::Coordinator,
            Id::Known(0),
            "at=2025-10-31",
        ),
        get(
            "/api/records/{id}",
            Auth::Delegate,
            Id::Known(1),
            "at=2025-10-30T15:00:00Z",
        ),
        get(
            "/api/records/{id}/conflicts",
            Auth::CoordinatorInQuery,
            Id::Known(2),
            "",
        ),
        get(
            "/api/records/{id}/history",
            Auth::Delegate,
            Id::Known(3),
            "",
        ),
        get(
            "/api/records/{id}",
            Auth::Coordinator,
            raw("not-a-document-id"),
            "",
        ),
        get("/api/changes", Auth::Coordinator, none.clone(), "limit=5"),
        get(
            "/api/export/agreements.csv",
            Auth::Coordinator,
            none.clone(),
            "",
        ),
        get("/api/export/projects.csv", Auth::Delegate, none.clone(), ""),
        get("/api/me", Auth::Revoked, none.clone(), ""),
        post(
            "/api/invites",
            Auth::Coordinator,
            none.clone(),
            r#"{"name":"Fuzz delegate","role":"delegate","cities":["Smara"],"valid_hours":1}"#,
        ),
        post(
            "/api/invites/redeem",
            Auth::None,
            none.clone(),
            r#"{"code":"abc.def","name":"Phone"}"#,
        ),
        bad,
        post(
            "/api/devices/{id}/revoke",
            Auth::Coordinator,
            raw("no-such-device"),
            "",
        ),
        post(
            "/api/devices/{id}",
            Auth::Coordinator,
            Id::Known(5),
            r#"{"cities":["Smara"],"person":null}"#,
        ),
        post(
            "/api/devices/{id}",
            Auth::Delegate,
            raw("no-such-device"),
            r#"{"role":"coordinator"}"#,
        ),
        get(
            "/api/quarantine",
            Auth::Coordinator,
            none.clone(),
            "status=pending",
        ),
        post(
            "/api/quarantine/{id}/accept",
            Auth::Coordinator,
            raw("1"),
            "",
        ),
        post(
            "/api/quarantine/{id}/discard",
            Auth::Coordinator,
            raw("-1"),
            "",
        ),
    ]
    .iter()
    .map(HttpInput::encode)
    .collect()
}
