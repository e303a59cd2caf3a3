//! Regular expressions in traffic documents: always matched against the whole value, with a
//! bounded size, compiled when the document is read so a bad one is refused with its line.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest pattern accepted, and the most memory its compiled form may take: a route table
/// is read by every request, and one pathological pattern must not cost every caller.
const MAX_PATTERN_CHARS: usize = 1024;
const MAX_COMPILED_BYTES: usize = 1 << 20;

/// A compiled, anchored regular expression and the text it was written as.
#[derive(Clone)]
pub struct Pattern {
    text: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Compiles `text`, which must match a whole value.
    pub fn new(text: &str) -> Result<Self, String> {
        if text.len() > MAX_PATTERN_CHARS {
            return Err(format!(
                "a regular expression has at most {MAX_PATTERN_CHARS} characters"
            ));
        }
        let regex = regex::RegexBuilder::new(&format!("^(?:{text})$"))
            .size_limit(MAX_COMPILED_BYTES)
            .build()
            .map_err(|e| {
                let first = e.to_string();
                let last = first.lines().last().unwrap_or("invalid").trim().to_owned();
                format!("`{text}` is not a regular expression: {last}")
            })?;
        Ok(Self {
            text: text.to_owned(),
            regex,
        })
    }

    /// Whether `value` matches, whole.
    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Pattern::new(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_values_only() {
        let p = Pattern::new("/users/[0-9]+").unwrap();
        assert!(p.is_match("/users/42"));
        assert!(!p.is_match("/users/42/orders"));
        assert!(!p.is_match("/x/users/42"));
        // Alternation stays inside the anchors.
        let p = Pattern::new("/a|/b").unwrap();
        assert!(p.is_match("/b"));
        assert!(!p.is_match("/bx"));
    }

    #[test]
    fn bad_and_oversized_patterns_are_refused() {
        assert!(
            Pattern::new("(unclosed")
                .unwrap_err()
                .contains("not a regular expression")
        );
        assert!(
            Pattern::new(&"a".repeat(2000))
                .unwrap_err()
                .contains("at most")
        );
        // Compiles to far more than the limit.
        assert!(Pattern::new("(?:[a-z]{1,100}){1,100}").is_err());
    }
}
