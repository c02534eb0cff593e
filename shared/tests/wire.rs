//! The automerge-repo protocol v1 wire codec, tested from outside the crate:
//! property round trips of every message; random, mutated and truncated
//! frames that must never panic nor decode; absurd CBOR lengths; the exact
//! [`DecodeError`] for each kind of bad frame; frames written by hand the way
//! the JavaScript client (cbor-x) writes them; and deeply nested unknown
//! values that must be skipped without overflowing the stack.

#![allow(clippy::unwrap_used)] // a test panics to fail

use std::collections::BTreeMap;

use proptest::prelude::*;
use twinsync_shared::protocol::{
    DecodeError, FrameLimit, HeadsAt, MAX_LIST_ENTRIES, Message, PeerMetadata, Refusal,
};
use twinsync_shared::{DocumentId, IdError, PeerId, StorageId};

// ---- CBOR written by hand ------------------------------------------------

/// The head of a CBOR item: major type and argument, in the shortest form.
fn head(major: u8, n: u64) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=0xff => vec![m | 24, n as u8],
        0x100..=0xffff => [vec![m | 25], (n as u16).to_be_bytes().to_vec()].concat(),
        0x1_0000..=0xffff_ffff => [vec![m | 26], (n as u32).to_be_bytes().to_vec()].concat(),
        _ => [vec![m | 27], n.to_be_bytes().to_vec()].concat(),
    }
}
fn text(s: &str) -> Vec<u8> {
    [head(3, s.len() as u64), s.as_bytes().to_vec()].concat()
}
fn bytes(b: &[u8]) -> Vec<u8> {
    [head(2, b.len() as u64), b.to_vec()].concat()
}
fn array(items: &[Vec<u8>]) -> Vec<u8> {
    [head(4, items.len() as u64), items.concat()].concat()
}
fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let body: Vec<u8> = entries
        .iter()
        .flat_map(|(k, v)| [text(k), v.clone()].concat())
        .collect();
    [head(5, entries.len() as u64), body].concat()
}
/// What cbor-x writes for a property set to `undefined` (simple value 23).
const UNDEFINED: u8 = 0xf7;
const TRUE: u8 = 0xf5;

fn doc() -> DocumentId {
    DocumentId::from_bytes(*b"\x11\x22\x33\x44\x55\x66\x47\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x00")
}

/// The fields of a valid `sync`, in the order automerge-repo writes them.
fn sync_fields() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("type", text("sync")),
        ("senderId", text("client")),
        ("targetId", text("server")),
        ("documentId", text(&doc().to_string())),
        ("data", bytes(&[1, 2, 3])),
    ]
}
fn sync_message() -> Message {
    Message::Sync {
        sender_id: PeerId::from("client"),
        target_id: PeerId::from("server"),
        document_id: doc(),
        data: vec![1, 2, 3],
    }
}
/// `sync_fields` with the value of `key` replaced, or removed if `None`.
fn sync_with(key: &str, value: Option<Vec<u8>>) -> Vec<u8> {
    let mut fields = sync_fields();
    let i = fields
        .iter()
        .position(|(k, _)| *k == key)
        .expect("a sync field");
    match value {
        Some(v) => fields[i].1 = v,
        None => drop(fields.remove(i)),
    }
    map(&fields)
}
fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
    Message::decode(frame, FrameLimit::default())
}
fn err(frame: &[u8]) -> DecodeError {
    decode(frame).expect_err("the frame must not decode")
}

