//! The SVG plot of latency against offered rate: where each server's latency turns up as
//! the load approaches what it can take.
//!
//! SVG only, with plotters' built-in text size estimate: the text is written as `<text>`
//! elements that the viewer renders with its own fonts, so no font file is needed here.

use std::path::Path;

use plotters::chart::SeriesAnno;
use plotters::coord::Shift;
use plotters::coord::combinators::{LogCoord, WithKeyPoints};
use plotters::prelude::*;

use super::report::{SweepPoint, System};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 540;

/// The caption of [`latency_svg`]'s plot.
pub const DEFAULT_CAPTION: &str = "Durable relay: delivery latency against offered rate";

/// Latencies below this (ms) are drawn at it: a logarithmic axis has no zero.
const MIN_LATENCY_MS: f64 = 0.01;

/// Plots p99 and p50 delivery latency against the offered rate, one colour and one marker
/// shape per system, into an SVG file at `path`. Points without latency samples are left out.
pub fn latency_svg(points: &[SweepPoint], path: &Path) -> anyhow::Result<()> {
    latency_svg_captioned(points, path, DEFAULT_CAPTION)
}

/// [`latency_svg`] with a caption of the caller's, e.g. "Durable relay, 50 pairs, 256 B:
/// latency against offered rate".
pub fn latency_svg_captioned(points: &[SweepPoint], path: &Path, caption: &str) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    draw(&root, points, caption).map_err(|error| anyhow::anyhow!("drawing {}: {error}", path.display()))?;
    root.present().map_err(|error| anyhow::anyhow!("writing {}: {error}", path.display()))?;
    Ok(())
}

/// How one system's series look: colour is never the only cue, the marker shape differs too.
struct Look {
    name: &'static str,
    colour: RGBColor,
    marker: Marker,
}

#[derive(Clone, Copy)]
enum Marker {
    Circle,
    Triangle,
    Cross,
}

fn look_of(system: System) -> Look {
    // Blue and vermilion stay distinct for the common kinds of colour blindness.
    match system {
        System::Cubby => Look { name: "Cubby", colour: RGBColor(0, 114, 178), marker: Marker::Circle },
        System::Mosquitto => Look { name: "Mosquitto", colour: RGBColor(213, 94, 0), marker: Marker::Triangle },
        System::Machine => Look { name: "Machine", colour: RGBColor(90, 90, 90), marker: Marker::Cross },
    }
}

fn draw<'a, DB: DrawingBackend + 'a>(
    root: &'a DrawingArea<DB, Shift>,
    points: &[SweepPoint],
    caption: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let series: Vec<(System, Vec<&SweepPoint>)> = [System::Cubby, System::Mosquitto, System::Machine]
        .into_iter()
        .map(|system| (system, measured(points, system)))
        .filter(|(_, points)| !points.is_empty())
        .collect();
    let (x_range, y_range) = ranges(series.iter().flat_map(|(_, points)| points.iter().copied()));
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(log_axis(x_range), log_axis(y_range))?;
    chart
        .configure_mesh()
        .x_desc("offered messages per second")
        .y_desc("delivery latency (ms)")
        .x_label_formatter(&|value| short_number(*value))
        .y_label_formatter(&|value| short_number(*value))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .light_line_style(BLACK.mix(0.04))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    for (system, points) in &series {
        let look = look_of(*system);
        let p99: Vec<(f64, f64)> = points.iter().map(|p| (p.offered_per_second, floor(p.latency.p99_ms))).collect();
        let p50: Vec<(f64, f64)> = points.iter().map(|p| (p.offered_per_second, floor(p.latency.p50_ms))).collect();
        let strong = look.colour.stroke_width(2);
        let light = look.colour.mix(0.45).stroke_width(2);
        let series = chart.draw_series(LineSeries::new(p99.iter().copied(), strong))?;
        legend(series.label(format!("{} p99", look.name)), look.marker, strong.filled(), false);
        draw_markers(&mut chart, &p99, look.marker, strong.filled())?;
        let series = chart.draw_series(DashedLineSeries::new(p50.iter().copied(), 8, 5, light))?;
        legend(series.label(format!("{} p50", look.name)), look.marker, light, true);
        draw_markers(&mut chart, &p50, look.marker, light)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

/// One system's points that have latencies, in order of offered rate.
fn measured(points: &[SweepPoint], system: System) -> Vec<&SweepPoint> {
    let mut measured: Vec<&SweepPoint> =
        points.iter().filter(|p| p.system == system && p.latency.samples > 0 && p.offered_per_second > 0.0).collect();
    measured.sort_by(|a, b| a.offered_per_second.total_cmp(&b.offered_per_second));
    measured
}

/// Axis ranges with some room around the points; a plausible frame when there are none.
fn ranges<'a>(points: impl Iterator<Item = &'a SweepPoint>) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::INFINITY, 0.0_f64, f64::INFINITY, 0.0_f64);
    for point in points {
        x_min = x_min.min(point.offered_per_second);
        x_max = x_max.max(point.offered_per_second);
        y_min = y_min.min(floor(point.latency.p50_ms)).min(floor(point.latency.p99_ms));
        y_max = y_max.max(floor(point.latency.p99_ms));
    }
    if x_max <= 0.0 {
        return (1_000.0..100_000.0, 0.1..100.0);
    }
    (x_min / 1.25..x_max * 1.25, y_min / 1.6..y_max * 1.6)
}

