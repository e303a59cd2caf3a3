//! A side-by-side line diff (longest common subsequence), for comparing policy versions.

/// One row of a side-by-side diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Row<'a> {
    Same(&'a str),
    /// A line only on the left (removed), the right (added), or one replaced by the other.
    Changed(Option<&'a str>, Option<&'a str>),
}

/// Most lines compared exactly; past it, the texts are shown as wholly replaced (the table
/// below is quadratic).
const MAX_LINES: usize = 4_000;

/// The rows that turn `old` into `new`.
pub(super) fn side_by_side<'a>(old: &'a str, new: &'a str) -> Vec<Row<'a>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        return pair(&a, &b);
    }
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let width = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * width];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * width + j] = if a[i] == b[j] {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut rows = Vec::new();
    let (mut removed, mut added): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            rows.extend(pair(&removed, &added));
            removed.clear();
            added.clear();
            rows.push(Row::Same(a[i]));
            i += 1;
            j += 1;
        } else if j < b.len()
            && (i == a.len() || lcs[i * width + j + 1] >= lcs[(i + 1) * width + j])
        {
            added.push(b[j]);
            j += 1;
        } else {
            removed.push(a[i]);
            i += 1;
        }
    }
    rows.extend(pair(&removed, &added));
    rows
}

/// Removed and added lines side by side, the shorter side padded.
fn pair<'a>(removed: &[&'a str], added: &[&'a str]) -> Vec<Row<'a>> {
    (0..removed.len().max(added.len()))
        .map(|k| Row::Changed(removed.get(k).copied(), added.get(k).copied()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_lines_pair_up_and_changes_sit_side_by_side() {
        let rows = side_by_side("a\nb\nc\nd\n", "a\nB\nc\nd\ne\n");
        assert_eq!(
            rows,
            vec![
                Row::Same("a"),
                Row::Changed(Some("b"), Some("B")),
                Row::Same("c"),
                Row::Same("d"),
                Row::Changed(None, Some("e")),
            ]
        );
    }

    #[test]
    fn removals_show_on_the_left_only() {
        let rows = side_by_side("a\nx\ny\nb\n", "a\nb\n");
        assert_eq!(
            rows,
            vec![
                Row::Same("a"),
                Row::Changed(Some("x"), None),
                Row::Changed(Some("y"), None),
                Row::Same("b"),
            ]
        );
    }

    #[test]
    fn identical_texts_have_no_changes() {
        let text = "permit (principal, action, resource);\n";
        assert!(
            side_by_side(text, text)
                .iter()
                .all(|r| matches!(r, Row::Same(_)))
        );
    }
}
