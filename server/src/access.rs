//! Who is calling: the device behind a request's token, as axum
//! extractors. A missing, wrong or expired token is HTTP 401; a device
//! without the right role is 403; an address that failed too often is 429.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;
use crate::auth::{Device, token_from};
use crate::hub::{Hub, SignInError};

/// Any device with a valid token, revoked ones included (they may still
/// hand in what they have not synced).
#[derive(Debug, Clone)]
pub struct Authenticated(pub Device);

/// A device that may read the club's records.
#[derive(Debug, Clone)]
pub struct Member(pub Device);

/// A coordinator's device.
#[derive(Debug, Clone)]
pub struct Coordinator(pub Device);

/// Why a request was not let in, as an HTTP answer.
#[derive(Debug)]
pub struct Denied {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
    /// As [`ApiError::code`].
    code: Option<&'static str>,
}

impl Denied {
    /// 401, with a Bearer challenge.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            retry_after: None,
            code: None,
        }
    }

    /// 429, with how long to wait.
    pub fn too_many(message: impl Into<String>, wait: std::time::Duration) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: message.into(),
            retry_after: Some(crate::auth::whole_seconds(wait)),
            code: None,
        }
    }

    fn forbidden(code: &'static str, message: &str) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.to_owned(),
            retry_after: None,
            code: Some(code),
        }
    }
}

impl From<SignInError> for Denied {
    fn from(e: SignInError) -> Self {
        let (status, retry_after, code) = match &e {
            SignInError::Auth(_) => (StatusCode::UNAUTHORIZED, None, "signed-out"),
            SignInError::Limited(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                Some(crate::auth::whole_seconds(*wait)),
                "too-many-attempts",
            ),
            SignInError::Store(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "database-unavailable",
            ),
        };
        let message = match e {
            SignInError::Store(e) => {
                tracing::error!(error = %e, "cannot check a token");
                "the server cannot check tokens right now; try again shortly".to_owned()
            }
            other => other.to_string(),
        };
        Self {
            status,
            message,
            retry_after,
            code: Some(code),
        }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let mut error = ApiError::new(self.status, self.message);
        if let Some(code) = self.code {
            error = error.code(code);
        }
        let mut res = error.into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"twinsync\""),
            );
        }
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

/// The address the caller's limits count under, when the server runs with
/// connection info: the socket's peer, or the client a trusted proxy names
/// (see [`forwarded_client`]), an IPv6 address by its /64 (see
/// [`counted`]).
pub fn client_ip(parts: &Parts, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    Some(counted(forwarded_client(peer, &parts.headers, trusted)))
}

