//! The tracker's and notifier's admin APIs, as the console calls them: with the
//! service credential (`Authorization: Bearer <service_token>`) and the signed-in
//! account's tenant in `X-Loa-Tenant`, so every answer is that tenant's only.

use loa_platform::{http::TENANT_HEADER, Secret};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// Which service to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Dossiers, today's events.
    Tracker,
    /// Deliveries, dead letters, pause, overview numbers, citizen messages.
    Notifier,
}

/// Why a call did not give an answer to show.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// 404: not this tenant's, or does not exist (the same to the console).
    #[error("not found")]
    NotFound,
    /// Another 4xx: the request was refused; the service's message and field.
    #[error("refused ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The service's `error.message`.
        message: String,
        /// The service's `error.field`.
        field: Option<String>,
    },
    /// Unreachable, 5xx, or an answer that is not what was expected.
    #[error(transparent)]
    Unavailable(#[from] anyhow::Error),
}

/// A client of both admin APIs.
#[derive(Clone)]
pub struct Backend {
    client: reqwest::Client,
    tracker: String,
    notifier: String,
    token: Secret,
}

impl Backend {
    /// A client with `timeout` per call.
    pub fn new(
        tracker_url: &str,
        notifier_url: &str,
        token: Secret,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| anyhow::anyhow!("Failed to build the backend HTTP client: {e}"))?,
            tracker: tracker_url.trim_end_matches('/').to_owned(),
            notifier: notifier_url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn url(&self, service: Service, path: &str) -> String {
        let base = match service {
            Service::Tracker => &self.tracker,
            Service::Notifier => &self.notifier,
        };
        format!("{base}{path}")
    }

    fn request(
        &self,
        method: reqwest::Method,
        service: Service,
        tenant: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(service, path))
            .bearer_auth(self.token.expose())
            .header(TENANT_HEADER, tenant)
    }

    /// `GET path` with `query`, as JSON.
    pub async fn get<T: DeserializeOwned>(
        &self,
        service: Service,
        tenant: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, BackendError> {
        let response = self
            .request(reqwest::Method::GET, service, tenant, path)
            .query(query)
            .send()
            .await;
        decode(response).await
    }

    /// `POST path` with a JSON body, as JSON.
    pub async fn post<T: DeserializeOwned>(
        &self,
        service: Service,
        tenant: &str,
        path: &str,
        body: &Value,
    ) -> Result<T, BackendError> {
        let response = self
            .request(reqwest::Method::POST, service, tenant, path)
            .json(body)
            .send()
            .await;
        decode(response).await
    }

    /// `POST path` with a raw body of `content_type` (a CSV import), as JSON, allowed
    /// `timeout` instead of the usual per-call time-out (an import of many lines
    /// takes longer than a page's call).
    pub async fn post_raw<T: DeserializeOwned>(
        &self,
        service: Service,
        tenant: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<T, BackendError> {
        let response = self
            .request(reqwest::Method::POST, service, tenant, path)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        decode(response).await
    }

    /// `GET path` as raw bytes (an SVG).
    pub async fn get_bytes(
        &self,
        service: Service,
        tenant: &str,
        path: &str,
    ) -> Result<Vec<u8>, BackendError> {
        let response = self
            .request(reqwest::Method::GET, service, tenant, path)
            .send()
            .await;
        let response = checked(response).await?;
        Ok(response
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!("Failed to read an answer: {e}"))?
            .to_vec())
    }
}

async fn checked(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<reqwest::Response, BackendError> {
    let response = response.map_err(|e| anyhow::anyhow!("The service did not answer: {e}"))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(BackendError::NotFound);
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_client_error() {
        return Err(BackendError::Refused {
            status: status.as_u16(),
            message: body["error"]["message"]
                .as_str()
                .unwrap_or("refused")
                .to_owned(),
            field: body["error"]["field"].as_str().map(str::to_owned),
        });
    }
    Err(BackendError::Unavailable(anyhow::anyhow!(
        "The service answered {status}"
    )))
}

async fn decode<T: DeserializeOwned>(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, BackendError> {
    let response = checked(response).await?;
    response
        .json()
        .await
        .map_err(|e| BackendError::Unavailable(anyhow::anyhow!("Unexpected answer: {e}")))
}

/// Percent-encodes one path segment (dossier codes are opaque and may hold any
/// character).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_keep_unreserved_characters_and_encode_the_rest() {
        assert_eq!(
            segment("000.00.06.H56-261128-0001"),
            "000.00.06.H56-261128-0001"
        );
        assert_eq!(segment("a/b c?#%"), "a%2Fb%20c%3F%23%25");
        assert_eq!(segment("Hồ"), "H%E1%BB%93");
    }
}
