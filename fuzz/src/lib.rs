//! Input formats shared by the fuzz targets and the seeds generator, so
//! seeds are written in exactly the layout the targets read.

/// Whether `TWINSYNC_FUZZ_TRACE` is set: targets then say what each input
/// did, for reading seeds and crashes (`cargo fuzz run <target> <file>`).
pub fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("TWINSYNC_FUZZ_TRACE").is_some())
}

/// Splits `data` into pieces, each `[u16 LE length][bytes]`. A length past
/// the end takes what is left, so every input means something.
pub fn split_u16(data: &[u8]) -> Vec<&[u8]> {
    split(data, 2)
}

/// As [`split_u16`] with 4-byte lengths, for whole saved documents.
pub fn split_u32(data: &[u8]) -> Vec<&[u8]> {
    split(data, 4)
}

fn split(mut data: &[u8], width: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= width {
        let mut len = [0u8; 8];
        len[..width].copy_from_slice(&data[..width]);
        let len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
        let rest = &data[width..];
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        out.push(piece);
        data = tail;
    }
    out
}

pub fn join_u16(pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces {
        let len = u16::try_from(p.len()).expect("a piece under 64 KiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

pub fn join_u32(pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces {
        let len = u32::try_from(p.len()).expect("a piece under 4 GiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// One step of the `sync_engine` target: flags, then the sync payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepFlags(pub u8);

impl StepFlags {
    /// Deliver the payload as a `request` (the peer has no copy).
    pub const REQUEST: u8 = 1;
    /// The check refuses what `read_document` finds invalid, as the
    /// server's `check_write` does.
    pub const STRICT: u8 = 2;
    /// Reset the peer's state first, as after a lost connection.
    pub const RESET: u8 = 4;

    pub fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }
}

/// `sync_engine` input: steps of `[flags][u16 LE length][payload]`; a
/// length past the end takes what is left.
pub fn sync_steps(mut data: &[u8]) -> Vec<(StepFlags, &[u8])> {
    let mut out = Vec::new();
    while let [flags, a, b, rest @ ..] = data {
        let len = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
        let (payload, tail) = rest.split_at(len);
        out.push((StepFlags(*flags), payload));
        data = tail;
    }
    out
}

pub fn join_sync_steps(steps: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (flags, payload) in steps {
        let len = u16::try_from(payload.len()).expect("a payload under 64 KiB");
        out.push(*flags);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(payload);
    }
    out
}

/// Who a request of the `http_api` target claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    /// The coordinator's token, as `Authorization: Bearer`.
    Coordinator,
    /// The coordinator's token as the `token` query parameter.
    CoordinatorInQuery,
    Delegate,
    /// A device revoked before the run.
    Revoked,
    /// `HttpInput::bad_token`, as given.
    Bad,
}

impl Auth {
    const ALL: [Auth; 6] = [
        Auth::None,
        Auth::Coordinator,
        Auth::CoordinatorInQuery,
        Auth::Delegate,
        Auth::Revoked,
        Auth::Bad,
    ];
}

/// The routes of `server/src/startup.rs` that take a token; `{id}` is
/// replaced by the input's id.
pub const ROUTES: [&str; 16] = [
    "/api/records",
    "/api/records/{id}",
    "/api/records/{id}/conflicts",
    "/api/records/{id}/history",
    "/api/changes",
    "/api/export/agreements.csv",
    "/api/export/projects.csv",
    "/api/me",
    "/api/invites",
    "/api/invites/redeem",
    "/api/devices",
    "/api/devices/{id}/revoke",
    "/api/quarantine",
    "/api/quarantine/{id}/accept",
    "/api/quarantine/{id}/discard",
    // Written with PATCH (`post` picks a route's writing method).
    "/api/devices/{id}",
];

/// Where `{id}` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    /// One of the ids the target knows (records, devices, batch numbers),
    /// by index modulo their count: fuzz bytes alone would never hit one.
    Known(u8),
    Raw(Vec<u8>),
}

/// One request of the `http_api` target. A hand-rolled layout rather than
/// `Arbitrary`, so the seeds generator can write inputs of a given shape:
/// `[method|auth|json][route][id selector]` then four `[u16 len][bytes]`
/// pieces: raw id, query, bad token, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpInput {
    pub post: bool,
    pub auth: Auth,
    /// Send `Content-Type: application/json`.
    pub json: bool,
    pub route: usize,
    pub id: Id,
    pub query: Vec<u8>,
    pub bad_token: Vec<u8>,
    pub body: Vec<u8>,
}

impl HttpInput {
    pub fn decode(data: &[u8]) -> Option<HttpInput> {
        let [head, route, id_sel, rest @ ..] = data else {
            return None;
        };
        let mut pieces = split_u16(rest).into_iter();
        let mut next = || pieces.next().unwrap_or_default().to_vec();
        let raw_id = next();
        Some(HttpInput {
            post: head & 1 != 0,
            auth: Auth::ALL[usize::from((head >> 1) & 7) % Auth::ALL.len()],
            json: head & 0x10 != 0,
            route: usize::from(*route) % ROUTES.len(),
            id: if *id_sel == 0xff {
                Id::Raw(raw_id)
            } else {
                Id::Known(*id_sel)
            },
            query: next(),
            bad_token: next(),
            body: next(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let auth = Auth::ALL
            .iter()
            .position(|a| *a == self.auth)
            .expect("a listed auth") as u8;
        let head = u8::from(self.post) | auth << 1 | u8::from(self.json) << 4;
        let (id_sel, raw): (u8, &[u8]) = match &self.id {
            Id::Known(i) => (*i.min(&0xfe), &[]),
            Id::Raw(bytes) => (0xff, bytes),
        };
        let mut out = vec![head, self.route as u8, id_sel];
        out.extend(join_u16(&[raw, &self.query, &self.bad_token, &self.body]));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_input_round_trips() {
        let input = HttpInput {
            post: true,
            auth: Auth::Bad,
            json: true,
            route: 11,
            id: Id::Raw(b"abc".to_vec()),
            query: b"at=2025-10-31".to_vec(),
            bad_token: b"x.y".to_vec(),
            body: b"{}".to_vec(),
        };
        assert_eq!(HttpInput::decode(&input.encode()), Some(input));
    }

    #[test]
    fn sync_steps_round_trip() {
        let data = join_sync_steps(&[(1, b"abc"), (6, b"")]);
        let steps = sync_steps(&data);
        assert_eq!(
            steps,
            vec![(StepFlags(1), &b"abc"[..]), (StepFlags(6), &b""[..])]
        );
    }
}
