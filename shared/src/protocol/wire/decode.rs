//! Strict decoding of protocol frames.
//!
//! The decoder reads from the frame in place: strings and byte strings
//! borrow from it, and no length read from the input is used to reserve
//! memory, so an absurd length fails as truncated input instead of
//! allocating.

use std::collections::{BTreeMap, HashSet};

use minicbor::Decoder;
use minicbor::data::Type;

use super::{FrameLimit, HeadsAt, Message, PROTOCOL_VERSION, PeerMetadata, Refusal};
use crate::{DocumentId, IdError, PeerId, StorageId};

/// Why a frame is not a valid protocol message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("empty frame")]
    Empty,
    #[error("malformed CBOR: {0}")]
    Cbor(String),
    #[error("a message is a CBOR map with text keys; this frame holds {0}")]
    NotAMap(String),
    #[error("field `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("field `{0}` appears twice")]
    DuplicateField(String),
    #[error("a `{message_type}` message needs the field `{field}`")]
    MissingField {
        message_type: String,
        field: &'static str,
    },
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("field `documentId`: {0}")]
    BadDocumentId(IdError),
    /// A well-formed message about a document id the official client
    /// accepts (any bs58check payload) but twinsync never makes (16
    /// bytes). The socket answers a `request` or `sync` with
    /// `doc-unavailable` ([`super::doc_unavailable_for`]), lets any other
    /// (presence on that document, say) pass, and goes on: closed, the
    /// client would ask again at every reconnection.
    #[error("document id `{document_id}` is {length} bytes; twinsync's are 16")]
    ForeignDocumentId {
        /// The message's type, such as `sync` or `ephemeral`.
        kind: String,
        sender_id: String,
        document_id: String,
        length: usize,
    },
    #[error("{0} bytes follow the message in the frame")]
    TrailingBytes(usize),
    #[error("field `{field}` lists more than {limit} entries")]
    TooMany { field: &'static str, limit: usize },
}

/// The most entries a list of text in a message may hold: far more than
/// protocol versions, subscriptions or concurrent heads ever number, and
/// few enough that a frame of one-byte entries (each a `String` of 24 bytes
/// and more in memory) cannot make the decoder allocate many times its size.
pub const MAX_LIST_ENTRIES: usize = 1024;

impl DecodeError {
    fn missing(message_type: &str, field: &'static str) -> Self {
        DecodeError::MissingField {
            message_type: message_type.to_owned(),
            field,
        }
    }
}

impl From<minicbor::decode::Error> for DecodeError {
    fn from(e: minicbor::decode::Error) -> Self {
        DecodeError::Cbor(e.to_string())
    }
}

/// The fields of a message as read from the frame, before they are
/// checked against its type.
#[derive(Default)]
struct Fields<'b> {
    type_: Option<&'b str>,
    sender_id: Option<&'b str>,
    target_id: Option<&'b str>,
    document_id: Option<&'b str>,
    data: Option<&'b [u8]>,
    message: Option<&'b str>,
    peer_metadata: Option<PeerMetadata>,
    supported: Option<Vec<String>>,
    selected: Option<&'b str>,
    session_id: Option<&'b str>,
    count: Option<u64>,
    bytes: Option<u64>,
    add: Option<Vec<StorageId>>,
    remove: Option<Vec<StorageId>>,
    new_heads: Option<BTreeMap<StorageId, HeadsAt>>,
    refusal: Option<Refusal>,
}

pub(super) fn decode(frame: &[u8], limit: FrameLimit) -> Result<Message, DecodeError> {
    if frame.len() > limit.0 {
        return Err(DecodeError::TooLarge {
            size: frame.len(),
            limit: limit.0,
        });
    }
    if frame.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut d = Decoder::new(frame);
    let fields = read_fields(&mut d)?;
    let rest = frame.len() - d.position();
    if rest != 0 {
        return Err(DecodeError::TrailingBytes(rest));
    }
    build(fields)
}

