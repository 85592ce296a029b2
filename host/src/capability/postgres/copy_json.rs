//! The rows of `copy-json`: a JSON array of objects keyed by column, read one row at a time
//! and written as `COPY … FROM STDIN` text in chunks, so the server loads the first rows while
//! the rest are read.

use serde::de::{
    DeserializeSeed, Deserializer as _, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// Up to this many bytes of COPY text go in one message to the server.
pub(super) const CHUNK: usize = 64 << 10;

/// Columns at or under this count are found by comparing names; above it, through a map.
const SCAN_COLUMNS: usize = 8;

/// Why rows could not be encoded, or that the receiver stopped taking chunks.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum EncodeError {
    /// The rows are not what `copy-json` takes; the message says which row and why.
    Rows(String),
    /// `send` refused a chunk: the copy was abandoned on the other side.
    Stopped,
}

/// Read `json` (an array of row objects), write each row as COPY text in `columns` order and
/// hand the text to `send` in chunks of about [`CHUNK`] bytes; `send` returns false to stop.
/// A column a row lacks is null; a key that is not a column is an error. Returns the row count.
pub(super) fn encode_rows(
    json: &str,
    columns: &[String],
    mut send: impl FnMut(Vec<u8>) -> bool,
) -> Result<u64, EncodeError> {
    let index = ColumnIndex::new(columns);
    let mut rows = Rows {
        index: &index,
        out: Vec::with_capacity(CHUNK + 1024),
        send: &mut send,
        count: 0,
        stopped: false,
    };
    let mut de = serde_json::Deserializer::from_str(json);
    let read = de.deserialize_seq(&mut rows).and_then(|()| de.end());
    if rows.stopped {
        return Err(EncodeError::Stopped);
    }
    read.map_err(|e| EncodeError::Rows(e.to_string()))?;
    let (count, rest) = (rows.count, std::mem::take(&mut rows.out));
    if !rest.is_empty() && !send(rest) {
        return Err(EncodeError::Stopped);
    }
    Ok(count)
}

/// Where each column goes in a row: its place in `columns`, found by comparing names, or
/// through `map` when there are many. Rows have a cell for every entry of `columns`, repeats
/// included (the server refuses a repeated column; reading must not break on one first).
struct ColumnIndex<'c> {
    columns: &'c [String],
    map: Option<HashMap<&'c str, usize>>,
}

impl<'c> ColumnIndex<'c> {
    fn new(columns: &'c [String]) -> Self {
        let map = (columns.len() > SCAN_COLUMNS).then(|| {
            // The first place of a repeated name, as the scan finds it.
            let mut map = HashMap::with_capacity(columns.len());
            for (i, c) in columns.iter().enumerate() {
                map.entry(c.as_str()).or_insert(i);
            }
            map
        });
        Self { columns, map }
    }

    fn len(&self) -> usize {
        self.columns.len()
    }

    fn position(&self, name: &str) -> Option<usize> {
        match &self.map {
            Some(map) => map.get(name).copied(),
            None => self.columns.iter().position(|c| c == name),
        }
    }

    fn names(&self) -> String {
        let mut names: Vec<&str> = self.columns.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        names.join("`, `")
    }
}

/// The array: each element is read as a [`Row`] and appended to `out`.
struct Rows<'r, 'c, F> {
    index: &'r ColumnIndex<'c>,
    out: Vec<u8>,
    send: &'r mut F,
    count: u64,
    stopped: bool,
}

impl<'de, F: FnMut(Vec<u8>) -> bool> Visitor<'de> for &mut Rows<'_, '_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of rows (objects keyed by column)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut cells: Vec<Option<&'de RawValue>> = vec![None; self.index.len()];
        loop {
            cells.iter_mut().for_each(|c| *c = None);
            let row = Row {
                index: self.index,
                cells: &mut cells,
                number: self.count + 1,
            };
            if seq.next_element_seed(row)?.is_none() {
                return Ok(());
            }
            write_row(&mut self.out, &cells)
                .map_err(|e| A::Error::custom(format_args!("row {}: {e}", self.count + 1)))?;
            self.count += 1;
            if self.out.len() >= CHUNK {
                let chunk = std::mem::replace(&mut self.out, Vec::with_capacity(CHUNK + 1024));
                if !(self.send)(chunk) {
                    self.stopped = true;
                    return Err(A::Error::custom("stopped"));
                }
            }
        }
    }
}

/// One row: its cells, by column position, borrowed from the JSON text.
struct Row<'r, 'c, 'de> {
    index: &'r ColumnIndex<'c>,
    cells: &'r mut [Option<&'de RawValue>],
    /// From 1, as PostgreSQL counts a COPY's lines.
    number: u64,
}

impl<'de> DeserializeSeed<'de> for Row<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Row<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "row {} to be an object keyed by column", self.number)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let Some(at) = self.index.position(&key) else {
                // Read past the value so the error points at the key, not the parser.
                let _ = map.next_value::<IgnoredAny>();
                return Err(A::Error::custom(format_args!(
                    "row {} has column `{key}`, which is not one of the columns (`{}`)",
                    self.number,
                    self.index.names()
                )));
            };
            self.cells[at] = Some(map.next_value()?);
        }
        Ok(())
    }
}