/// A logarithmic axis labelled at 1, 2 and 5 times each power of ten, with light grid lines
/// at the other multiples: plotters alone labels only the powers of ten, which leaves an
/// axis over two decades with three labels.
fn log_axis(range: std::ops::Range<f64>) -> WithKeyPoints<LogCoord<f64>> {
    let labelled = multiples_within(&range, &[1.0, 2.0, 5.0]);
    let light = multiples_within(&range, &[3.0, 4.0, 6.0, 7.0, 8.0, 9.0]);
    range.log_scale().with_key_points(labelled).with_light_points(light)
}

/// The given multiples of every power of ten that fall within the range.
fn multiples_within(range: &std::ops::Range<f64>, multiples: &[f64]) -> Vec<f64> {
    let first = range.start.log10().floor() as i32;
    let last = range.end.log10().ceil() as i32;
    (first..=last)
        .flat_map(|exponent| multiples.iter().map(move |m| m * 10_f64.powi(exponent)))
        .filter(|value| range.contains(value))
        .collect()
}

/// A latency as the logarithmic axis can show it.
fn floor(ms: f64) -> f64 {
    if ms.is_finite() { ms.max(MIN_LATENCY_MS) } else { MIN_LATENCY_MS }
}

/// Each point's marker, in the system's shape.
fn draw_markers<DB: DrawingBackend, X: Ranged<ValueType = f64>, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    data: &[(f64, f64)],
    marker: Marker,
    style: ShapeStyle,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let at = data.iter().copied();
    match marker {
        Marker::Circle => chart.draw_series(at.map(|at| Circle::new(at, 4, style)))?,
        Marker::Triangle => chart.draw_series(at.map(|at| TriangleMarker::new(at, 6, style)))?,
        Marker::Cross => chart.draw_series(at.map(|at| Cross::new(at, 4, style)))?,
    };
    Ok(())
}

/// Gives a series its legend sample: its line (dashed for p50) with its marker in the middle.
///
/// Each marker needs a closure of its own: plotters' legend wants a concrete element type
/// (a boxed `DynElement` would have to outlive the SVG file's borrow).
fn legend<'a, DB: DrawingBackend + 'a>(series: &mut SeriesAnno<'a, DB>, marker: Marker, style: ShapeStyle, dashed: bool) {
    // Three segments either way, overlapping for a solid line, so both are one type.
    let [a, b, c] = if dashed { [(0, 5), (9, 14), (18, 22)] } else { [(0, 8), (7, 15), (14, 22)] };
    let segment = move |(from, to): (i32, i32)| PathElement::new(vec![(from, 0), (to, 0)], style);
    let line = move |at: (i32, i32)| EmptyElement::at(at) + segment(a) + segment(b) + segment(c);
    match marker {
        Marker::Circle => series.legend(move |at| line(at) + Circle::new((11, 0), 4, style)),
        Marker::Triangle => series.legend(move |at| line(at) + TriangleMarker::new((11, 0), 6, style)),
        Marker::Cross => series.legend(move |at| line(at) + Cross::new((11, 0), 4, style)),
    };
}

/// Axis numbers as people write them: 2k, 50k, 0.5, 20.
fn short_number(value: f64) -> String {
    if value >= 1_000.0 {
        return format!("{}k", short_number(value / 1_000.0));
    }
    let decimals = if value > 0.0 { (-value.log10().floor()).clamp(0.0, 3.0) as usize } else { 0 };
    let text = format!("{value:.decimals$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text }
}

#[cfg(test)]
mod tests {
    use super::super::report::Latency;
    use super::*;

    fn point(system: System, offered: f64, p50_ms: f64, p99_ms: f64) -> SweepPoint {
        SweepPoint {
            system,
            offered_per_second: offered,
            acknowledged_per_second: offered,
            latency: Latency { samples: 100, p50_ms, p99_ms, p999_ms: p99_ms * 2.0 },
        }
    }

    #[test]
    fn draws_both_systems() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("latency.svg");
        let mut points = vec![
            point(System::Cubby, 1_000.0, 0.8, 2.0),
            point(System::Cubby, 10_000.0, 1.0, 3.5),
            point(System::Cubby, 50_000.0, 4.0, 40.0),
            point(System::Mosquitto, 1_000.0, 0.3, 0.9),
            point(System::Mosquitto, 10_000.0, 0.5, 2.0),
            point(System::Mosquitto, 100_000.0, 30.0, 400.0),
        ];
        points.push(SweepPoint { latency: Latency::default(), ..point(System::Cubby, 200_000.0, 0.0, 0.0) });
        latency_svg(&points, &path)?;
        let svg = std::fs::read_to_string(&path)?;
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        for text in ["Cubby p99", "Cubby p50", "Mosquitto p99", "Mosquitto p50", "offered messages per second"] {
            assert!(svg.contains(text), "no {text:?} in the SVG");
        }
        Ok(())
    }

    #[test]
    fn draws_an_empty_frame_without_points() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("empty.svg");
        latency_svg(&[], &path)?;
        assert!(std::fs::read_to_string(&path)?.starts_with("<svg"));
        Ok(())
    }

    #[test]
    fn writes_short_numbers() {
        assert_eq!(short_number(2_000.0), "2k");
        assert_eq!(short_number(100_000.0), "100k");
        assert_eq!(short_number(0.5), "0.5");
        assert_eq!(short_number(20.0), "20");
        assert_eq!(short_number(0.05), "0.05");
    }
}