fn read_fields<'b>(d: &mut Decoder<'b>) -> Result<Fields<'b>, DecodeError> {
    let ty = d.datatype()?;
    if ty != Type::Map {
        return Err(DecodeError::NotAMap(format!("{ty}")));
    }
    let mut f = Fields::default();
    let mut seen = HashSet::new();
    let mut remaining = d.map()?;
    loop {
        match remaining {
            Some(0) => break,
            Some(ref mut n) => *n -= 1,
            None if d.datatype()? == Type::Break => {
                d.skip()?;
                break;
            }
            None => {}
        }
        if d.datatype()? != Type::String {
            return Err(DecodeError::NotAMap(
                "a map with a key that is not text".into(),
            ));
        }
        let key = d.str()?;
        first_time(&mut seen, key)?;
        // cbor-x writes a field set to `undefined` with its key present and
        // the value `undefined`; that is the same as leaving it out.
        if matches!(d.datatype()?, Type::Undefined | Type::Null) {
            skip_value(d)?;
            continue;
        }
        match key {
            "type" => set(&mut f.type_, "type", str_field(d, "type")?)?,
            "senderId" => set(&mut f.sender_id, "senderId", str_field(d, "senderId")?)?,
            "targetId" => set(&mut f.target_id, "targetId", str_field(d, "targetId")?)?,
            "documentId" => set(
                &mut f.document_id,
                "documentId",
                str_field(d, "documentId")?,
            )?,
            "data" => set(&mut f.data, "data", bytes_field(d, "data")?)?,
            "message" => set(&mut f.message, "message", str_field(d, "message")?)?,
            "peerMetadata" => set(&mut f.peer_metadata, "peerMetadata", metadata(d)?)?,
            "supportedProtocolVersions" => {
                let list = str_array(d, "supportedProtocolVersions")?;
                set(&mut f.supported, "supportedProtocolVersions", list)?
            }
            "selectedProtocolVersion" => {
                let v = str_field(d, "selectedProtocolVersion")?;
                set(&mut f.selected, "selectedProtocolVersion", v)?
            }
            "sessionId" => set(&mut f.session_id, "sessionId", str_field(d, "sessionId")?)?,
            "count" => set(&mut f.count, "count", uint_field(d, "count")?)?,
            "bytes" => set(&mut f.bytes, "bytes", uint_field(d, "bytes")?)?,
            "add" => {
                let ids = str_array(d, "add")?
                    .into_iter()
                    .map(StorageId::new)
                    .collect();
                set(&mut f.add, "add", ids)?
            }
            "remove" => {
                let ids = str_array(d, "remove")?
                    .into_iter()
                    .map(StorageId::new)
                    .collect();
                set(&mut f.remove, "remove", ids)?
            }
            "newHeads" => set(&mut f.new_heads, "newHeads", new_heads(d)?)?,
            "refusal" => set(&mut f.refusal, "refusal", refusal(d)?)?,
            _ => skip_value(d)?,
        }
    }
    Ok(f)
}

fn set<T>(slot: &mut Option<T>, _field: &'static str, value: T) -> Result<(), DecodeError> {
    // Duplicates are caught by key in `read_fields`.
    *slot = Some(value);
    Ok(())
}

/// Skips a value, refusing a lone break byte (valid only inside an
/// indefinite-length item, which minicbor's `skip` would accept).
fn skip_value(d: &mut Decoder<'_>) -> Result<(), DecodeError> {
    if d.datatype()? == Type::Break {
        return Err(DecodeError::Cbor(format!(
            "unexpected break at position {}",
            d.position()
        )));
    }
    d.skip()?;
    Ok(())
}

/// Refuses a key seen before in the same map. A set, not a list: a frame
/// may hold millions of distinct keys, and a list searched for each would
/// hold a worker for hours.
fn first_time<'b>(seen: &mut HashSet<&'b str>, key: &'b str) -> Result<(), DecodeError> {
    if !seen.insert(key) {
        return Err(DecodeError::DuplicateField(key.to_owned()));
    }
    Ok(())
}

fn str_field<'b>(d: &mut Decoder<'b>, field: &'static str) -> Result<&'b str, DecodeError> {
    match d.datatype()? {
        Type::String => Ok(d.str()?),
        _ => Err(DecodeError::WrongType {
            field,
            expected: "a text string",
        }),
    }
}

