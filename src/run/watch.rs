//! A job's watch rules against its run's comparison (the report's typed
//! [`Comparison`]): which fired, and which could not be judged and why. A rule fires
//! when the change goes its way by at least its threshold and, for a metric the
//! comparison tests, the change holds (a rise or a fall under the claims rules); a
//! median is judged on its threshold alone, and says so.

use serde::{Deserialize, Serialize};

use crate::render::templates::{Language, NarrativeError};
use crate::reports::comparison::{Comparison, Direction, EmptyReason, Unit};
use crate::reports::period_label;

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
    /// The compared metric's unit; none when the comparison has no such change
    /// (written `""`, as summary.json always had it).
    #[serde(with = "unit_or_empty")]
    pub unit: Option<Unit>,
    pub fired: bool,
    /// Why the rule could not be judged (no comparison, no such slice, no values), or
    /// that a median was judged without a test.
    pub note: Option<String>,
}

/// A unit as its name, or `""` for none.
mod unit_or_empty {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::reports::comparison::Unit;

    pub fn serialize<S: Serializer>(u: &Option<Unit>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(u.map_or("", Unit::name))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Unit>, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "" => Ok(None),
            n => Unit::named(n)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown unit `{n}`"))),
        }
    }
}

/// Judges every rule against a run's comparison ([`EmptyReason::Off`] for a run
/// that compares itself with nothing).
pub fn evaluate(rules: &[WatchRule], comparison: &Comparison) -> Vec<WatchResult> {
    rules.iter().map(|r| judge(r, comparison)).collect()
}

fn judge(r: &WatchRule, comparison: &Comparison) -> WatchResult {
    let mut out = WatchResult {
        rule: r.name.clone(),
        metric: r.metric.clone(),
        slice: r.slice.clone(),
        rise: r.rise,
        threshold: r.threshold,
        change: None,
        current: None,
        previous: None,
        unit: None,
        fired: false,
        note: None,
    };
    match &comparison.empty_reason {
        Some(EmptyReason::Off) => {
            out.note = Some(EmptyReason::Off.to_string());
            return out;
        }
        Some(why) => {
            out.note = Some(format!("no comparison numbers: {why}"));
            return out;
        }
        None => {}
    }
    let Some(c) = comparison
        .changes
        .iter()
        .find(|c| c.metric == r.metric && c.slice == r.slice)
    else {
        out.note = Some(format!("no slice `{}` in this run's data", r.slice));
        return out;
    };
    out.change = c.change;
    out.current = c.current;
    out.previous = c.previous;
    out.unit = Some(c.unit);
    let Some(change) = out.change else {
        out.note = Some("one of the two values does not exist".into());
        return out;
    };
    let far_enough = if r.rise {
        change >= r.threshold
    } else {
        -change >= r.threshold
    };
    out.fired = match c.direction {
        Direction::Rise => r.rise && far_enough,
        Direction::Fall => !r.rise && far_enough,
        Direction::NotTested => {
            out.note = Some("a median: judged on the threshold, not tested".into());
            far_enough && change != 0.0
        }
        Direction::NoClearChange | Direction::NotComparable => false,
    };
    out
}

/// A fired rule's parts as one edition prints them, made once here: the one
/// sentence of `watch_rule.tera` reads them on page 1, in the email and in
/// `cxreport run`/`history`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrintedRule {
    pub rule: String,
    /// The metric's key and its name in the edition's words.
    pub metric: String,
    pub metric_label: String,
    /// `overall` or a segment, and its name in the edition's words.
    pub slice: String,
    pub slice_label: String,
    pub rise: bool,
    /// The size of the change: the difference of the printed values, without unit.
    pub amount: String,
    /// What follows an amount or a threshold in the edition's words (` pp`, ` min`,
    /// nothing for counts).
    pub unit_suffix: String,
    /// The two values as printed ([`Unit::printing`]: a rate in percent).
    pub previous: String,
    pub current: String,
    /// The rule's threshold, without unit.
    pub threshold: String,
    /// The period the run compared itself with, as the edition prints periods.
    pub compared_with: Option<String>,
    /// The unit's name (`rate`, `minutes`, …): the sentence does not need it; it is
    /// here for a user's template written before `unit_suffix` existed.
    pub unit: &'static str,
}

