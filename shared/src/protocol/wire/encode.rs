//! CBOR encoding of protocol messages, key for key as automerge-repo writes them.

use minicbor::Encoder;

use super::{HeadsAt, Message, PeerMetadata};

/// Writing into a `Vec` cannot fail, so neither can encoding.
pub(super) fn encode(msg: &Message) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    write(&mut e, msg).expect("writing CBOR into a Vec is infallible");
    e.into_writer()
}

/// A `doc-unavailable` for a document id as a peer wrote it, one twinsync
/// cannot hold (see [`super::DecodeError::ForeignDocumentId`]).
pub fn doc_unavailable_for(sender_id: &str, target_id: &str, document_id: &str) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    let write = |e: &mut Enc| -> Res {
        e.map(4)?;
        e.str("type")?.str("doc-unavailable")?;
        e.str("senderId")?.str(sender_id)?;
        e.str("targetId")?.str(target_id)?;
        e.str("documentId")?.str(document_id)?;
        Ok(())
    };
    write(&mut e).expect("writing CBOR into a Vec is infallible");
    e.into_writer()
}

type Enc = Encoder<Vec<u8>>;
type Res = Result<(), minicbor::encode::Error<core::convert::Infallible>>;

fn write(e: &mut Enc, msg: &Message) -> Res {
    match msg {
        Message::Join {
            sender_id,
            peer_metadata,
            supported_protocol_versions,
        } => {
            e.map(4)?;
            e.str("type")?.str(msg.type_name())?;
            e.str("senderId")?.str(sender_id.as_str())?;
            e.str("peerMetadata")?;
            metadata(e, peer_metadata)?;
            e.str("supportedProtocolVersions")?
                .array(supported_protocol_versions.len() as u64)?;
            for v in supported_protocol_versions {
                e.str(v)?;
            }
        }
        Message::Peer {
            sender_id,
            target_id,
            peer_metadata,
            selected_protocol_version,
        } => {
            e.map(5)?;
            header(e, msg, sender_id.as_str(), target_id.as_str())?;
            e.str("peerMetadata")?;
            metadata(e, peer_metadata)?;
            e.str("selectedProtocolVersion")?
                .str(selected_protocol_version)?;
        }
        Message::Error {
            sender_id,
            target_id,
            message,
            refusal,
        } => {
            e.map(if refusal.is_some() { 5 } else { 4 })?;
            header(e, msg, sender_id.as_str(), target_id.as_str())?;
            e.str("message")?.str(message)?;
            if let Some(r) = refusal {
                let optional = u64::from(r.quarantine.is_some())
                    + u64::from(r.retry_after.is_some())
                    + u64::from(r.discarded);
                e.str("refusal")?.map(3 + optional)?;
                e.str("documentId")?.str(&r.document_id.to_string())?;
                e.str("code")?.str(&r.code)?;
                e.str("path")?.str(&r.path)?;
                if let Some(q) = r.quarantine {
                    e.str("quarantine")?.u64(q)?;
                }
                if r.discarded {
                    e.str("discarded")?.bool(true)?;
                }
                if let Some(secs) = r.retry_after {
                    e.str("retryAfter")?.u64(secs)?;
                }
            }
        }
        Message::Sync {
            sender_id,
            target_id,
            document_id,
            data,
        }
        | Message::Request {
            sender_id,
            target_id,
            document_id,
            data,
        } => {
            e.map(5)?;
            header(e, msg, sender_id.as_str(), target_id.as_str())?;
            e.str("documentId")?.str(&document_id.to_string())?;
            e.str("data")?.bytes(data)?;
        }
        Message::DocUnavailable {
            sender_id,
            target_id,
            document_id,
        } => {
            e.map(4)?;
            header(e, msg, sender_id.as_str(), target_id.as_str())?;
            e.str("documentId")?.str(&document_id.to_string())?;
        }
        Message::Ephemeral {
            sender_id,
            target_id,
            document_id,
            session_id,
            count,
            data,
        } => {
            e.map(7)?;
            header(e, msg, sender_id.as_str(), target_id.as_str())?;
            e.str("documentId")?.str(&document_id.to_string())?;
            e.str("sessionId")?.str(session_id)?;
            e.str("count")?.u64(*count)?;
            e.str("data")?.bytes(data)?;
        }
        Message::RemoteSubscriptionChange {
            sender_id,
            target_id,
            add,
            remove,
        } => {
            e.map(5)?;
            header(e, msg, sender_id.as_str(), target_id.as_str())?;
            e.str("add")?.array(add.len() as u64)?;
            for id in add {
                e.str(id.as_str())?;
            }
            e.str("remove")?.array(remove.len() as u64)?;
            for id in remove {
                e.str(id.as_str())?;
            }
        }
        Message::RemoteHeadsChanged {
            sender_id,
            target_id,
            document_id,
            new_heads,
        } => {
            e.map(5)?;
            header(e, msg, sender_id.as_str(), target_id.as_str())?;
            e.str("documentId")?.str(&document_id.to_string())?;
            e.str("newHeads")?.map(new_heads.len() as u64)?;
            for (storage_id, HeadsAt { heads, timestamp }) in new_heads {
                e.str(storage_id.as_str())?.map(2)?;
                e.str("heads")?.array(heads.len() as u64)?;
                for h in heads {
                    e.str(h)?;
                }
                e.str("timestamp")?;
                if timestamp.fract() == 0.0 && *timestamp >= 0.0 && *timestamp < 2f64.powi(53) {
                    e.u64(*timestamp as u64)?;
                } else {
                    e.f64(*timestamp)?;
                }
            }
        }
        Message::Ping {
            sender_id,
            target_id,
        }
        | Message::Pong {
            sender_id,
            target_id,
        } => {
            e.map(3)?;
            header(e, msg, sender_id.as_str(), target_id.as_str())?;
        }
        Message::Coming {
            sender_id,
            target_id,
            bytes,
        } => {
            e.map(4)?;
            header(e, msg, sender_id.as_str(), target_id.as_str())?;
            e.str("bytes")?.u64(*bytes)?;
        }
    }
    Ok(())
}

fn header(e: &mut Enc, msg: &Message, sender: &str, target: &str) -> Res {
    e.str("type")?.str(msg.type_name())?;
    e.str("senderId")?.str(sender)?;
    e.str("targetId")?.str(target)?;
    Ok(())
}

fn metadata(e: &mut Enc, m: &PeerMetadata) -> Res {
    e.map(
        1 + u64::from(m.storage_id.is_some())
            + u64::from(m.answers_pings)
            + u64::from(m.hears_coming),
    )?;
    if let Some(id) = &m.storage_id {
        e.str("storageId")?.str(id.as_str())?;
    }
    e.str("isEphemeral")?.bool(m.is_ephemeral)?;
    if m.answers_pings {
        e.str("twinsyncPings")?.bool(true)?;
    }
    if m.hears_coming {
        e.str("twinsyncComing")?.bool(true)?;
    }
    Ok(())
}