fn bytes_field<'b>(d: &mut Decoder<'b>, field: &'static str) -> Result<&'b [u8], DecodeError> {
    match d.datatype()? {
        Type::Bytes => Ok(d.bytes()?),
        _ => Err(DecodeError::WrongType {
            field,
            expected: "a byte string",
        }),
    }
}

fn uint_field(d: &mut Decoder<'_>, field: &'static str) -> Result<u64, DecodeError> {
    match d.datatype()? {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Ok(d.u64()?),
        _ => Err(DecodeError::WrongType {
            field,
            expected: "an unsigned integer",
        }),
    }
}

fn bool_field(d: &mut Decoder<'_>, field: &'static str) -> Result<bool, DecodeError> {
    match d.datatype()? {
        Type::Bool => Ok(d.bool()?),
        // cbor-x writes `undefined` for a field set to undefined.
        Type::Undefined | Type::Null => {
            d.skip()?;
            Ok(false)
        }
        _ => Err(DecodeError::WrongType {
            field,
            expected: "a boolean",
        }),
    }
}

fn number_field(d: &mut Decoder<'_>, field: &'static str) -> Result<f64, DecodeError> {
    match d.datatype()? {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Ok(d.u64()? as f64),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => Ok(d.i64()? as f64),
        Type::F16 | Type::F32 => Ok(f64::from(d.f32()?)),
        Type::F64 => Ok(d.f64()?),
        _ => Err(DecodeError::WrongType {
            field,
            expected: "a number",
        }),
    }
}

/// Iterates over the entries of a definite or indefinite array or map,
/// calling `each` once per entry (a map entry is a key and a value).
fn each_entry<'b>(
    d: &mut Decoder<'b>,
    len: Option<u64>,
    mut each: impl FnMut(&mut Decoder<'b>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    match len {
        Some(n) => {
            for _ in 0..n {
                each(d)?;
            }
        }
        None => loop {
            if d.datatype()? == Type::Break {
                d.skip()?;
                break;
            }
            each(d)?;
        },
    }
    Ok(())
}

fn str_array(d: &mut Decoder<'_>, field: &'static str) -> Result<Vec<String>, DecodeError> {
    if d.datatype()? != Type::Array && d.datatype()? != Type::ArrayIndef {
        return Err(DecodeError::WrongType {
            field,
            expected: "an array of text strings",
        });
    }
    let len = d.array()?;
    let too_many = DecodeError::TooMany {
        field,
        limit: MAX_LIST_ENTRIES,
    };
    if len.is_some_and(|n| n > MAX_LIST_ENTRIES as u64) {
        return Err(too_many);
    }
    let mut out = Vec::new();
    each_entry(d, len, |d| {
        if out.len() == MAX_LIST_ENTRIES {
            return Err(too_many.clone());
        }
        out.push(str_field(d, field)?.to_owned());
        Ok(())
    })?;
    Ok(out)
}

fn expect_map(d: &mut Decoder<'_>, field: &'static str) -> Result<Option<u64>, DecodeError> {
    match d.datatype()? {
        Type::Map | Type::MapIndef => Ok(d.map()?),
        _ => Err(DecodeError::WrongType {
            field,
            expected: "a map",
        }),
    }
}

fn metadata(d: &mut Decoder<'_>) -> Result<PeerMetadata, DecodeError> {
    let mut m = PeerMetadata::default();
    let len = expect_map(d, "peerMetadata")?;
    let mut seen = HashSet::new();
    each_entry(d, len, |d| {
        let key = str_field(d, "peerMetadata")?;
        first_time(&mut seen, key)?;
        match key {
            "storageId" => match d.datatype()? {
                Type::Undefined | Type::Null => skip_value(d)?,
                _ => m.storage_id = Some(StorageId::new(str_field(d, "storageId")?)),
            },
            "isEphemeral" => m.is_ephemeral = bool_field(d, "isEphemeral")?,
            "twinsyncPings" => m.answers_pings = bool_field(d, "twinsyncPings")?,
            "twinsyncComing" => m.hears_coming = bool_field(d, "twinsyncComing")?,
            _ => skip_value(d)?,
        }
        Ok(())
    })?;
    Ok(m)
}