impl WatchResult {
    /// Its printed parts in `lang`'s words; `compared_with`: the comparison period's
    /// key. The amount is the difference of the printed values.
    pub fn printed(&self, lang: &Language, compared_with: Option<&str>) -> PrintedRule {
        let unit = self.unit.unwrap_or(Unit::Count);
        let p = unit.printing();
        let (scale, decimals, suffix) = (p.scale, p.decimals, p.suffix);
        let show = |v: Option<f64>| {
            v.map_or_else(String::new, |v| {
                format!("{:.*}{suffix}", decimals, v * scale)
            })
        };
        let round = |v: f64| {
            (v * scale * 10f64.powi(decimals as i32)).round() / 10f64.powi(decimals as i32)
        };
        let amount = match (self.current, self.previous) {
            (Some(a), Some(b)) => format!("{:.*}", decimals, (round(a) - round(b)).abs()),
            _ => String::new(),
        };
        let s = &lang.strings;
        let slice_label = if self.slice == "overall" {
            s.get_opt("labels.overall")
                .unwrap_or_else(|| self.slice.clone())
        } else {
            s.label("segment", &self.slice)
        };
        PrintedRule {
            rule: self.rule.clone(),
            metric: self.metric.clone(),
            metric_label: s
                .get_opt(&format!("change.metric_{}", self.metric))
                .unwrap_or_else(|| self.metric.clone()),
            slice: self.slice.clone(),
            slice_label,
            rise: self.rise,
            amount,
            unit_suffix: match unit {
                Unit::Rate => lang.format.pp_suffix.clone(),
                Unit::Minutes => lang.format.minutes_suffix.clone(),
                Unit::Count | Unit::Money => String::new(),
            },
            previous: show(self.previous),
            current: show(self.current),
            threshold: self.threshold.to_string(),
            compared_with: compared_with.map(|key| period_label(key, Some(lang))),
            unit: self.unit.map_or("", Unit::name),
        }
    }

