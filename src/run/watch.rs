//! A job's watch rules against its run's comparison (`summary.json`'s
//! `comparison.changes`): which fired, and which could not be judged and why. A rule
//! fires when the change goes its way by at least its threshold and, for a metric the
//! comparison tests, the change holds (a rise or a fall under the claims rules); a
//! median is judged on its threshold alone, and says so.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A watch rule: a change of `metric` in `slice` by at least `threshold` in a
/// direction (percentage points for rates, minutes, counts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchRule {
    pub name: String,
    pub metric: String,
    pub rise: bool,
    pub threshold: f64,
    /// `overall`, or a segment.
    pub slice: String,
}

/// What one rule found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchResult {
    pub rule: String,
    pub metric: String,
    pub slice: String,
    pub rise: bool,
    pub threshold: f64,
    /// The change (percentage points for rates), when both values exist.
    pub change: Option<f64>,
    pub current: Option<f64>,
    pub previous: Option<f64>,
    pub unit: String,
    pub fired: bool,
    /// Why the rule could not be judged (no comparison, no such slice, no values), or
    /// that a median was judged without a test.
    pub note: Option<String>,
}

/// Judges every rule against a run's summary.
pub fn evaluate(rules: &[WatchRule], summary: &Value) -> Vec<WatchResult> {
    let comparison = &summary["comparison"];
    rules
        .iter()
        .map(|r| {
            let mut out = WatchResult {
                rule: r.name.clone(),
                metric: r.metric.clone(),
                slice: r.slice.clone(),
                rise: r.rise,
                threshold: r.threshold,
                change: None,
                current: None,
                previous: None,
                unit: String::new(),
                fired: false,
                note: None,
            };
            if comparison.is_null() {
                out.note = Some("the run has no comparison".into());
                return out;
            }
            if let Some(why) = comparison["empty_reason"].as_str() {
                out.note = Some(format!("no comparison numbers: {why}"));
                return out;
            }
            let Some(c) = comparison["changes"].as_array().and_then(|changes| {
                changes
                    .iter()
                    .find(|c| c["metric"] == r.metric.as_str() && c["slice"] == r.slice.as_str())
            }) else {
                out.note = Some(format!("no slice `{}` in this run's data", r.slice));
                return out;
            };
            out.change = c["change"].as_f64();
            out.current = c["current"].as_f64();
            out.previous = c["previous"].as_f64();
            out.unit = c["unit"].as_str().unwrap_or_default().to_owned();
            let Some(change) = out.change else {
                out.note = Some("one of the two values does not exist".into());
                return out;
            };
            let far_enough = if r.rise {
                change >= r.threshold
            } else {
                -change >= r.threshold
            };
            out.fired = match c["direction"].as_str() {
                Some("rise") => r.rise && far_enough,
                Some("fall") => !r.rise && far_enough,
                Some("not_tested") => {
                    out.note = Some("a median: judged on the threshold, not tested".into());
                    far_enough && change != 0.0
                }
                _ => false,
            };
            out
        })
        .collect()
}

impl WatchResult {
    /// A fired rule's numbers as an email or a cover prints them: rates in percent
    /// (one decimal), minutes with one decimal, counts whole; the amount is the
    /// difference of the printed values.
    pub fn printed(&self) -> Value {
        let (scale, decimals, suffix) = match self.unit.as_str() {
            "rate" => (100.0, 1, "%"),
            "minutes" => (1.0, 1, ""),
            _ => (1.0, 0, ""),
        };
        let show = |v: Option<f64>| v.map(|v| format!("{:.*}{suffix}", decimals, v * scale));
        let round = |v: f64| {
            (v * scale * 10f64.powi(decimals as i32)).round() / 10f64.powi(decimals as i32)
        };
        let amount = match (self.current, self.previous) {
            (Some(a), Some(b)) => format!("{:.*}", decimals, (round(a) - round(b)).abs()),
            _ => String::new(),
        };
        serde_json::json!({
            "rule": self.rule,
            "metric": self.metric,
            "slice": self.slice,
            "rise": self.rise,
            "unit": self.unit,
            "amount": amount,
            "current": show(self.current),
            "previous": show(self.previous),
            "threshold": self.threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(metric: &str, rise: bool, threshold: f64, slice: &str) -> WatchRule {
        WatchRule {
            name: format!("{metric}-{slice}"),
            metric: metric.into(),
            rise,
            threshold,
            slice: slice.into(),
        }
    }

    #[test]
    fn a_rule_fires_only_on_a_change_that_holds_and_reaches_the_threshold() {
        let summary = json!({ "comparison": { "empty_reason": null, "changes": [
            { "metric": "conv_to_feature_rate", "slice": "overall", "unit": "rate",
              "current": 0.02, "previous": 0.03, "change": -1.0, "direction": "fall" },
            { "metric": "bot_first_resp_share", "slice": "overall", "unit": "rate",
              "current": 0.30, "previous": 0.33, "change": -3.0, "direction": "no_clear_change" },
            { "metric": "p50_resp", "slice": "renewal", "unit": "minutes",
              "current": 31.0, "previous": 25.0, "change": 6.0, "direction": "not_tested" }
        ]}});
        let r = evaluate(
            &[
                rule("conv_to_feature_rate", false, 0.5, "overall"),
                rule("conv_to_feature_rate", false, 1.5, "overall"),
                rule("conv_to_feature_rate", true, 0.5, "overall"),
                rule("bot_first_resp_share", false, 1.0, "overall"),
                rule("p50_resp", true, 5.0, "renewal"),
                rule("p50_resp", true, 5.0, "expansion"),
            ],
            &summary,
        );
        let fired: Vec<bool> = r.iter().map(|x| x.fired).collect();
        assert_eq!(fired, [true, false, false, false, true, false]);
        assert!(r[4].note.as_deref().unwrap().contains("not tested"));
        assert!(r[5]
            .note
            .as_deref()
            .unwrap()
            .contains("no slice `expansion`"));
        let none = evaluate(&[rule("conv_cnt", true, 1.0, "overall")], &json!({}));
        assert!(!none[0].fired && none[0].note.is_some());
    }
}