/// The `refusal` of an `error`: the keys it must have, with their types.
fn refusal(d: &mut Decoder<'_>) -> Result<Refusal, DecodeError> {
    let len = expect_map(d, "refusal")?;
    let mut seen = HashSet::new();
    let (mut document_id, mut code, mut path) = (None, None, None);
    let (mut quarantine, mut retry_after, mut discarded) = (None, None, false);
    each_entry(d, len, |d| {
        let key = str_field(d, "refusal")?;
        first_time(&mut seen, key)?;
        // As at the top level, `undefined` or `null` is the key left out.
        if matches!(d.datatype()?, Type::Undefined | Type::Null) {
            return skip_value(d);
        }
        match key {
            "documentId" => document_id = Some(str_field(d, "refusal.documentId")?),
            "code" => code = Some(str_field(d, "refusal.code")?.to_owned()),
            "path" => path = Some(str_field(d, "refusal.path")?.to_owned()),
            "quarantine" => quarantine = Some(uint_field(d, "refusal.quarantine")?),
            "retryAfter" => retry_after = Some(uint_field(d, "refusal.retryAfter")?),
            "discarded" => discarded = bool_field(d, "refusal.discarded")?,
            _ => skip_value(d)?,
        }
        Ok(())
    })?;
    let missing = |field| DecodeError::missing("error", field);
    Ok(Refusal {
        document_id: document_id
            .ok_or_else(|| missing("refusal.documentId"))?
            .parse()
            .map_err(DecodeError::BadDocumentId)?,
        code: code.ok_or_else(|| missing("refusal.code"))?,
        path: path.ok_or_else(|| missing("refusal.path"))?,
        quarantine,
        discarded,
        retry_after,
    })
}

/// The heads a peer reports under each storage id. The text strings of the
/// whole map, its keys with every head, count against one
/// [`MAX_LIST_ENTRIES`], as a list's would: else a frame of many keys, each
/// with a full list of one-byte heads, would allocate many times its size.
fn new_heads(d: &mut Decoder<'_>) -> Result<BTreeMap<StorageId, HeadsAt>, DecodeError> {
    let mut out = BTreeMap::new();
    let mut strings = 0;
    let too_many = DecodeError::TooMany {
        field: "newHeads",
        limit: MAX_LIST_ENTRIES,
    };
    let len = expect_map(d, "newHeads")?;
    each_entry(d, len, |d| {
        let key = str_field(d, "newHeads")?;
        if out.contains_key(&StorageId::new(key)) {
            return Err(DecodeError::DuplicateField(format!("newHeads.{key}")));
        }
        let storage_id = StorageId::new(key);
        let mut heads = None;
        let mut timestamp = None;
        let inner = expect_map(d, "newHeads")?;
        each_entry(d, inner, |d| {
            match str_field(d, "newHeads")? {
                "heads" => heads = Some(str_array(d, "heads")?),
                "timestamp" => timestamp = Some(number_field(d, "timestamp")?),
                _ => skip_value(d)?,
            }
            Ok(())
        })?;
        let missing = |field| DecodeError::missing("remote-heads-changed", field);
        let heads = heads.ok_or_else(|| missing("heads"))?;
        let timestamp = timestamp.ok_or_else(|| missing("timestamp"))?;
        // The key, and each head (a list holds at most the limit).
        strings += 1 + heads.len();
        if strings > MAX_LIST_ENTRIES {
            return Err(too_many.clone());
        }
        out.insert(storage_id, HeadsAt { heads, timestamp });
        Ok(())
    })?;
    Ok(out)
}

