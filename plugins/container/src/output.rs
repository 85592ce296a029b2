//! The `$ORCH_OUTPUT` file: `KEY=VALUE` lines that become step outputs, like `$GITHUB_OUTPUT`
//! or a GitLab dotenv report.

use std::collections::BTreeMap;

/// Outputs by name, and a warning for each line that is not one.
pub fn parse(text: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut outputs = BTreeMap::new();
    let mut warnings = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            warnings.push(format!("line {}: not KEY=VALUE; ignored", n + 1));
            continue;
        };
        let key = key.trim();
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            warnings.push(format!(
                "line {}: `{key}` is not a name (letters, digits, `_`); ignored",
                n + 1
            ));
        } else if key == "exit_code" {
            warnings.push(format!(
                "line {}: `exit_code` is set by orch; ignored",
                n + 1
            ));
        } else {
            outputs.insert(key.to_string(), value.to_string());
        }
    }
    (outputs, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_lines_become_outputs_and_the_rest_is_reported() {
        let (outputs, warnings) = parse(
            "rows=42\n# comment\n\nurl=s3://raw/a=b\r\nbad line\n9x=1\nexit_code=7\nrows=43\n",
        );
        assert_eq!(outputs["rows"], "43", "the last write wins");
        assert_eq!(outputs["url"], "s3://raw/a=b");
        assert_eq!(outputs.len(), 2);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].starts_with("line 5: not KEY=VALUE"));
        assert!(warnings[1].contains("`9x` is not a name"));
        assert!(warnings[2].contains("`exit_code` is set by orch"));
    }
}
