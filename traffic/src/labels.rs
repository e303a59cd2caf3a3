//! Endpoint labels (`version=v2`): what a proxy says about its endpoint when it registers,
//! and what a traffic document's subsets select by. Bounded in number and size, with the
//! syntax of Kubernetes label keys and values, so any of them fits a metrics label too.

use std::collections::BTreeMap;

/// An endpoint's labels.
pub type Labels = BTreeMap<String, String>;

/// Most labels one endpoint may carry.
pub const MAX_LABELS: usize = 16;
/// Longest key or value.
pub const MAX_LEN: usize = 63;

fn is_label_text(s: &str, empty_ok: bool) -> bool {
    (empty_ok || !s.is_empty())
        && s.len() <= MAX_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// `labels` if an endpoint may carry them; else one line about the first that may not.
pub fn check(labels: &Labels) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("{} labels; at most {MAX_LABELS}", labels.len()));
    }
    for (k, v) in labels {
        if !is_label_text(k, false) {
            return Err(format!(
                "label key `{}` is not 1-{MAX_LEN} letters, digits, `-`, `.`, `_`",
                k.escape_debug()
            ));
        }
        if !is_label_text(v, true) {
            return Err(format!(
                "label `{k}`: value `{}` is not at most {MAX_LEN} letters, digits, `-`, `.`, `_`",
                v.escape_debug()
            ));
        }
    }
    Ok(())
}

/// Whether `labels` carry every one of `selector`'s.
pub fn selects(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn labels_are_bounded_and_plain() {
        assert!(check(&l(&[("version", "v2"), ("track", "")])).is_ok());
        assert!(check(&l(&[("", "x")])).is_err());
        assert!(check(&l(&[("ver sion", "x")])).is_err());
        assert!(check(&l(&[("version", "v\"2")])).is_err());
        assert!(check(&l(&[("k", &"x".repeat(64))])).is_err());
        let many: Labels = (0..17).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(check(&many).is_err());
    }

    #[test]
    fn a_selector_needs_all_its_labels() {
        let endpoint = l(&[("version", "v2"), ("zone", "a")]);
        assert!(selects(&l(&[("version", "v2")]), &endpoint));
        assert!(selects(&l(&[]), &endpoint));
        assert!(!selects(&l(&[("version", "v1")]), &endpoint));
        assert!(!selects(&l(&[("version", "v2"), ("tier", "x")]), &endpoint));
    }
}