/// An IPv6 address as its /64: one phone on a mobile network holds a
/// whole /64, and would otherwise have a fresh count of failed sign-ins
/// for every address in it. IPv4 addresses are counted as they are.
pub fn counted(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[ipnet::IpNet]) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client behind `peer`. From an address that is not a trusted proxy,
/// `peer` itself: anyone can write `X-Forwarded-For`. From a trusted
/// proxy, `X-Forwarded-For` is read from the right, where each proxy added
/// the address it was reached from, and the first address that is not a
/// trusted proxy is the client. A hop that is not an address ends the walk
/// at the last one that was.
pub fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let mut client = peer.to_canonical();
    if !is_trusted(client, trusted) {
        return client;
    }
    // From the last line's last hop back. Split as bytes: a client's
    // non-ASCII byte on the line a proxy appended to must cost only its
    // own hop, which ends the walk, not the proxy's.
    let lines: Vec<&HeaderValue> = headers.get_all("x-forwarded-for").iter().collect();
    let hops = lines
        .into_iter()
        .rev()
        .flat_map(|line| line.as_bytes().rsplit(|b| *b == b','));
    for hop in hops {
        let Some(ip) = std::str::from_utf8(hop).ok().and_then(hop_address) else {
            break;
        };
        client = ip;
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:5678`.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let bare = hop
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(hop);
    bare.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

impl FromRequestParts<Arc<Hub>> for Authenticated {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, Denied> {
        // A token in the query only where a WebSocket client has no other
        // place for it: on any other route it would only be a token
        // written into logs.
        let query = (parts.uri.path() == "/sync")
            .then(|| parts.uri.query())
            .flatten();
        let token = token_from(&parts.headers, query);
        let ip = client_ip(parts, &hub.settings.trusted_proxies);
        let device = hub.authenticate(token.as_deref(), ip).await?;
        Ok(Self(device))
    }
}

impl FromRequestParts<Arc<Hub>> for Member {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, Denied> {
        let Authenticated(device) = Authenticated::from_request_parts(parts, hub).await?;
        if !crate::permissions::may_read(&device) {
            return Err(Denied::forbidden(
                "revoked",
                "this device was revoked; it may only hand in unsynced changes",
            ));
        }
        Ok(Self(device))
    }
}

impl FromRequestParts<Arc<Hub>> for Coordinator {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, Denied> {
        let Member(device) = Member::from_request_parts(parts, hub).await?;
        if !device.is_coordinator() {
            return Err(Denied::forbidden(
                "not-coordinator",
                "only a coordinator may do this",
            ));
        }
        Ok(Self(device))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;

    fn client(peer: &str, forwarded: &[&str], trusted: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for f in forwarded {
            headers.append("x-forwarded-for", HeaderValue::from_str(f).unwrap());
        }
        let trusted: Vec<ipnet::IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        forwarded_client(peer.parse().unwrap(), &headers, &trusted).to_string()
    }

    #[test]
    fn only_a_trusted_proxy_names_the_client() {
        // No proxy trusted, or a request not from one: the header is the
        // client's own words, and ignored.
        assert_eq!(client("203.0.113.9", &["198.51.100.1"], &[]), "203.0.113.9");
        assert_eq!(
            client("203.0.113.9", &["198.51.100.1"], &["127.0.0.1/32"]),
            "203.0.113.9"
        );
        // From the proxy: the address it was reached from.
        assert_eq!(
            client("127.0.0.1", &["198.51.100.1"], &["127.0.0.1/32"]),
            "198.51.100.1"
        );
        // A client that wrote its own header before the proxy appended:
        // the rightmost untrusted hop, not the leftmost.
        assert_eq!(
            client("127.0.0.1", &["1.1.1.1, 198.51.100.1"], &["127.0.0.1/32"]),
            "198.51.100.1"
        );
        // Two proxies of ours, over two header lines.
        assert_eq!(
            client(
                "10.0.0.2",
                &["198.51.100.1, 10.0.0.7", "10.0.0.3"],
                &["10.0.0.0/8"]
            ),
            "198.51.100.1"
        );
        // Ports and IPv6, bracketed or not; IPv4 mapped into IPv6.
        assert_eq!(
            client(
                "::ffff:127.0.0.1",
                &["[2001:db8::5]:4711"],
                &["127.0.0.1/32"]
            ),
            "2001:db8::5"
        );
        assert_eq!(
            client("127.0.0.1", &["198.51.100.1:80"], &["127.0.0.1/32"]),
            "198.51.100.1"
        );
        // A hop that is no address stops the walk at the last that was.
        assert_eq!(
            client("127.0.0.1", &["198.51.100.1, unknown"], &["127.0.0.1/32"]),
            "127.0.0.1"
        );
        // No header from the proxy: the proxy itself.
        assert_eq!(client("127.0.0.1", &[], &["127.0.0.1/32"]), "127.0.0.1");
        assert_eq!(
            client("127.0.0.1", &["[2001:db8::7]"], &["127.0.0.1/32"]),
            "2001:db8::7"
        );
    }

    #[test]
    fn a_clients_stray_byte_does_not_cost_the_hop_the_proxy_appended() {
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\x80, 198.51.100.1").unwrap(),
        );
        let trusted = ["127.0.0.1/32".parse().unwrap()];
        let ip = forwarded_client("127.0.0.1".parse().unwrap(), &headers, &trusted);
        assert_eq!(ip.to_string(), "198.51.100.1");
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64_and_an_ipv4_one_by_itself() {
        let a = counted("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = counted("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2001:db8:1:2::");
        assert_ne!(a, counted("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(
            counted("::ffff:198.51.100.1".parse().unwrap()).to_string(),
            "198.51.100.1"
        );
    }
}
