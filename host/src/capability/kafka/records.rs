//! The records of `produce-json`, decoded one at a time from the guest's JSON text, borrowing
//! from it where they can, so that the first are sent while the rest are read.

use crate::capability::bindings::orch::plugin::kafka::Error;
use serde::de::{Deserializer as _, Error as _, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// One record of `produce-json`, borrowing from the guest's text where it can.
#[derive(Debug, PartialEq)]
pub(super) struct JsonRecord<'a> {
    pub key: Option<Cow<'a, [u8]>>,
    pub value: Option<Cow<'a, [u8]>>,
    pub headers: BTreeMap<String, String>,
    pub partition: Option<i32>,
}

/// A record as written: `key` and `value` still JSON text.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord<'a> {
    #[serde(default, borrow)]
    key: Option<&'a RawValue>,
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    partition: Option<i32>,
}

impl<'a> RawRecord<'a> {
    /// Strings as their text, other JSON as its text, null as none; a key must be a string.
    /// `number` counts from 1, in messages.
    fn decode(self, number: usize) -> Result<JsonRecord<'a>, String> {
        if self.key.is_some_and(|k| !k.get().starts_with('"')) {
            return Err(format!("record {number}: `key` must be a string or null"));
        }
        let text = |raw: Option<&'a RawValue>| raw.map(payload).transpose();
        Ok(JsonRecord {
            key: text(self.key).map_err(|e| format!("record {number}: {e}"))?,
            value: text(self.value).map_err(|e| format!("record {number}: {e}"))?,
            headers: self.headers,
            partition: self.partition,
        })
    }
}

/// Decode a JSON array of records one at a time, handing each to `each` before reading the
/// next; stops at the first error, from the JSON or from `each`.
pub(super) fn for_each_record<'a>(
    json: &'a str,
    each: impl FnMut(JsonRecord<'a>) -> Result<(), Error>,
) -> Result<(), Error> {
    struct Each<F> {
        each: F,
        failed: Option<Error>,
    }
    impl<'a, F: FnMut(JsonRecord<'a>) -> Result<(), Error>> Visitor<'a> for &mut Each<F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of records")
        }
        fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut index = 0;
            while let Some(raw) = seq.next_element::<RawRecord<'a>>()? {
                let record = raw.decode(index + 1).map_err(A::Error::custom)?;
                if let Err(e) = (self.each)(record) {
                    self.failed = Some(e);
                    return Err(A::Error::custom("stopped"));
                }
                index += 1;
            }
            Ok(())
        }
    }
    let mut visitor = Each { each, failed: None };
    let mut json = serde_json::Deserializer::from_str(json);
    let read = json.deserialize_seq(&mut visitor).and_then(|()| json.end());
    match (visitor.failed, read) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(Error::Other(format!("invalid records JSON: {e}"))),
        (None, Ok(())) => Ok(()),
    }
}

/// The bytes to send for a JSON value: a string's text (borrowed unless it has escapes), or
/// the JSON text of anything else.
fn payload(raw: &RawValue) -> Result<Cow<'_, [u8]>, serde_json::Error> {
    let json = raw.get();
    if !json.starts_with('"') {
        return Ok(Cow::Borrowed(json.as_bytes()));
    }
    Ok(match serde_json::from_str::<&str>(json) {
        Ok(text) => Cow::Borrowed(text.as_bytes()),
        Err(_) => Cow::Owned(serde_json::from_str::<String>(json)?.into_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> Option<Cow<'_, [u8]>> {
        Some(Cow::Borrowed(s.as_bytes()))
    }

    fn decode_records(json: &str) -> Result<Vec<JsonRecord<'_>>, Error> {
        let mut all = Vec::new();
        for_each_record(json, |r| {
            all.push(r);
            Ok(())
        })
        .map(|()| all)
    }

    #[test]
    fn json_records_send_strings_as_text_and_other_values_as_json() {
        let json = r#"[
            {"key": "k1", "value": "plain"},
            {"key": "k\"2", "value": {"n": 1, "s": "x"}, "partition": 2},
            {"value": null, "headers": {"h": "v"}},
            {"value": 42}
        ]"#;
        let records = decode_records(json).unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(records[0].key, bytes("k1"));
        assert!(matches!(records[0].key, Some(Cow::Borrowed(_))), "no copy");
        assert_eq!(records[0].value, bytes("plain"));
        assert_eq!(
            records[1].key.as_deref(),
            Some(&b"k\"2"[..]),
            "escapes decoded"
        );
        assert_eq!(records[1].value, bytes(r#"{"n": 1, "s": "x"}"#));
        assert_eq!(records[1].partition, Some(2));
        assert_eq!(
            (records[2].key.as_ref(), records[2].value.as_ref()),
            (None, None)
        );
        assert_eq!(records[2].headers["h"], "v");
        assert_eq!(records[3].value, bytes("42"));
    }

    #[test]
    fn bad_json_records_are_explained() {
        let message = |json: &str| match decode_records(json) {
            Err(Error::Other(m)) => m,
            other => panic!("expected an error, got {other:?}"),
        };
        assert!(message(r#"[{"kee": "a"}]"#).contains("unknown field `kee`"));
        assert!(message(r#"[{"key": 1}]"#).contains("record 1: `key` must be a string"));
        assert!(message(r#"{"key": "a"}"#).contains("expected an array of records"));
        assert!(message(r#"[{"key": "a"}] x"#).contains("trailing characters"));
        let mut seen = 0;
        let stopped = for_each_record(r#"[{}, {}, {}]"#, |_| {
            seen += 1;
            match seen {
                2 => Err(Error::Unavailable("queue gone".into())),
                _ => Ok(()),
            }
        });
        assert!(matches!(stopped, Err(Error::Unavailable(m)) if m == "queue gone"));
        assert_eq!(seen, 2, "nothing read after the failure");
    }
}
