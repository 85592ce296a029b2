//! Who may trigger runs: bearer API tokens (random, shown once, stored as SHA-256) and webhook
//! deliveries signed with HMAC-SHA256 over the raw body (`X-Hub-Signature-256`).

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};

/// Prefix of every token: recognisable in a leaked-secret scan.
const TOKEN_PREFIX: &str = "orch_";

/// Headers carrying a delivery id, by forge.
pub(crate) const DELIVERY_HEADERS: &[&str] = &[
    "x-github-delivery",
    "x-gitea-delivery",
    "x-gogs-delivery",
    "x-delivery-id",
];

/// Optional signed timestamp (seconds since the epoch): when present the signature covers
/// `"{timestamp}.{body}"` and deliveries older than [`MAX_AGE_SECS`] are refused as stale.
pub(crate) const TIMESTAMP_HEADER: &str = "x-webhook-timestamp";

/// How old a timestamped delivery may be.
pub(crate) const MAX_AGE_SECS: i64 = 300;

/// A new random token and the hash to store.
pub(crate) fn new_token() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let hash = hash_token(&token);
    (token, hash)
}

/// What the store keeps of a token.
pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A pasted token without surrounding blanks or a `Bearer ` prefix.
pub(crate) fn bearer_free_token(pasted: &str) -> &str {
    let pasted = pasted.trim();
    pasted.strip_prefix("Bearer ").unwrap_or(pasted).trim()
}

/// The bearer token of a request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Why a webhook delivery is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum WebhookError {
    #[error(
        "missing X-Hub-Signature-256 header: sign the body with the webhook secret (HMAC-SHA256)"
    )]
    NoSignature,
    #[error("signature does not match the body: check the webhook secret")]
    BadSignature,
    #[error("missing delivery id header (X-GitHub-Delivery, X-Gitea-Delivery or X-Delivery-Id)")]
    NoDelivery,
    #[error(
        "missing {TIMESTAMP_HEADER} header: this webhook takes only timestamped deliveries (sign \"TIMESTAMP.BODY\"), or set `require_timestamp = false` for a forge that cannot send one"
    )]
    NoTimestamp,
    #[error("stale delivery: signed {0} s ago, more than {MAX_AGE_SECS} s")]
    Stale(i64),
    #[error("invalid {TIMESTAMP_HEADER} header: seconds since the epoch expected")]
    BadTimestamp,
}

/// Check a delivery's signature (GitHub/Gitea style, compared in constant time) and its
/// timestamp (required unless `require_timestamp` is off: without one, a captured delivery
/// replays under a new delivery id); returns its delivery id.
pub(crate) fn verify_delivery(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
    require_timestamp: bool,
) -> Result<String, WebhookError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signature = header("x-hub-signature-256")
        .and_then(|s| s.strip_prefix("sha256="))
        .ok_or(WebhookError::NoSignature)?;
    let signature = hex::decode(signature.trim()).map_err(|_| WebhookError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    let timestamp = match header(TIMESTAMP_HEADER) {
        Some(ts) => Some(
            ts.trim()
                .parse::<i64>()
                .map_err(|_| WebhookError::BadTimestamp)?,
        ),
        None if require_timestamp => return Err(WebhookError::NoTimestamp),
        None => None,
    };
    if let Some(ts) = timestamp {
        mac.update(format!("{ts}.").as_bytes());
    }
    mac.update(body);
    // Constant-time comparison.
    mac.verify_slice(&signature)
        .map_err(|_| WebhookError::BadSignature)?;
    if let Some(ts) = timestamp
        && (now_secs - ts).abs() > MAX_AGE_SECS
    {
        return Err(WebhookError::Stale(now_secs - ts));
    }
    DELIVERY_HEADERS
        .iter()
        .find_map(|h| header(h))
        .map(str::to_string)
        .filter(|d| !d.is_empty())
        .ok_or(WebhookError::NoDelivery)
}

/// The value at a dotted path of a JSON payload (`repository.full_name`, `commits.0.id`).
pub(crate) fn payload_value<'a>(
    payload: &'a serde_json::Value,
    path: &[String],
) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(payload, |v, key| match v {
        serde_json::Value::Array(items) => items.get(key.parse::<usize>().ok()?),
        _ => v.get(key),
    })
}

/// Sign a body like a forge does (for the tests and fuzzing of verification).
pub(crate) fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_signed_delivery_passes_and_any_change_fails() {
        let body = br#"{"ref":"main"}"#;
        let ok = headers(&[
            ("x-hub-signature-256", sign(b"s3cret", body)),
            ("x-gitea-delivery", "d-1".into()),
        ]);
        assert_eq!(
            verify_delivery(b"s3cret", &ok, body, 0, false),
            Ok("d-1".into())
        );
        assert_eq!(
            verify_delivery(b"s3cret", &ok, br#"{"ref":"evil"}"#, 0, false),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_delivery(b"other", &ok, body, 0, false),
            Err(WebhookError::BadSignature)
        );
        let unsigned = headers(&[("x-gitea-delivery", "d-1".into())]);
        assert_eq!(
            verify_delivery(b"s3cret", &unsigned, body, 0, false),
            Err(WebhookError::NoSignature)
        );
        let no_id = headers(&[("x-hub-signature-256", sign(b"s3cret", body))]);
        assert_eq!(
            verify_delivery(b"s3cret", &no_id, body, 0, false),
            Err(WebhookError::NoDelivery)
        );
    }

    #[test]
    fn a_timestamped_delivery_is_signed_with_its_timestamp_and_expires() {
        let body = b"{}";
        let signed = |ts: i64| {
            let mut msg = format!("{ts}.").into_bytes();
            msg.extend_from_slice(body);
            headers(&[
                ("x-hub-signature-256", sign(b"k", &msg)),
                ("x-delivery-id", "d".into()),
                (TIMESTAMP_HEADER, ts.to_string()),
            ])
        };
        assert!(verify_delivery(b"k", &signed(1000), body, 1100, true).is_ok());
        let untimed = headers(&[
            ("x-hub-signature-256", sign(b"k", body)),
            ("x-delivery-id", "d".into()),
        ]);
        assert!(verify_delivery(b"k", &untimed, body, 1100, false).is_ok());
        assert_eq!(
            verify_delivery(b"k", &untimed, body, 1100, true),
            Err(WebhookError::NoTimestamp),
            "replayable, so refused unless the webhook allows it"
        );
        assert_eq!(
            verify_delivery(b"k", &signed(1000), body, 1000 + MAX_AGE_SECS + 1, true),
            Err(WebhookError::Stale(MAX_AGE_SECS + 1))
        );
        // Moving the timestamp forward breaks the signature.
        let mut moved = signed(1000);
        moved.insert(TIMESTAMP_HEADER, "2000".parse().unwrap());
        assert_eq!(
            verify_delivery(b"k", &moved, body, 2000, false),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with("orch_") && a.len() == 5 + 64);
        assert_eq!(hash_token(&a), ha);
        assert_ne!(ha, a);
    }

    #[test]
    fn payload_paths_walk_objects_and_arrays() {
        let p = serde_json::json!({"repository": {"full_name": "a/b"}, "commits": [{"id": "c1"}]});
        let path = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            payload_value(&p, &path("repository.full_name")),
            Some(&"a/b".into())
        );
        assert_eq!(payload_value(&p, &path("commits.0.id")), Some(&"c1".into()));
        assert_eq!(payload_value(&p, &path("commits.1.id")), None);
    }
}
