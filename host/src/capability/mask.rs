//! Masking of secret values in every text the host writes: terminal, store, API.

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value as Json;
use std::sync::RwLock;

/// What a secret is replaced with.
pub(crate) const MASK: &str = "***";

/// The secrets known so far in a run; grows as plugins return secret outputs.
#[derive(Debug, Default)]
pub struct Masker {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    secrets: Vec<String>,
    matcher: Option<AhoCorasick>,
}

impl Masker {
    /// Start masking `secret` (and its JSON-escaped form) from now on.
    pub fn register(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let escaped = serde_json::to_string(secret).unwrap_or_default();
        let escaped = escaped.trim_matches('"').to_string();
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let before = inner.secrets.len();
        for s in [secret.to_string(), escaped] {
            if !s.is_empty() && !inner.secrets.contains(&s) {
                inner.secrets.push(s);
            }
        }
        if inner.secrets.len() != before {
            inner.matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&inner.secrets)
                .ok();
        }
    }

    /// `text` with every known secret replaced by [`MASK`].
    pub fn mask(&self, text: &str) -> String {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        match &inner.matcher {
            Some(m) => m.replace_all(text, &vec![MASK; inner.secrets.len()]),
            None => text.to_string(),
        }
    }

    /// A JSON value with every string (and key) masked.
    pub fn mask_json(&self, value: &Json) -> Json {
        match value {
            Json::String(s) => Json::String(self.mask(s)),
            Json::Array(items) => Json::Array(items.iter().map(|v| self.mask_json(v)).collect()),
            Json::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| (self.mask(k), self.mask_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_registered_secrets_including_json_escaped_form() {
        let m = Masker::default();
        assert_eq!(m.mask("nothing yet"), "nothing yet");
        m.register("pa\"ss");
        m.register("");
        assert_eq!(m.mask("a pa\"ss b"), "a *** b");
        assert_eq!(m.mask(r#"{"p":"pa\"ss"}"#), r#"{"p":"***"}"#);
    }
}