/// A row's key, borrowed unless it has escapes (serde's `Cow` always copies).
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a column name")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// One row as COPY text: tab-separated cells, `\N` for null, backslash escapes, a newline.
fn write_row(out: &mut Vec<u8>, cells: &[Option<&RawValue>]) -> Result<(), serde_json::Error> {
    for (j, cell) in cells.iter().enumerate() {
        if j > 0 {
            out.push(b'\t');
        }
        let text = cell.map_or("null", |c| c.get());
        match text.as_bytes().first() {
            Some(b'n') => out.extend_from_slice(b"\\N"),
            Some(b't') => out.push(b't'),
            Some(b'f') => out.push(b'f'),
            Some(b'"') => match serde_json::from_str::<&str>(text) {
                Ok(plain) => escape_into(out, plain),
                // Only strings with JSON escapes need their own copy.
                Err(_) => escape_into(out, &serde_json::from_str::<String>(text)?),
            },
            // Objects and arrays as their JSON text (json/jsonb columns); numbers as written.
            Some(b'{' | b'[') => escape_into(out, text),
            _ => out.extend_from_slice(text.as_bytes()),
        }
    }
    out.push(b'\n');
    Ok(())
}

/// `text` with COPY's special bytes escaped: backslash, tab, newline, carriage return.
fn escape_into(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..i]);
        out.extend_from_slice(escaped);
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn encode(json: &str, names: &[&str]) -> Result<(u64, String), EncodeError> {
        let mut text = Vec::new();
        let count = encode_rows(json, &columns(names), |chunk| {
            text.extend(chunk);
            true
        })?;
        Ok((count, String::from_utf8(text).unwrap()))
    }

    #[test]
    fn rows_become_copy_text_in_column_order_with_every_special_byte_escaped() {
        let json = r#"[
            {"s": "tab\there\nline \\ back\r", "id": 1, "b": true, "j": {"k": [1, "x\ty"]}, "f": 2.5},
            {"id": 2, "s": "\\N", "b": false, "f": -1e3},
            {"id": 3, "s": "caf\u00e9 \"q\"", "j": null}
        ]"#;
        let (count, text) = encode(json, &["id", "s", "b", "j", "f"]).unwrap();
        assert_eq!(count, 3);
        assert_eq!(
            text,
            "1\ttab\\there\\nline \\\\ back\\r\tt\t{\"k\": [1, \"x\\\\ty\"]}\t2.5\n\
             2\t\\\\N\tf\t\\N\t-1e3\n\
             3\tcafé \"q\"\t\\N\t\\N\t\\N\n"
        );
    }

    #[test]
    fn a_key_that_is_not_a_column_or_a_row_that_is_not_an_object_names_the_row() {
        let unknown = encode(r#"[{"id": 1}, {"id": 2, "nope": 3}]"#, &["id"]).unwrap_err();
        let EncodeError::Rows(message) = unknown else {
            panic!("{unknown:?}")
        };
        assert!(
            message.contains("row 2 has column `nope`, which is not one of the columns (`id`)"),
            "{message}"
        );
        let not_object = encode(r#"[{"id": 1}, 7]"#, &["id"]).unwrap_err();
        assert!(
            matches!(&not_object, EncodeError::Rows(m) if m.contains("row 2 to be an object")),
            "{not_object:?}"
        );
        for broken in [
            r#"{"id": 1}"#,
            r#"[{"id": 1}"#,
            r#"[{"id": 1}] trailing"#,
            "",
        ] {
            assert!(
                matches!(encode(broken, &["id"]), Err(EncodeError::Rows(_))),
                "{broken:?} must be refused"
            );
        }
    }

    #[test]
    fn many_columns_are_found_through_a_map_and_chunks_stay_near_their_size() {
        let names: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
        let row = |n: usize| {
            let cells: Vec<String> = (0..20).rev().map(|i| format!("\"c{i}\": {n}")).collect();
            format!("{{{}}}", cells.join(", "))
        };
        let rows = 5_000;
        let json = format!("[{}]", (0..rows).map(row).collect::<Vec<_>>().join(","));
        let mut chunks = Vec::new();
        let count = encode_rows(&json, &names, |chunk| {
            chunks.push(chunk);
            true
        })
        .unwrap();
        assert_eq!(count, rows as u64);
        assert!(chunks.len() > 1, "more than one chunk for {rows} rows");
        assert!(chunks.iter().all(|c| c.len() < CHUNK + 1024));
        let text = String::from_utf8(chunks.concat()).unwrap();
        assert_eq!(text.lines().count(), rows);
        assert_eq!(text.lines().nth(7).unwrap(), vec!["7"; 20].join("\t"));
    }

    #[test]
    fn repeated_column_names_from_a_guest_do_not_break_the_reading() {
        // Past the scan's limit too, where names are found through a map.
        for n in [3, 20] {
            let mut names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            names.push("c0".into());
            let (count, text) = encode(
                r#"[{"c0": 1}]"#,
                &names.iter().map(String::as_str).collect::<Vec<_>>(),
            )
            .unwrap();
            assert_eq!(count, 1);
            let cells: Vec<&str> = text.trim_end().split('\t').collect();
            assert_eq!(cells.len(), n + 1, "a cell for every column");
            assert_eq!(
                (cells[0], cells[n]),
                ("1", "\\N"),
                "the first place gets the value"
            );
        }
    }

    #[test]
    fn a_receiver_that_stops_stops_the_reading() {
        let json = format!(
            "[{}]",
            vec![r#"{"id": "a long enough cell"}"#; 20_000].join(",")
        );
        let mut taken = 0;
        let stopped = encode_rows(&json, &columns(&["id"]), |_| {
            taken += 1;
            false
        });
        assert_eq!(stopped, Err(EncodeError::Stopped));
        assert_eq!(taken, 1, "nothing is read after the first refusal");
    }
}
