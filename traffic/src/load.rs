//! Reading a traffic document (YAML, or JSON, which YAML includes) into a checked
//! [`TrafficDoc`], with every problem pointed at `file:line`.

use crate::check::{Problem, problems};
use crate::doc::TrafficDoc;

/// Largest document read: a thousand services with a dozen routes each fit in well under this.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// Why a document was refused: one line per problem, each starting with `file:line:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct LoadError {
    /// The problems, one line each.
    pub problems: Vec<String>,
}

/// Reads and checks `text`, naming it `file` in problems.
pub fn load(text: &str, file: &str) -> Result<TrafficDoc, LoadError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(LoadError {
            problems: vec![format!(
                "{file}: a traffic document is at most {MAX_DOCUMENT_BYTES} bytes"
            )],
        });
    }
    let doc: TrafficDoc = if text.trim().is_empty() {
        TrafficDoc::default()
    } else {
        let parser = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(parser).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let line = inner.location().map(|l| field_line(text, l.line(), &path));
            let at = line.map_or(String::new(), |l| format!("{l}:"));
            let message = clean(&inner.to_string());
            // serde_norway starts its message with as much of the path as it knows.
            let message = match message.split_once(": ") {
                Some((head, rest)) if path.starts_with(head) => rest.to_owned(),
                _ => message,
            };
            LoadError {
                problems: vec![format!("{file}:{at} {path}: {message}")],
            }
        })?
    };
    let found = problems(&doc);
    if found.is_empty() {
        return Ok(doc);
    }
    Err(LoadError {
        problems: found
            .iter()
            .map(|p| match line_of(text, p) {
                Some(line) => format!("{file}:{}: {p}", setting_line(text, line, &p.message)),
                None => format!("{file}: {p}"),
            })
            .collect(),
    })
}

/// serde_norway appends " at line L column C" to its messages; the prefix already says it.
fn clean(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// serde_norway places an error in a field's value at the entry holding the field; the
/// field's own line is the first after it that starts with the field's name.
fn field_line(text: &str, entry_line: usize, path: &str) -> usize {
    let Some(field) = path.rsplit('.').next().filter(|f| !f.ends_with(']')) else {
        return entry_line;
    };
    text.lines()
        .enumerate()
        .skip(entry_line.saturating_sub(1))
        .find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            let t = t.trim_start_matches(['{', ',']).trim_start();
            t.strip_prefix(field)
                .or_else(|| t.strip_prefix(&format!("\"{field}\"")))
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map_or(entry_line, |(i, _)| i + 1)
}

/// The line of the entry a problem is in: the service's `service: NAME`, then the route's
/// `name: NAME` after it. The document is already parsed, so this only has to find, not
/// understand.
fn line_of(text: &str, problem: &Problem) -> Option<usize> {
    let service = problem.service.as_deref()?;
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| names(l, "service", service))?;
    let Some(route) = problem.route.as_deref() else {
        return Some(start + 1);
    };
    let offset = lines[start..]
        .iter()
        .position(|l| names(l, "name", route))?;
    Some(start + offset + 1)
}

/// The line of the setting a problem names first (`retry.max_retries is ...`), looked for
/// inside the entry that starts at `entry_line`; the entry's line when it is not written
/// there (a default, or a problem about several settings).
fn setting_line(text: &str, entry_line: usize, message: &str) -> usize {
    let first = message.split(' ').next().map(|w| w.trim_end_matches(':'));
    let Some(setting) = first.filter(|w| {
        w.bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.')
    }) else {
        return entry_line;
    };
    let field = setting.rsplit('.').next().unwrap_or(setting);
    let lines: Vec<&str> = text.lines().collect();
    let Some(entry) = lines.get(entry_line.saturating_sub(1)) else {
        return entry_line;
    };
    let indent = |l: &str| l.len() - l.trim_start().len();
    let entry_indent = indent(entry);
    for (i, line) in lines.iter().enumerate().skip(entry_line) {
        let trimmed = line.trim_start();
        if trimmed.starts_with("- ") && indent(line) <= entry_indent {
            break;
        }
        let t = trimmed.trim_start_matches(['{', ',']).trim_start();
        let starts = t
            .strip_prefix(field)
            .or_else(|| t.strip_prefix(&format!("\"{field}\"")))
            .is_some_and(|rest| rest.trim_start().starts_with(':'));
        if starts || line.contains(&format!(" {field}:")) || line.contains(&format!("{{{field}:")) {
            return i + 1;
        }
    }
    entry_line
}

