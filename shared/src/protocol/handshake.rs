//! The handshake: `join` from the client, `peer` (or `error`) from the server.

use super::{Message, PROTOCOL_VERSION, PeerMetadata};
use crate::PeerId;

/// The client's first message.
pub fn join(sender_id: PeerId, peer_metadata: PeerMetadata) -> Message {
    Message::Join {
        sender_id,
        peer_metadata,
        supported_protocol_versions: vec![PROTOCOL_VERSION.to_owned()],
    }
}

/// A peer that has joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub peer_id: PeerId,
    pub metadata: PeerMetadata,
}

/// Why a `join` was refused; the reply is an `error` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("expected `join` first, got `{0}`")]
    NotJoin(&'static str),
    #[error("unsupported protocol version: this server speaks \"1\", the client offered {0:?}")]
    UnsupportedVersion(Vec<String>),
    #[error("`senderId` must not be empty")]
    EmptyPeerId,
    #[error("`senderId` is {0} bytes long; at most {MAX_ID_BYTES} are allowed")]
    PeerIdTooLong(usize),
    #[error("`peerMetadata.storageId` is {0} bytes long; at most {MAX_ID_BYTES} are allowed")]
    StorageIdTooLong(usize),
}

/// The longest `senderId` or `storageId` a server takes, in bytes. The
/// official clients' ids are 20 to 60 bytes; a peer's id is copied into
/// every frame it sends and every origin the server stores.
pub const MAX_ID_BYTES: usize = 256;

/// Server side: accepts a `join` and makes the `peer` reply.
pub fn accept(
    msg: &Message,
    our_id: &PeerId,
    our_metadata: &PeerMetadata,
) -> Result<(Joined, Message), HandshakeError> {
    let Message::Join {
        sender_id,
        peer_metadata,
        supported_protocol_versions,
    } = msg
    else {
        return Err(HandshakeError::NotJoin(msg.type_name()));
    };
    if sender_id.as_str().is_empty() {
        return Err(HandshakeError::EmptyPeerId);
    }
    if sender_id.as_str().len() > MAX_ID_BYTES {
        return Err(HandshakeError::PeerIdTooLong(sender_id.as_str().len()));
    }
    if let Some(storage) = &peer_metadata.storage_id
        && storage.as_str().len() > MAX_ID_BYTES
    {
        return Err(HandshakeError::StorageIdTooLong(storage.as_str().len()));
    }
    // A join without the key was read as version 1, as the JavaScript
    // server reads it; an empty list offers nothing we speak.
    if !supported_protocol_versions
        .iter()
        .any(|v| v == PROTOCOL_VERSION)
    {
        return Err(HandshakeError::UnsupportedVersion(
            supported_protocol_versions.clone(),
        ));
    }
    let reply = Message::Peer {
        sender_id: our_id.clone(),
        target_id: sender_id.clone(),
        peer_metadata: our_metadata.clone(),
        selected_protocol_version: PROTOCOL_VERSION.to_owned(),
    };
    Ok((
        Joined {
            peer_id: sender_id.clone(),
            metadata: peer_metadata.clone(),
        },
        reply,
    ))
}
