//! Who is calling: the device behind a request's token, as axum
//! extractors. A missing, wrong or expired token is HTTP 401; a device
//! without the right role is 403; an address that failed too often is 429.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
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

/// The caller's address, when the server runs with connection info.
pub fn client_ip(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

impl FromRequestParts<Arc<Hub>> for Authenticated {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, Denied> {
        let token = token_from(&parts.headers, parts.uri.query());
        let device = hub.authenticate(token.as_deref(), client_ip(parts)).await?;
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
