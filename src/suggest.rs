//! "Did you mean": the known name closest to a mistyped one (reports, options, job
//! and mapping keys). A leaf every layer may use, like `clock`: the names come from
//! the caller.

/// The name in `known` closest to `typed`, when it is close enough to be the one
/// meant: at most a third of its letters differ (at least one), ignoring case and
/// treating `-` and `_` alike (`min-pp` is `min_pp`).
pub fn closest<'a>(typed: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    };
    let t = norm(typed);
    if t.is_empty() {
        return None;
    }
    let limit = (t.len() / 3).max(1);
    known
        .into_iter()
        .map(|k| (distance(&t, &norm(k)), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// `"; did you mean `x`?"` for the closest known name, or nothing.
pub fn did_you_mean<'a>(typed: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    closest(typed, known).map_or_else(String::new, |k| format!("; did you mean `{k}`?"))
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`.
fn distance(a: &[char], b: &[char]) -> usize {
    // Optimal string alignment: three rows of the table.
    let mut before: Vec<usize> = Vec::new();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORTS: [&str; 3] = ["conversation-usage", "tag-drivers", "customer-segmentation"];

    #[test]
    fn near_misses_find_their_name_and_far_ones_nothing() {
        assert_eq!(closest("tag-driver", REPORTS), Some("tag-drivers"));
        assert_eq!(closest("tag_drivers", REPORTS), Some("tag-drivers"));
        assert_eq!(
            closest("Conversation-Usgae", REPORTS),
            Some("conversation-usage")
        );
        assert_eq!(closest("customer", REPORTS), None);
        assert_eq!(closest("", REPORTS), None);
        assert_eq!(closest("nope", REPORTS), None);
        assert_eq!(closest("rn", ["run", "retry", "reports"]), Some("run"));
        assert_eq!(
            closest("min-pp", ["min_pp", "usage_source"]),
            Some("min_pp")
        );
        assert_eq!(
            did_you_mean("at_risk_tag", ["at_risk_tags", "segment_tag_prefix"]),
            "; did you mean `at_risk_tags`?"
        );
        assert_eq!(did_you_mean("colour", ["window", "compare"]), "");
    }

    #[test]
    fn the_distance_counts_edits() {
        let d = |a: &str, b: &str| {
            distance(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("abc", "abc"), 0);
        assert_eq!(d("abc", "acb"), 1);
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("北京", "北"), 1);
    }
}
