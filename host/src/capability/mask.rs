//! Masking of secret values in every text the host writes: terminal, store, API.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::Value as Json;
use std::ops::Range;
use std::sync::RwLock;

/// What a secret is replaced with.
pub(crate) const MASK: &str = "***";

/// Secrets shorter than this are masked only as written, not in encoded forms (their
/// encodings are too short to be told from ordinary text).
const MIN_ENCODED: usize = 8;

/// The secrets known so far in a run; grows as plugins return secret outputs.
#[derive(Debug, Default)]
pub struct Masker {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Every form of every secret, with the step whose output it is (`None`: the run's own
    /// secrets, connection credentials).
    needles: Vec<(String, Option<String>)>,
    /// Over `needles`, reporting overlapping matches (so a longer needle cannot hide a
    /// shorter one inside it).
    matcher: Option<AhoCorasick>,
}

impl Masker {
    /// Start masking `secret` (one of the run's own) from now on, in every text.
    pub fn register(&self, secret: &str) {
        self.add(secret, None);
    }

    /// Start masking `secret`, an output of step `step`: in text written for that step and
    /// the steps that need it (see [`Masker::mask_seen_by`]), and in whatever is shown.
    pub fn register_output(&self, step: &str, secret: &str) {
        self.add(secret, Some(step));
    }

    fn add(&self, secret: &str, origin: Option<&str>) {
        if secret.is_empty() {
            return;
        }
        let forms = forms(secret);
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let before = inner.needles.len();
        for form in forms {
            let origin = origin.map(String::from);
            if !inner
                .needles
                .iter()
                .any(|(n, o)| *n == form && *o == origin)
            {
                inner.needles.push((form, origin));
            }
        }
        if inner.needles.len() != before {
            inner.matcher = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(inner.needles.iter().map(|(n, _)| n))
                .ok();
        }
    }

    /// `text` with every known secret replaced by [`MASK`].
    pub fn mask(&self, text: &str) -> String {
        self.mask_seen_by(text, |_| true)
    }

    /// `text` with the run's own secrets and the outputs of the steps `sees` accepts replaced
    /// by [`MASK`]: text the host writes about a step is masked only with what that step could
    /// have seen, so a plugin cannot make the host hide its audit rows by returning their
    /// words as "secrets".
    pub fn mask_seen_by(&self, text: &str, sees: impl Fn(&str) -> bool) -> String {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let Some(matcher) = &inner.matcher else {
            return text.to_string();
        };
        let mut hidden: Vec<Range<usize>> = Vec::new();
        for m in matcher.find_overlapping_iter(text) {
            let (_, origin) = &inner.needles[m.pattern().as_usize()];
            if origin.as_deref().is_none_or(&sees) {
                hidden.push(m.range());
            }
        }
        if hidden.is_empty() {
            return text.to_string();
        }
        hidden.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(hidden.len());
        for range in hidden {
            match merged.last_mut() {
                Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
                _ => merged.push(range),
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for range in merged {
            out.push_str(&text[at..range.start]);
            out.push_str(MASK);
            at = range.end;
        }
        out.push_str(&text[at..]);
        out
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

/// The forms a secret shows up in: as written and JSON-escaped, and, when long enough to be
/// told apart from ordinary text, base64 (standard and URL-safe, with and without padding),
/// percent-encoded and hex (both cases).
fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    let escaped = serde_json::to_string(secret).unwrap_or_default();
    out.push(escaped.trim_matches('"').to_string());
    if secret.len() >= MIN_ENCODED {
        let bytes = secret.as_bytes();
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            out.push(engine.encode(bytes));
        }
        out.push(
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        );
        out.push(hex::encode(bytes));
        out.push(hex::encode_upper(bytes));
    }
    out.retain(|f| !f.is_empty());
    out.sort();
    out.dedup();
    out
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

    #[test]
    fn the_common_encodings_of_a_secret_are_masked_too() {
        let m = Masker::default();
        let secret = "s3cr3t/p@ss+word?";
        m.register(secret);
        let encoded = [
            STANDARD.encode(secret),
            STANDARD_NO_PAD.encode(secret),
            URL_SAFE.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
            hex::encode(secret),
            hex::encode_upper(secret),
            "s3cr3t/p@ss+word?".to_string(),
        ];
        for form in encoded {
            assert_eq!(
                m.mask(&format!("Authorization: Basic {form}.")),
                "Authorization: Basic ***.",
                "{form}"
            );
        }
        // A short one only as written: its encodings are ordinary-looking text.
        m.register("abc");
        assert_eq!(m.mask("abc YWJj 616263"), "*** YWJj 616263");
    }

    #[test]
    fn overlapping_secrets_are_both_hidden() {
        let m = Masker::default();
        m.register("abcd1234");
        m.register("1234wxyz");
        assert_eq!(m.mask("[abcd1234wxyz]"), "[***]");
        assert_eq!(m.mask("abcd1234 and 1234wxyz"), "*** and ***");
    }

    #[test]
    fn a_steps_outputs_are_masked_only_where_that_step_could_be_seen() {
        let m = Masker::default();
        m.register("run-secret-1");
        m.register_output("poisoner", "127.0.0.1");
        let audit = "may not reach `127.0.0.1:5432` (run-secret-1)";
        assert_eq!(
            m.mask_seen_by(audit, |step| step == "poisoner"),
            "may not reach `***:5432` (***)"
        );
        assert_eq!(
            m.mask_seen_by(audit, |_| false),
            "may not reach `127.0.0.1:5432` (***)",
            "another step's audit row keeps its words"
        );
        // A longer secret of another step cannot shield a visible one inside it.
        m.register_output("other", "xxrun-secret-1xx");
        assert_eq!(m.mask_seen_by("xxrun-secret-1xx", |_| false), "xx***xx");
    }
}
