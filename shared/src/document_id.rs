//! Document ids and `automerge:` URLs, as automerge-repo writes them.
//!
//! A document id is the bs58check encoding of 16 random bytes (a UUID v4 in
//! automerge-repo). A URL is `automerge:<id>`, optionally followed by
//! `#<head>|<head>` where each head is a bs58check-encoded change hash.

use std::fmt;
use std::str::FromStr;

use automerge::ChangeHash;

/// The prefix of every automerge-repo document URL.
pub const URL_PREFIX: &str = "automerge:";

/// The id of one Automerge document, and so of one club record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId([u8; 16]);

/// Why a string is not a document id or URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("not a bs58check string: {0}")]
    NotBs58Check(String),
    #[error("a document id holds 16 bytes, this one holds {0}")]
    WrongLength(usize),
    #[error("a document URL starts with `automerge:`")]
    MissingPrefix,
    #[error("a head in the URL is not a 32-byte change hash")]
    BadHead,
}

impl DocumentId {
    /// A fresh random id, as automerge-repo makes them (UUID v4 bits).
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        // The operating system (or the browser's crypto) failing to give
        // randomness is not something a caller can recover from.
        getrandom::fill(&mut bytes).expect("the platform gives random bytes");
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(bytes)
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The record's URL, as the JavaScript client expects it.
    pub fn url(&self) -> AutomergeUrl {
        AutomergeUrl {
            document_id: *self,
            heads: None,
        }
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(&self.0).with_check().into_string())
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

impl FromStr for DocumentId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix(URL_PREFIX).unwrap_or(s);
        let bytes = decode_check(s)?;
        let bytes: [u8; 16] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| IdError::WrongLength(bytes.len()))?;
        Ok(Self(bytes))
    }
}

impl serde::Serialize for DocumentId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The longest id or head decoded. Ours are 28 characters at most (16
/// bytes and a 4-byte checksum), heads 50; the official client takes any
/// bs58check id, and one of another length is answered as unavailable
/// (`WrongLength`), which needs it decoded. Longer input is refused before
/// decoding: base58 costs the square of its length.
pub const MAX_ID_CHARS: usize = 256;

fn decode_check(s: &str) -> Result<Vec<u8>, IdError> {
    if s.len() > MAX_ID_CHARS {
        return Err(IdError::NotBs58Check(format!(
            "{} characters is too long",
            s.len()
        )));
    }
    bs58::decode(s)
        .with_check(None)
        .into_vec()
        .map_err(|e| IdError::NotBs58Check(e.to_string()))
}

/// `automerge:<id>` with optional heads, pointing at a document or at one
/// version of it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AutomergeUrl {
    pub document_id: DocumentId,
    pub heads: Option<Vec<ChangeHash>>,
}

impl fmt::Display for AutomergeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{URL_PREFIX}{}", self.document_id)?;
        if let Some(heads) = &self.heads {
            let heads: Vec<String> = heads
                .iter()
                .map(|h| bs58::encode(h.as_ref()).with_check().into_string())
                .collect();
            write!(f, "#{}", heads.join("|"))?;
        }
        Ok(())
    }
}

impl FromStr for AutomergeUrl {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix(URL_PREFIX).ok_or(IdError::MissingPrefix)?;
        let (id, heads) = match rest.split_once('#') {
            Some((id, heads)) => (id, Some(heads)),
            None => (rest, None),
        };
        let heads = heads
            .map(|heads| {
                heads
                    .split('|')
                    .map(|h| {
                        let bytes = decode_check(h)?;
                        ChangeHash::try_from(bytes.as_slice()).map_err(|_| IdError::BadHead)
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Self {
            document_id: id.parse()?,
            heads,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_string_form() {
        let id = DocumentId::random();
        let parsed: DocumentId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        let url: AutomergeUrl = id.url().to_string().parse().unwrap();
        assert_eq!(url.document_id, id);
        assert!(url.to_string().starts_with("automerge:"));
    }

    #[test]
    fn parses_a_url_written_by_the_javascript_client() {
        // A UUID's bytes, bs58check-encoded, as automerge-repo's `generateAutomergeUrl` writes.
        let id = DocumentId::from_bytes(
            *b"\x11\x22\x33\x44\x55\x66\x47\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x00",
        );
        let text = format!("automerge:{id}");
        assert_eq!(text.parse::<AutomergeUrl>().unwrap().document_id, id);
    }

    #[test]
    fn url_heads_round_trip() {
        let head = ChangeHash([7u8; 32]);
        let url = AutomergeUrl {
            document_id: DocumentId::random(),
            heads: Some(vec![head]),
        };
        let parsed: AutomergeUrl = url.to_string().parse().unwrap();
        assert_eq!(parsed, url);
    }

    #[test]
    fn refuses_bad_ids_with_a_reason() {
        assert!(matches!(
            "hello".parse::<DocumentId>(),
            Err(IdError::NotBs58Check(_))
        ));
        let short = bs58::encode([1u8, 2, 3]).with_check().into_string();
        assert_eq!(short.parse::<DocumentId>(), Err(IdError::WrongLength(3)));
        // A long id the official client would take is still read for its
        // length, up to the limit.
        let long = bs58::encode([7u8; 150]).with_check().into_string();
        assert!(
            long.len() > 200 && long.len() <= MAX_ID_CHARS,
            "{}",
            long.len()
        );
        assert_eq!(long.parse::<DocumentId>(), Err(IdError::WrongLength(150)));
        assert_eq!("xyz".parse::<AutomergeUrl>(), Err(IdError::MissingPrefix));
        assert!(matches!(
            "1".repeat(500).parse::<DocumentId>(),
            Err(IdError::NotBs58Check(_))
        ));
    }
}