    /// The sentence that says this rule fired, in `lang` (`watch.tera`, which calls
    /// the sentence of `watch_rule.tera`).
    pub fn sentence(&self, lang: &Language) -> Result<String, NarrativeError> {
        let printed = serde_json::to_value(self.printed(lang, None)).unwrap_or_default();
        lang.render("watch.tera", "w", &printed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::comparison::{empty, Change};

    fn rule(metric: &str, rise: bool, threshold: f64, slice: &str) -> WatchRule {
        WatchRule {
            name: format!("{metric}-{slice}"),
            metric: metric.into(),
            rise,
            threshold,
            slice: slice.into(),
        }
    }

    fn change(
        metric: &'static str,
        slice: &str,
        unit: Unit,
        (current, previous): (f64, f64),
        direction: Direction,
    ) -> Change {
        let mut c = Change::new(metric, slice, unit, Some(current), Some(previous));
        c.direction = direction;
        c
    }

    fn comparison(changes: Vec<Change>) -> Comparison {
        Comparison {
            basis: "previous".into(),
            window: None,
            period: "2024-01-01_2024-03-31".into(),
            empty_reason: None,
            changes,
            coverage: None,
        }
    }

    #[test]
    fn a_rule_fires_only_on_a_change_that_holds_and_reaches_the_threshold() {
        let c = comparison(vec![
            change(
                "conv_to_feature_rate",
                "overall",
                Unit::Rate,
                (0.02, 0.03),
                Direction::Fall,
            ),
            change(
                "conv_cnt",
                "overall",
                Unit::Count,
                (130.0, 100.0),
                Direction::Rise,
            ),
            change(
                "bot_first_resp_share",
                "overall",
                Unit::Rate,
                (0.30, 0.33),
                Direction::NoClearChange,
            ),
            change(
                "p50_resp",
                "renewal",
                Unit::Minutes,
                (31.0, 25.0),
                Direction::NotTested,
            ),
        ]);
        let r = evaluate(
            &[
                // A fall that holds, past and short of its threshold, and the wrong way.
                rule("conv_to_feature_rate", false, 0.5, "overall"),
                rule("conv_to_feature_rate", false, 1.5, "overall"),
                rule("conv_to_feature_rate", true, 0.5, "overall"),
                // A rise that holds, past and short of its threshold.
                rule("conv_cnt", true, 30.0, "overall"),
                rule("conv_cnt", true, 31.0, "overall"),
                // Far enough, but not a change that holds.
                rule("bot_first_resp_share", false, 1.0, "overall"),
                // A median, judged on its threshold; a slice the comparison lacks.
                rule("p50_resp", true, 5.0, "renewal"),
                rule("p50_resp", true, 5.0, "expansion"),
            ],
            &c,
        );
        let fired: Vec<bool> = r.iter().map(|x| x.fired).collect();
        assert_eq!(fired, [true, false, false, true, false, false, true, false]);
        assert_eq!(r[0].unit, Some(Unit::Rate));
        assert_eq!((r[3].current, r[3].previous), (Some(130.0), Some(100.0)));
        assert!(r[6].note.as_deref().unwrap().contains("not tested"));
        assert_eq!(
            r[7].note.as_deref(),
            Some("no slice `expansion` in this run's data")
        );
        assert_eq!(r[7].unit, None);
    }

    #[test]
    fn an_empty_comparison_judges_nothing_and_says_why() {
        let rules = [rule("conv_cnt", true, 1.0, "overall")];
        let off = evaluate(&rules, &Comparison::off());
        assert!(!off[0].fired);
        assert_eq!(off[0].note.as_deref(), Some("the run has no comparison"));
        let why = EmptyReason::NoConversations("no conversations in window a .. b".into());
        let none = evaluate(&rules, &empty("previous".into(), None, "p".into(), why));
        assert!(!none[0].fired && none[0].change.is_none());
        assert_eq!(
            none[0].note.as_deref(),
            Some("no comparison numbers: no conversations in window a .. b")
        );
    }

    #[test]
    fn a_fired_rule_says_its_unit_from_the_printed_parts_in_each_language() {
        let c = comparison(vec![
            change(
                "bot_first_resp_share",
                "overall",
                Unit::Rate,
                (0.278, 0.329),
                Direction::Fall,
            ),
            change(
                "avg_resp",
                "renewal",
                Unit::Minutes,
                (31.04, 25.0),
                Direction::Rise,
            ),
            change(
                "conv_cnt",
                "overall",
                Unit::Count,
                (3817.0, 2738.0),
                Direction::Rise,
            ),
        ]);
        let r = evaluate(
            &[
                rule("bot_first_resp_share", false, 3.0, "overall"),
                rule("avg_resp", true, 0.5, "renewal"),
                rule("conv_cnt", true, 1.0, "overall"),
            ],
            &c,
        );
        let templates = crate::render::templates::Templates::default();
        let said = |lang: &str| -> Vec<String> {
            let language = templates.language("conversation-usage", lang).unwrap();
            r.iter().map(|w| w.sentence(&language).unwrap()).collect()
        };
        assert_eq!(
            said("en"),
            [
                "Watch rule “bot_first_resp_share-overall” fired: bot-first share fell by 5.1 pp, from 32.9% to 27.8% (the rule's threshold: 3 pp).",
                "Watch rule “avg_resp-renewal” fired: mean first response in Renewal rose by 6.0 min, from 25.0 to 31.0 (the rule's threshold: 0.5 min).",
                "Watch rule “conv_cnt-overall” fired: conversations rose by 1079, from 2738 to 3817 (the rule's threshold: 1).",
            ]
        );
        assert_eq!(
            said("zh")[..2],
            [
                "预警规则“bot_first_resp_share-overall”已触发：机器人首答占比下降 5.1 个百分点，从 32.9% 变为 27.8%（规则阈值：3 个百分点）。",
                "预警规则“avg_resp-renewal”已触发：续约的平均首次响应时间上升 6.0 分钟，从 25.0 变为 31.0（规则阈值：0.5 分钟）。",
            ]
        );
        let en = templates.language("conversation-usage", "en").unwrap();
        let p = r[1].printed(&en, Some("2023-12-15_2024-03-14"));
        assert_eq!(p.compared_with.as_deref(), Some("2023-12-15 – 2024-03-14"));
        assert_eq!((p.unit_suffix.as_str(), p.unit), (" min", "minutes"));
    }

    #[test]
    fn a_result_keeps_its_unit_through_json_and_an_unknown_one_is_refused() {
        let c = comparison(vec![change(
            "conv_cnt",
            "overall",
            Unit::Minutes,
            (3.0, 1.0),
            Direction::NotTested,
        )]);
        let rules = [
            rule("conv_cnt", true, 1.0, "overall"),
            rule("conv_cnt", true, 1.0, "renewal"),
        ];
        let r = evaluate(&rules, &c);
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""unit":"minutes""#) && text.contains(r#""unit":"""#));
        let back: Vec<WatchResult> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        let bad = text.replace(r#""unit":"minutes""#, r#""unit":"furlongs""#);
        assert!(serde_json::from_str::<Vec<WatchResult>>(&bad).is_err());
    }
}