fn build(f: Fields<'_>) -> Result<Message, DecodeError> {
    let type_ = f.type_.ok_or_else(|| DecodeError::missing("any", "type"))?;
    const TYPES: [&str; 12] = [
        "join",
        "peer",
        "error",
        "sync",
        "request",
        "doc-unavailable",
        "ephemeral",
        "remote-subscription-change",
        "remote-heads-changed",
        "twinsync-ping",
        "twinsync-pong",
        "twinsync-coming",
    ];
    if !TYPES.contains(&type_) {
        return Err(DecodeError::UnknownType(type_.to_owned()));
    }
    let need = |field| DecodeError::missing(type_, field);
    let has_data = f.data.is_some() || !matches!(type_, "request" | "sync" | "ephemeral");
    if matches!(
        type_,
        "request" | "sync" | "ephemeral" | "doc-unavailable" | "remote-heads-changed"
    ) && has_data
        && let (Some(sender), Some(id)) = (f.sender_id, f.document_id)
        && let Err(IdError::WrongLength(length)) = id.parse::<DocumentId>()
    {
        return Err(DecodeError::ForeignDocumentId {
            kind: type_.to_owned(),
            sender_id: sender.to_owned(),
            document_id: id.to_owned(),
            length,
        });
    }
    let sender_id = PeerId::new(f.sender_id.ok_or_else(|| need("senderId"))?);
    let target = || f.target_id.map(PeerId::new).ok_or_else(|| need("targetId"));
    let document = || -> Result<DocumentId, DecodeError> {
        f.document_id
            .ok_or_else(|| need("documentId"))?
            .parse()
            .map_err(DecodeError::BadDocumentId)
    };
    let data = || f.data.map(<[u8]>::to_vec).ok_or_else(|| need("data"));
    Ok(match type_ {
        "join" => Message::Join {
            sender_id,
            peer_metadata: f.peer_metadata.unwrap_or_default(),
            // The JavaScript server reads a missing list as version 1.
            // As the JavaScript server reads it: a join that names no
            // versions speaks version 1; one that lists none speaks none.
            supported_protocol_versions: f
                .supported
                .unwrap_or_else(|| vec![PROTOCOL_VERSION.to_owned()]),
        },
        "peer" => Message::Peer {
            sender_id,
            target_id: target()?,
            peer_metadata: f.peer_metadata.unwrap_or_default(),
            selected_protocol_version: f
                .selected
                .ok_or_else(|| need("selectedProtocolVersion"))?
                .to_owned(),
        },
        "error" => Message::Error {
            sender_id,
            // An error may come before the peer knows our id.
            target_id: f
                .target_id
                .map(PeerId::new)
                .unwrap_or_else(|| PeerId::new("")),
            message: f.message.ok_or_else(|| need("message"))?.to_owned(),
            refusal: f.refusal,
        },
        "sync" => Message::Sync {
            sender_id,
            target_id: target()?,
            document_id: document()?,
            data: data()?,
        },
        "request" => Message::Request {
            sender_id,
            target_id: target()?,
            document_id: document()?,
            data: data()?,
        },
        "doc-unavailable" => Message::DocUnavailable {
            sender_id,
            target_id: target()?,
            document_id: document()?,
        },
        "ephemeral" => Message::Ephemeral {
            sender_id,
            target_id: target()?,
            document_id: document()?,
            session_id: f.session_id.ok_or_else(|| need("sessionId"))?.to_owned(),
            count: f.count.ok_or_else(|| need("count"))?,
            data: data()?,
        },
        "remote-subscription-change" => Message::RemoteSubscriptionChange {
            sender_id,
            target_id: target()?,
            add: f.add.unwrap_or_default(),
            remove: f.remove.unwrap_or_default(),
        },
        "remote-heads-changed" => Message::RemoteHeadsChanged {
            sender_id,
            target_id: target()?,
            document_id: document()?,
            new_heads: f.new_heads.ok_or_else(|| need("newHeads"))?,
        },
        "twinsync-ping" => Message::Ping {
            sender_id,
            target_id: target()?,
        },
        "twinsync-pong" => Message::Pong {
            sender_id,
            target_id: target()?,
        },
        "twinsync-coming" => Message::Coming {
            sender_id,
            target_id: target()?,
            bytes: f.bytes.ok_or_else(|| need("bytes"))?,
        },
        other => return Err(DecodeError::UnknownType(other.to_owned())),
    })
}