// ---- Arbitrary messages --------------------------------------------------

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{0,24}",
        "[ء-ي ]{1,16}",
        "[😀-🙏🎉✨]{1,8}",
        "[a-zء-ي😀-🙏-]{0,20}",
        Just("نادي-🎉-club".to_owned()),
        any::<String>(),
    ]
}
fn peer() -> impl Strategy<Value = PeerId> {
    name().prop_map(PeerId::new)
}
fn storage() -> impl Strategy<Value = StorageId> {
    name().prop_map(StorageId::new)
}
fn document() -> impl Strategy<Value = DocumentId> {
    any::<[u8; 16]>().prop_map(DocumentId::from_bytes)
}
fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..4096)
}
fn metadata() -> impl Strategy<Value = PeerMetadata> {
    let fields = (
        prop::option::of(storage()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    );
    fields.prop_map(
        |(storage_id, is_ephemeral, answers_pings, hears_coming)| PeerMetadata {
            storage_id,
            is_ephemeral,
            answers_pings,
            hears_coming,
        },
    )
}
/// Every timestamp but NaN, which is not equal to itself.
fn timestamp() -> impl Strategy<Value = f64> {
    use prop::num::f64::{INFINITE, NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        (0u64..1 << 53).prop_map(|ms| ms as f64),
        POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO | INFINITE,
    ]
}
fn new_heads() -> impl Strategy<Value = BTreeMap<StorageId, HeadsAt>> {
    let heads = prop::collection::vec("[1-9A-HJ-NP-Za-km-z]{40,50}", 0..4);
    let at = (heads, timestamp()).prop_map(|(heads, timestamp)| HeadsAt { heads, timestamp });
    prop::collection::btree_map(storage(), at, 0..4)
}
/// Boxed, as the strategies of `message` nested unboxed overflow a test
/// thread's stack in a debug build.
fn refusal() -> BoxedStrategy<Refusal> {
    let quarantine = prop::option::of(any::<u64>());
    let retry_after = prop::option::of(any::<u64>());
    (
        document(),
        name(),
        name(),
        quarantine,
        any::<bool>(),
        retry_after,
    )
        .prop_map(
            |(document_id, code, path, quarantine, discarded, retry_after)| Refusal {
                document_id,
                code,
                path,
                quarantine,
                discarded,
                retry_after,
            },
        )
        .boxed()
}

fn message() -> impl Strategy<Value = Message> {
    let versions = prop::collection::vec(name(), 0..4);
    let storages = || prop::collection::vec(storage(), 0..4);
    prop_oneof![
        (peer(), metadata(), versions).prop_map(|(sender_id, peer_metadata, v)| Message::Join {
            sender_id,
            peer_metadata,
            supported_protocol_versions: v,
        }),
        (peer(), peer(), metadata(), name()).prop_map(|(s, t, m, v)| Message::Peer {
            sender_id: s,
            target_id: t,
            peer_metadata: m,
            selected_protocol_version: v,
        }),
        (peer(), peer(), name(), prop::option::of(refusal())).prop_map(
            |(s, t, message, refusal)| Message::Error {
                sender_id: s,
                target_id: t,
                message,
                refusal,
            }
        ),
        (peer(), peer(), document(), data()).prop_map(|(s, t, d, data)| Message::Sync {
            sender_id: s,
            target_id: t,
            document_id: d,
            data,
        }),
        (peer(), peer(), document(), data()).prop_map(|(s, t, d, data)| Message::Request {
            sender_id: s,
            target_id: t,
            document_id: d,
            data,
        }),
        (peer(), peer(), document()).prop_map(|(s, t, d)| Message::DocUnavailable {
            sender_id: s,
            target_id: t,
            document_id: d,
        }),
        (peer(), peer(), document(), name(), any::<u64>(), data()).prop_map(
            |(s, t, d, session_id, count, data)| Message::Ephemeral {
                sender_id: s,
                target_id: t,
                document_id: d,
                session_id,
                count,
                data,
            }
        ),
        (peer(), peer(), storages(), storages()).prop_map(|(s, t, add, remove)| {
            Message::RemoteSubscriptionChange {
                sender_id: s,
                target_id: t,
                add,
                remove,
            }
        }),
        (peer(), peer(), document(), new_heads()).prop_map(|(s, t, d, new_heads)| {
            Message::RemoteHeadsChanged {
                sender_id: s,
                target_id: t,
                document_id: d,
                new_heads,
            }
        }),
        (peer(), peer()).prop_map(|(s, t)| Message::Ping {
            sender_id: s,
            target_id: t,
        }),
        (peer(), peer()).prop_map(|(s, t)| Message::Pong {
            sender_id: s,
            target_id: t,
        }),
        (peer(), peer(), any::<u64>()).prop_map(|(s, t, bytes)| Message::Coming {
            sender_id: s,
            target_id: t,
            bytes,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_message_round_trips(msg in message()) {
        prop_assert_eq!(decode(&msg.encode()), Ok(msg));
    }

    #[test]
    fn random_bytes_never_panic(frame in prop::collection::vec(any::<u8>(), 0..2048)) {
        // Ok or Err, both are fine; a panic fails the test.
        let _ = decode(&frame);
    }

    /// Corrupted valid frames never panic, and whatever decodes re-encodes
    /// to a frame that decodes to the same bytes again.
    #[test]
    fn mutated_frames_never_panic(
        msg in message(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut frame = msg.encode();
        for (at, byte) in edits {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        if let Ok(decoded) = decode(&frame) {
            let again = decoded.encode();
            prop_assert_eq!(decode(&again).map(|m| m.encode()), Ok(again));
        }
    }

    #[test]
    fn every_truncation_is_an_error(msg in message()) {
        let frame = msg.encode();
        for len in 0..frame.len() {
            prop_assert!(decode(&frame[..len]).is_err(), "prefix of {} bytes decoded", len);
        }
    }
}

// ---- Typed errors --------------------------------------------------------

#[test]
fn a_frame_over_the_limit_is_refused_before_parsing() {
    // Garbage that would be a CBOR error if it were parsed.
    let refused = Message::decode(&[0xff; 100], FrameLimit(99));
    assert_eq!(
        refused,
        Err(DecodeError::TooLarge {
            size: 100,
            limit: 99
        })
    );
    let frame = sync_message().encode();
    assert_eq!(
        Message::decode(&frame, FrameLimit(frame.len())),
        Ok(sync_message())
    );
    let refused = Message::decode(&frame, FrameLimit(frame.len() - 1));
    assert!(matches!(refused, Err(DecodeError::TooLarge { .. })));
}

#[test]
fn an_empty_frame_is_empty() {
    assert_eq!(err(&[]), DecodeError::Empty);
}

#[test]
fn a_top_level_array_integer_or_string_is_not_a_map() {
    for frame in [
        array(&[text("sync")]),
        vec![0x01],
        vec![0x18, 0x2a],
        text("sync"),
    ] {
        assert!(
            matches!(err(&frame), DecodeError::NotAMap(_)),
            "{frame:02x?}"
        );
    }
}

#[test]
fn fields_of_the_wrong_cbor_type_are_named() {
    let (field, expected) = ("type", "a text string");
    assert_eq!(
        err(&sync_with("type", Some(vec![0x01]))),
        DecodeError::WrongType { field, expected }
    );
    let (field, expected) = ("data", "a byte string");
    assert_eq!(
        err(&sync_with("data", Some(text("AQID")))),
        DecodeError::WrongType { field, expected }
    );
}

#[test]
fn a_sync_without_a_document_id_misses_it() {
    let (message_type, field) = ("sync".to_owned(), "documentId");
    assert_eq!(
        err(&sync_with("documentId", None)),
        DecodeError::MissingField {
            message_type,
            field
        }
    );
}

#[test]
fn a_key_given_twice_is_a_duplicate() {
    let mut fields = sync_fields();
    fields.push(("senderId", text("someone-else")));
    assert_eq!(
        err(&map(&fields)),
        DecodeError::DuplicateField("senderId".into())
    );
}

/// A frame of a million distinct keys is read through to the one given
/// twice at its end. (Searched in a list, as the keys once were, the
/// million would take hours of a worker.)
#[test]
fn a_duplicate_after_a_million_distinct_keys_is_found() {
    const KEYS: u64 = 1_000_000;
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let key = |mut i: u64| -> String {
        (0..4)
            .map(|_| {
                let c = DIGITS[(i % 62) as usize] as char;
                i /= 62;
                c
            })
            .collect()
    };
    let mut frame = head(5, KEYS + 1);
    for i in 0..KEYS {
        frame.extend(text(&key(i)));
        frame.push(0);
    }
    frame.extend(text(&key(KEYS / 2)));
    frame.push(0);
    assert!(frame.len() < 16 * 1024 * 1024);
    assert_eq!(err(&frame), DecodeError::DuplicateField(key(KEYS / 2)));
}

/// A join without `supportedProtocolVersions` speaks version 1, as the
/// JavaScript server reads it; one that lists none offers none.
#[test]
fn a_join_without_versions_speaks_version_1_and_one_listing_none_offers_none() {
    let join = |versions: Option<Vec<u8>>| {
        let mut fields = vec![("type", text("join")), ("senderId", text("phone"))];
        if let Some(v) = versions {
            fields.push(("supportedProtocolVersions", v));
        }
        decode(&map(&fields))
    };
    let versions = |m: Result<Message, DecodeError>| match m {
        Ok(Message::Join {
            supported_protocol_versions,
            ..
        }) => supported_protocol_versions,
        other => panic!("{other:?}"),
    };
    assert_eq!(versions(join(None)), vec!["1".to_owned()]);
    assert_eq!(versions(join(Some(array(&[])))), Vec::<String>::new());
}

#[test]
fn an_unknown_type_is_named() {
    let frame = sync_with("type", Some(text("frobnicate")));
    assert_eq!(err(&frame), DecodeError::UnknownType("frobnicate".into()));
}

#[test]
fn a_document_id_that_is_not_bs58check_is_refused() {
    let frame = sync_with("documentId", Some(text("not-bs58-0OIl")));
    assert!(matches!(
        err(&frame),
        DecodeError::BadDocumentId(IdError::NotBs58Check(_))
    ));
    // A bs58check id of another length, which the official client may
    // make, is named with its sender, so the server can answer for it.
    let three_bytes = bs58::encode([1, 2, 3]).with_check().into_string();
    let frame = sync_with("documentId", Some(text(&three_bytes)));
    assert_eq!(
        err(&frame),
        DecodeError::ForeignDocumentId {
            kind: "sync".into(),
            sender_id: "client".into(),
            document_id: three_bytes.clone(),
            length: 3,
        }
    );
    // Presence on such a document, which the official client sends the
    // server too, is named as well, with its type: the server lets it pass.
    let mut fields = sync_fields();
    fields[0].1 = text("ephemeral");
    fields[3].1 = text(&three_bytes);
    fields.push(("count", head(0, 1)));
    fields.push(("sessionId", text("s")));
    assert_eq!(
        err(&map(&fields)),
        DecodeError::ForeignDocumentId {
            kind: "ephemeral".into(),
            sender_id: "client".into(),
            document_id: three_bytes.clone(),
            length: 3,
        }
    );
    // A message that is not about a document skips the key.
    let mut fields = sync_fields();
    fields[0].1 = text("twinsync-ping");
    fields[3].1 = text(&three_bytes);
    assert!(decode(&map(&fields)).is_ok());
}

#[test]
fn a_doc_unavailable_for_a_foreign_id_names_it_as_the_peer_wrote_it() {
    let long = bs58::encode([7u8; 32]).with_check().into_string();
    let frame = twinsync_shared::protocol::doc_unavailable_for("server", "client", &long);
    assert_eq!(
        frame,
        map(&[
            ("type", text("doc-unavailable")),
            ("senderId", text("server")),
            ("targetId", text("client")),
            ("documentId", text(&long)),
        ])
    );
}

#[test]
fn bytes_after_the_map_are_trailing() {
    let mut frame = sync_message().encode();
    frame.extend([0x00, 0xf6]);
    assert_eq!(err(&frame), DecodeError::TrailingBytes(2));
}

// ---- Absurd lengths --------------------------------------------------------

#[test]
fn absurd_lengths_fail_without_allocating() {
    let tiny = FrameLimit(128);
    let huge = |major: u8, n: u64| [vec![(major << 5) | 27], n.to_be_bytes().to_vec()].concat();
    let frames = [
        // `data` claims 2^63 and 2^64 - 1 bytes.
        sync_with("data", Some(huge(2, 1 << 63))),
        sync_with("data", Some(huge(2, u64::MAX))),
        // A top-level map of 2^32 and 2^64 - 1 entries, with one given.
        [huge(5, 1 << 32), text("type"), text("sync")].concat(),
        [huge(5, u64::MAX), text("type"), text("sync")].concat(),
        // A key, a version list and an unknown value that claim too much.
        [vec![0xa1], huge(3, 1 << 63)].concat(),
        map(&[("type", text("join")), ("x-unknown", huge(5, u64::MAX))]),
    ];
    for frame in frames {
        assert!(frame.len() <= tiny.0);
        assert!(
            matches!(Message::decode(&frame, tiny), Err(DecodeError::Cbor(_))),
            "{frame:02x?}"
        );
    }
}

/// A list of text costs its decoder a `String` (24 bytes and more) per
/// entry of as little as one byte: past `MAX_LIST_ENTRIES` it is refused,
/// by its claimed length before anything is read, or as it is read.
#[test]
fn a_list_longer_than_any_peer_needs_is_refused() {
    let join = |versions: Vec<u8>| {
        map(&[
            ("type", text("join")),
            ("senderId", text("phone")),
            ("supportedProtocolVersions", versions),
        ])
    };
    let too_many = DecodeError::TooMany {
        field: "supportedProtocolVersions",
        limit: MAX_LIST_ENTRIES,
    };
    let at_limit = join(array(&vec![text("1"); MAX_LIST_ENTRIES]));
    assert!(
        matches!(decode(&at_limit), Ok(Message::Join { supported_protocol_versions, .. }) if supported_protocol_versions.len() == MAX_LIST_ENTRIES)
    );
    let over = join(array(&vec![text("1"); MAX_LIST_ENTRIES + 1]));
    assert_eq!(err(&over), too_many);
    // A length claimed far beyond the frame is refused as too many, at once.
    let claimed = join([vec![0x9b], (1u64 << 63).to_be_bytes().to_vec()].concat());
    assert_eq!(err(&claimed), too_many);
    // An indefinite list is counted as it is read.
    let mut indefinite = vec![0x9f];
    for _ in 0..=MAX_LIST_ENTRIES {
        indefinite.extend(text(""));
    }
    indefinite.push(0xff);
    assert_eq!(err(&join(indefinite)), too_many);
    // The same for the heads of a `remote-heads-changed`.
    let heads = map(&[(
        "storage-a",
        map(&[
            ("heads", array(&vec![text("h"); MAX_LIST_ENTRIES + 1])),
            ("timestamp", vec![0x01]),
        ]),
    )]);
    let frame = map(&[
        ("type", text("remote-heads-changed")),
        ("senderId", text("server")),
        ("targetId", text("phone")),
        ("documentId", text(&doc().to_string())),
        ("newHeads", heads),
    ]);
    assert_eq!(
        err(&frame),
        DecodeError::TooMany {
            field: "heads",
            limit: MAX_LIST_ENTRIES
        }
    );
    // Many storage ids, each with a full list of one-byte heads, would
    // make a frame allocate many times its size: the keys and all their
    // heads count against one limit.
    let changed = |keys: usize, each: usize| {
        let names: Vec<String> = (0..keys).map(|k| format!("storage-{k}")).collect();
        let entry = map(&[
            ("heads", array(&vec![text(""); each])),
            ("timestamp", vec![0x01]),
        ]);
        let entries: Vec<(&str, Vec<u8>)> =
            names.iter().map(|n| (n.as_str(), entry.clone())).collect();
        map(&[
            ("type", text("remote-heads-changed")),
            ("senderId", text("server")),
            ("targetId", text("phone")),
            ("documentId", text(&doc().to_string())),
            ("newHeads", map(&entries)),
        ])
    };
    let new_heads_too_many = DecodeError::TooMany {
        field: "newHeads",
        limit: MAX_LIST_ENTRIES,
    };
    // 4 keys with 255 heads each: 1,024 strings in all.
    assert!(
        matches!(decode(&changed(4, 255)), Ok(Message::RemoteHeadsChanged { new_heads, .. }) if new_heads.len() == 4)
    );
    assert_eq!(err(&changed(4, 256)), new_heads_too_many);
    assert_eq!(err(&changed(MAX_LIST_ENTRIES + 1, 0)), new_heads_too_many);
    assert_eq!(err(&changed(64, MAX_LIST_ENTRIES)), new_heads_too_many);
}

// ---- What the JavaScript client sends ---------------------------------------

#[test]
fn the_join_cbor_x_writes_with_an_undefined_storage_id() {
    let metadata = [
        vec![0xa2],
        text("storageId"),
        vec![UNDEFINED],
        text("isEphemeral"),
        vec![TRUE],
    ];
    let frame = map(&[
        ("type", text("join")),
        ("senderId", text("client-create")),
        ("peerMetadata", metadata.concat()),
        ("supportedProtocolVersions", array(&[text("1")])),
    ]);
    let expected = Message::Join {
        sender_id: PeerId::from("client-create"),
        peer_metadata: PeerMetadata {
            storage_id: None,
            is_ephemeral: true,
            answers_pings: false,
            hears_coming: false,
        },
        supported_protocol_versions: vec!["1".into()],
    };
    assert_eq!(decode(&frame), Ok(expected));
}

#[test]
fn an_undefined_add_is_an_empty_add() {
    let frame = map(&[
        ("type", text("remote-subscription-change")),
        ("senderId", text("client")),
        ("targetId", text("server")),
        ("add", vec![UNDEFINED]),
        ("remove", array(&[text("storage-a")])),
    ]);
    let expected = Message::RemoteSubscriptionChange {
        sender_id: PeerId::from("client"),
        target_id: PeerId::from("server"),
        add: vec![],
        remove: vec![StorageId::from("storage-a")],
    };
    assert_eq!(decode(&frame), Ok(expected));
}

#[test]
fn keys_may_come_in_any_order() {
    let f = sync_fields();
    let reordered = [0, 2, 4, 3, 1].map(|i| f[i].clone());
    let keys: Vec<&str> = reordered.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["type", "targetId", "data", "documentId", "senderId"]);
    assert_eq!(decode(&map(&reordered)), Ok(sync_message()));
}

// ---- Deep nesting ------------------------------------------------------------

/// An unknown key whose value is 100,000 nested arrays is skipped (minicbor
/// skips iteratively): the message decodes as if the key were absent.
#[test]
fn a_deeply_nested_unknown_value_is_skipped() {
    const DEPTH: usize = 100_000;
    let definite = [vec![0x81; DEPTH], vec![0x00]].concat();
    let indefinite = [vec![0x9f; DEPTH], vec![0x00], vec![0xff; DEPTH]].concat();
    for nested in [definite, indefinite] {
        let mut fields = sync_fields();
        fields.insert(2, ("x-unknown", nested));
        assert_eq!(decode(&map(&fields)), Ok(sync_message()));
    }
}

// ---- Regressions: found while writing these tests ----------------------

#[test]
fn a_half_precision_timestamp_is_read() {
    let heads = map(&[("heads", array(&[])), ("timestamp", vec![0xf9, 0x3e, 0x00])]);
    let frame = map(&[
        ("type", text("remote-heads-changed")),
        ("senderId", text("a")),
        ("targetId", text("b")),
        ("documentId", text(&doc().to_string())),
        ("newHeads", map(&[("s1", heads)])),
    ]);
    let Ok(Message::RemoteHeadsChanged { new_heads, .. }) = decode(&frame) else {
        panic!("{:?}", decode(&frame))
    };
    assert_eq!(new_heads[&StorageId::from("s1")].timestamp, 1.5);
}

#[test]
fn a_lone_break_is_not_a_value() {
    let mut fields = sync_fields();
    fields.push(("x-unknown", vec![0xff]));
    assert!(matches!(err(&map(&fields)), DecodeError::Cbor(_)));
}

#[test]
fn a_duplicate_is_caught_even_when_one_value_is_undefined() {
    let mut fields = sync_fields();
    fields.push(("data", vec![UNDEFINED]));
    assert_eq!(
        err(&map(&fields)),
        DecodeError::DuplicateField("data".into())
    );
    let metadata = map(&[("isEphemeral", vec![TRUE]), ("isEphemeral", vec![TRUE])]);
    let join = map(&[
        ("type", text("join")),
        ("senderId", text("c")),
        ("peerMetadata", metadata),
    ]);
    assert_eq!(
        err(&join),
        DecodeError::DuplicateField("isEphemeral".into())
    );
}

#[test]
fn an_unknown_type_is_named_before_missing_fields() {
    assert_eq!(
        err(&map(&[("type", text("frobnicate"))])),
        DecodeError::UnknownType("frobnicate".into())
    );
}

/// The refusal of the `error` in `frame`.
fn refusal_of(frame: &[u8]) -> Option<Refusal> {
    let Message::Error { refusal, .. } = decode(frame).unwrap() else {
        panic!("not an error");
    };
    refusal
}

/// The error for a refusal without its `field`.
fn refusal_without(field: &'static str) -> DecodeError {
    DecodeError::MissingField {
        message_type: "error".into(),
        field,
    }
}

/// An `error` that refuses a change, as the server writes it.
fn refusal_frame(refusal: Vec<u8>) -> Vec<u8> {
    map(&[
        ("type", text("error")),
        ("senderId", text("server")),
        ("targetId", text("phone")),
        ("message", text("your change was refused")),
        ("refusal", refusal),
    ])
}

#[test]
fn a_refusal_is_read_with_its_document_code_path_and_quarantine() {
    let frame = refusal_frame(map(&[
        ("path", text("/minutes")),
        ("code", text("adopted")),
        ("documentId", text(&doc().to_string())),
        ("quarantine", head(0, 7)),
        ("later", text("a key a newer server may add")),
    ]));
    assert_eq!(
        refusal_of(&frame),
        Some(Refusal {
            document_id: doc(),
            code: "adopted".into(),
            path: "/minutes".into(),
            quarantine: Some(7),
            discarded: false,
            retry_after: None,
        })
    );
    let later = refusal_frame(map(&[
        ("documentId", text(&doc().to_string())),
        ("code", text("rate-limited")),
        ("path", text("/")),
        ("retryAfter", head(0, 42)),
    ]));
    assert_eq!(refusal_of(&later).and_then(|r| r.retry_after), Some(42));
    let discarded = refusal_frame(map(&[
        ("documentId", text(&doc().to_string())),
        ("code", text("not-yours")),
        ("path", text("/status")),
        ("quarantine", head(0, 3)),
        ("discarded", head(7, 21)),
    ]));
    assert_eq!(refusal_of(&discarded).map(|r| r.discarded), Some(true));
}

#[test]
fn a_refusal_missing_a_key_or_of_the_wrong_type_is_named() {
    let missing = refusal_frame(map(&[
        ("documentId", text(&doc().to_string())),
        ("path", text("/")),
    ]));
    assert_eq!(err(&missing), refusal_without("refusal.code"));
    let numbered = refusal_frame(map(&[
        ("documentId", text(&doc().to_string())),
        ("code", head(0, 3)),
        ("path", text("/")),
    ]));
    assert!(
        matches!(
            err(&numbered),
            DecodeError::WrongType {
                field: "refusal.code",
                ..
            }
        ),
        "{:?}",
        err(&numbered)
    );
    assert!(matches!(
        err(&refusal_frame(text("not a map"))),
        DecodeError::WrongType {
            field: "refusal",
            ..
        }
    ));
    let twice = refusal_frame(map(&[
        ("code", text("a")),
        ("code", text("b")),
        ("documentId", text(&doc().to_string())),
        ("path", text("/")),
    ]));
    assert_eq!(err(&twice), DecodeError::DuplicateField("code".into()));
}

#[test]
fn a_refusal_with_an_undefined_or_null_quarantine_has_none() {
    for absent in [vec![UNDEFINED], vec![0xf6]] {
        let frame = refusal_frame(map(&[
            ("documentId", text(&doc().to_string())),
            ("code", text("not-yours")),
            ("path", text("/status")),
            ("quarantine", absent),
        ]));
        assert_eq!(refusal_of(&frame).map(|r| r.quarantine), Some(None));
    }
    let nameless = refusal_frame(map(&[
        ("documentId", text(&doc().to_string())),
        ("code", vec![UNDEFINED]),
        ("path", text("/")),
    ]));
    assert_eq!(err(&nameless), refusal_without("refusal.code"));
}

#[test]
fn an_error_without_a_refusal_reads_as_before() {
    let frame = map(&[
        ("type", text("error")),
        ("senderId", text("server")),
        ("message", text("unsupported protocol version")),
    ]);
    let Message::Error {
        refusal, target_id, ..
    } = decode(&frame).unwrap()
    else {
        panic!("not an error");
    };
    assert_eq!(refusal, None);
    assert_eq!(target_id.as_str(), "");
}

/// `twinsyncPings` is written only by a peer that answers pings, so what
/// the official client and server see from anyone else is unchanged.
#[test]
fn pings_are_offered_in_peer_metadata_only_by_a_peer_that_answers_them() {
    let peer = |answers_pings| Message::Peer {
        sender_id: PeerId::from("server"),
        target_id: PeerId::from("phone"),
        peer_metadata: PeerMetadata {
            answers_pings,
            ..PeerMetadata::default()
        },
        selected_protocol_version: "1".into(),
    };
    let key = b"twinsyncPings";
    let has_key = |frame: &[u8]| frame.windows(key.len()).any(|w| w == key);
    assert!(!has_key(&peer(false).encode()));
    let offered = peer(true).encode();
    assert!(has_key(&offered));
    assert_eq!(decode(&offered), Ok(peer(true)));
    let ping = map(&[
        ("type", text("twinsync-ping")),
        ("senderId", text("phone")),
        ("targetId", text("server")),
    ]);
    assert_eq!(
        decode(&ping),
        Ok(Message::Ping {
            sender_id: PeerId::from("phone"),
            target_id: PeerId::from("server"),
        })
    );
}