/// Whether `line` sets `key` to `value`, in YAML or JSON spelling.
fn names(line: &str, key: &str, value: &str) -> bool {
    let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
    let trimmed = trimmed.trim_start_matches(['{', ',']).trim_start();
    let Some(rest) = trimmed
        .strip_prefix(key)
        .or_else(|| trimmed.strip_prefix(&format!("\"{key}\"")))
    else {
        return false;
    };
    let Some(rest) = rest.trim_start().strip_prefix(':') else {
        return false;
    };
    let rest = rest.trim().trim_end_matches(',').trim();
    rest.trim_matches(['"', '\'']) == value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_document_loads_with_defaults_filled() {
        let doc = load(
            "services:\n  - service: payments\n    routes:\n      - name: charge\n        match:\n          path: {prefix: /api}\n        timeout: 2s\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(
            doc.services[0].routes[0].timeout,
            Some(std::time::Duration::from_secs(2))
        );
        assert_eq!(doc.services[0].retry.max_retries, 2);
        assert!(load("", "t.yaml").unwrap().services.is_empty());
    }

    #[test]
    fn type_errors_point_at_their_line_and_column() {
        let e = load(
            "services:\n  - service: payments\n    timeout: soon\n",
            "t.yaml",
        )
        .unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert_eq!(
            e.problems,
            vec![
                "t.yaml:3: services[0].timeout: `soon` is not a duration like 250ms, 10s, 5m or 1h"
            ]
        );
        let e = load(
            "services:\n  - service: payments\n    retries: 3\n",
            "t.yaml",
        )
        .unwrap_err();
        assert!(e.problems[0].starts_with("t.yaml:3:"), "{e}");
        assert!(e.problems[0].contains("unknown field `retries`"), "{e}");
        let e = load(
            "services:\n  - service: a\n    routes:\n      - name: r\n        match: {path: {regex: '(x'}}\n",
            "t.yaml",
        )
        .unwrap_err();
        assert!(e.problems[0].starts_with("t.yaml:5:"), "{e}");
    }

    #[test]
    fn checks_point_at_the_entry_they_are_about() {
        let text = "services:\n  - service: cart\n  - service: payments\n    timeout: 0s\n    routes:\n      - name: ok\n      - name: charge\n        match: {methods: [post]}\n";
        let e = load(text, "t.yaml").unwrap_err();
        assert_eq!(
            e.problems,
            vec![
                "t.yaml:4: service payments: timeout is more than 0 and at most 24h",
                "t.yaml:8: service payments, route charge: match.methods: `post` is not an upper-case HTTP method",
            ]
        );
        // JSON is YAML too.
        let e = load(
            "{\"services\": [\n {\"service\": \"cart\",\n  \"timeout\": \"0s\"}]}",
            "t.json",
        )
        .unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert!(e.problems[0].starts_with("t.json:3: service cart"), "{e}");
        // A default is not written anywhere: the entry's line.
        let e = load(
            "services:\n  - service: a\n    outlier: {base_ejection: 0s}\n",
            "t",
        )
        .unwrap_err();
        assert_eq!(
            e.problems,
            vec!["t:3: service a: outlier needs 0 < base_ejection <= max_ejection <= 24h"]
        );
        let e = load("services:\n  - service: a\n    routes:\n      - name: r\n        retry:\n          max_retries: 11\n  - service: b\n    retry: {max_retries: 12}\n", "t").unwrap_err();
        assert_eq!(
            e.problems,
            vec![
                "t:6: service a, route r: retry.max_retries is at most 10",
                "t:8: service b: retry.max_retries is at most 10",
            ]
        );
    }
}
