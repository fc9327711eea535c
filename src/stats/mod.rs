//! Statistics the reports share: percentiles as numpy computes them, means, ratios,
//! Pearson correlations and tertile groups; [`claims`] holds the rules that decide what
//! a report may claim from them. Pure functions, no data contract.

pub mod claims;

use serde::Serialize;

// Statistics helpers

/// Percentile of sorted values, linear interpolation between closest ranks
/// (Hyndman–Fan type 7, numpy's default), computed the way numpy does so that
/// threshold comparisons agree to the last bit.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let (lo, hi, t) = type7_ranks(sorted.len(), p)?;
    Some(type7_value(sorted[lo], sorted[hi], t))
}

/// The two closest ranks around percentile `p` of `n` values and the weight between them.
fn type7_ranks(n: usize, p: f64) -> Option<(usize, usize, f64)> {
    if n == 0 {
        return None;
    }
    let h = (n - 1) as f64 * p;
    let lo = (h.floor() as usize).min(n - 1);
    Some((lo, (lo + 1).min(n - 1), h - lo as f64))
}

/// numpy's interpolation between the values at the two closest ranks.
fn type7_value(a: f64, b: f64, t: f64) -> f64 {
    let d = b - a;
    if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}

/// The same percentiles as [`percentile`] on the sorted values, found by selection in
/// linear time instead of a sort (large panels are millions of values). `ps` ascending;
/// the values are reordered.
pub fn percentiles<const N: usize>(values: &mut [f64], ps: [f64; N]) -> [Option<f64>; N] {
    debug_assert!(ps.windows(2).all(|w| w[0] <= w[1]), "ascending percentiles");
    let mut out = [None; N];
    // Everything before `done` is in place and below the rest: each selection only
    // searches what lies to the right of the previous one.
    let mut done = 0;
    for (o, p) in out.iter_mut().zip(ps) {
        let Some((lo, hi, t)) = type7_ranks(values.len(), p) else {
            break;
        };
        let from = if lo >= done { done } else { 0 };
        values[from..].select_nth_unstable_by(lo - from, f64::total_cmp);
        done = lo;
        let a = values[lo];
        let b = if hi == lo {
            a
        } else {
            values[lo + 1..]
                .iter()
                .copied()
                .min_by(f64::total_cmp)
                .unwrap_or(a)
        };
        *o = Some(type7_value(a, b, t));
    }
    out
}

pub fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for v in values {
        s += v;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

pub fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Pearson r (`None` under two pairs or when either side has no variance) and the
/// number of pairs, over pairs that `pairs` yields afresh on each call: hundreds of
/// thousands of company pairs are read where they are instead of being collected.
pub fn correlation<I: Iterator<Item = (f64, f64)>>(pairs: impl Fn() -> I) -> Correlation {
    let (mut len, mut sx, mut sy) = (0usize, 0.0, 0.0);
    for (x, y) in pairs() {
        len += 1;
        sx += x;
        sy += y;
    }
    if len < 2 {
        return Correlation { r: None, n: len };
    }
    let n = len as f64;
    let (mx, my) = (sx / n, sy / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs() {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    let r = (sxx > 0.0 && syy > 0.0).then(|| (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0));
    Correlation { r, n: len }
}

/// A Pearson correlation and the number of pairs it rests on.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Correlation {
    pub r: Option<f64>,
    pub n: usize,
}

/// Sizes ⌈n/3⌉, ⌈(n−⌈n/3⌉)/2⌉, rest.
pub fn tertile_sizes(n: usize) -> [usize; 3] {
    let a = n.div_ceil(3);
    let b = (n - a).div_ceil(2);
    [a, b, n - a - b]
}

/// The members' three tertile groups (sizes of [`tertile_sizes`]) under a total order.
pub fn thirds<T>(
    members: &mut [T],
    mut cmp: impl FnMut(&T, &T) -> std::cmp::Ordering,
) -> [&[T]; 3] {
    let [a, b, _] = tertile_sizes(members.len());
    if a < members.len() {
        members.select_nth_unstable_by(a, &mut cmp);
    }
    let (first, rest) = members.split_at_mut(a);
    if b < rest.len() {
        rest.select_nth_unstable_by(b, &mut cmp);
    }
    let (second, third) = rest.split_at(b);
    [first, second, third]
}
