//! Line charts as inline SVG: one chart per quantity, one line per series, dashed verticals at phase
//! boundaries. No script and no external resource, so the page opens from disk anywhere.

use std::fmt::Write as _;

use super::escape;

/// Line colours, in series order (the first is what a single-series chart uses).
pub const PALETTE: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

const WIDTH: f64 = 530.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 110.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 34.0;

pub struct Series {
    pub label: String,
    /// (step, value) in step order.
    pub points: Vec<(f64, f64)>,
}

/// A step where a phase begins, and its name.
pub struct Boundary {
    pub step: f64,
    pub label: String,
}

/// Round tick values covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    let span = (hi - lo).max(f64::EPSILON);
    let raw = span / count as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() * step;
    (0..=count * 2).map(|i| first + i as f64 * step).take_while(|v| *v <= hi + step * 1e-9).collect()
}

fn label(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 0.01 && v.abs() < 10_000.0) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}")
    }
}

/// The chart's SVG, or `None` when no series has a point.
pub fn line_chart(title: &str, series: &[Series], boundaries: &[Boundary]) -> Option<String> {
    let points: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    if points.is_empty() {
        return None;
    }
    let (mut x0, mut x1) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y0, mut y1) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if x1 <= x0 {
        x0 -= 1.0;
        x1 += 1.0;
    }
    if y1 <= y0 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (y0 - pad, y1 + pad);
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT);
    let sy = |y: f64| HEIGHT - BOTTOM - (y - y0) / (y1 - y0) * (HEIGHT - TOP - BOTTOM);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}">"#,
        t = escape(title)
    );
    let _ = write!(svg, r#"<text x="{LEFT}" y="18" class="chart-title">{}</text>"#, escape(title));
    for y in ticks(y0, y1, 4) {
        let py = sy(y);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{x2}" y1="{py:.1}" y2="{py:.1}" stroke="#e3e3e3"/><text x="{tx}" y="{ty:.1}" class="tick" text-anchor="end">{l}</text>"##,
            x2 = WIDTH - RIGHT,
            tx = LEFT - 6.0,
            ty = py + 4.0,
            l = label(y)
        );
    }
    for x in ticks(x0, x1, 6) {
        let px = sx(x);
        let _ = write!(
            svg,
            r#"<text x="{px:.1}" y="{ty}" class="tick" text-anchor="middle">{l}</text>"#,
            ty = HEIGHT - BOTTOM + 16.0,
            l = label(x)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{x:.1}" y="{y}" class="tick" text-anchor="middle">step</text>"#,
        x = (LEFT + WIDTH - RIGHT) / 2.0,
        y = HEIGHT - 4.0
    );
    for b in boundaries.iter().filter(|b| b.step >= x0 && b.step <= x1) {
        let px = sx(b.step);
        let _ = write!(
            svg,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{y2}" stroke="#888" stroke-dasharray="4 3"/><text x="{tx:.1}" y="{ty}" class="tick">{l}</text>"##,
            y2 = HEIGHT - BOTTOM,
            tx = px + 3.0,
            ty = TOP + 10.0,
            l = escape(&b.label)
        );
    }
    for (i, s) in series.iter().enumerate().filter(|(_, s)| !s.points.is_empty()) {
        let colour = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ =
            write!(svg, r#"<polyline fill="none" stroke="{colour}" stroke-width="2.5" points="{}"/>"#, path.join(" "));
        let &(lx, ly) = s.points.last().expect("non-empty");
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{y:.1}" class="series" fill="{colour}">{l}</text>"#,
            x = sx(lx) + 6.0,
            y = sy(ly) + 4.0,
            l = escape(&s.label)
        );
    }
    svg.push_str("</svg>");
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 1.0, 4), vec![0.0, 0.5, 1.0]);
        assert_eq!(ticks(3.0, 987.0, 6), vec![200.0, 400.0, 600.0, 800.0]);
        let t = ticks(-0.3, 0.3, 4);
        assert_eq!(t.len(), 3);
        assert!(t.iter().zip([-0.2, 0.0, 0.2]).all(|(a, b)| (a - b).abs() < 1e-9), "{t:?}");
    }

    #[test]
    fn empty_series_draw_nothing_and_points_become_a_polyline() {
        assert!(line_chart("x", &[Series { label: "a".into(), points: vec![] }], &[]).is_none());
        let svg = line_chart(
            "Reward <mean>",
            &[Series { label: "rl".into(), points: vec![(1.0, 0.0), (2.0, 0.5), (3.0, 1.0)] }],
            &[Boundary { step: 2.0, label: "long".into() }],
        )
        .unwrap();
        assert!(svg.contains("<polyline") && svg.contains(PALETTE[0]));
        assert!(svg.contains("Reward &lt;mean&gt;"), "titles are escaped");
        assert!(svg.contains("stroke-dasharray") && svg.contains(">long<"), "phase boundary drawn");
    }
}
