//! Entry points for the fuzz targets (`fuzz/`): each takes untrusted bytes the way orch does
//! and must return (an error is fine) without panicking or hanging. Not a stable API.

use crate::serve::auth;
use crate::workflow::expr::{Scope, Template};
use serde_json::{Value as Json, json};
use std::path::Path;
use std::sync::Arc;

/// Parse and validate workflow text, and render its diagnostics.
pub fn workflow(text: &str) {
    if let Err(e) = crate::workflow::parse(Path::new("/nonexistent/fuzz/workflow.toml"), text) {
        let _ = e.to_string();
    }
}

/// Parse a `${{ }}` template (string or JSON document) and render it against a small scope.
pub fn template(text: &str) {
    let value = serde_json::from_str::<Json>(text).unwrap_or_else(|_| Json::String(text.into()));
    let Ok(template) = Template::parse(&value) else {
        return;
    };
    let scope = Scope {
        inputs: Arc::new(json!({"name": "ana", "n": 3, "list": [1, 2], "flag": true})),
        steps: [(
            "a".to_string(),
            Arc::new(json!({"status": "succeeded", "outputs": {"x": "y", "n": 1}})),
        )]
        .into(),
        secrets: Arc::new(json!({"TOKEN": "s3cret-value"})),
        env: Arc::new(json!({"HOME": "/root"})),
        run: Arc::new(json!({"id": "r1"})),
    };
    let _ = template.render(&scope);
}

/// Check a webhook delivery: `headers` as (name, value) lines, both timestamp modes, and a
/// payload path into the body. `signed` adds a valid signature over `"{now}.{body}"` and its
/// timestamp first, so what follows the signature check is reached too.
pub fn webhook(secret: &[u8], headers: &[(String, String)], body: &[u8], now: i64, signed: bool) {
    let mut map = http::HeaderMap::new();
    if signed {
        let mut message = format!("{now}.").into_bytes();
        message.extend_from_slice(body);
        if let Ok(signature) = http::HeaderValue::from_str(&auth::sign(secret, &message)) {
            map.append("x-hub-signature-256", signature);
            map.append(auth::TIMESTAMP_HEADER, now.into());
        }
    }
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
    for strict in [true, false] {
        let _ = auth::verify_delivery(secret, &map, body, now, strict);
    }
    if let Ok(payload) = serde_json::from_slice::<Json>(body) {
        let path: Vec<String> = headers
            .iter()
            .map(|(name, _)| name.clone())
            .take(8)
            .collect();
        let _ = auth::payload_value(&payload, &path);
    }
}
