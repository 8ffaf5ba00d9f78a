//! The sweep's plots, each as SVG (for the HTML report) and PNG: writes/s versus nodes
//! (accepted, committed, per node; the published reference figures drawn and labelled "other
//! hardware, for reference"), throughput over time of each measured run with fault windows
//! shaded, and commit latency percentiles versus nodes. Text uses the DejaVu font embedded in
//! the binary, so PNGs render the same on any machine.

use crate::report::{PointResult, REFERENCES};
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

const SIZE: (u32, u32) = (960, 540);

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

fn e<E: std::fmt::Debug>(err: E) -> anyhow::Error {
    anyhow!("drawing a plot: {err:?}")
}

/// Draws `f` into `<stem>.svg` and `<stem>.png`.
fn both(dir: &Path, stem: &str, f: impl Fn(&DrawingArea<SVGBackend, Shift>) -> Result<()>, g: impl Fn(&DrawingArea<BitMapBackend, Shift>) -> Result<()>) -> Result<()> {
    fonts();
    {
        let svg = dir.join(format!("{stem}.svg"));
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        f(&root)?;
        root.present().map_err(e)?;
    }
    let png = dir.join(format!("{stem}.png"));
    let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    g(&root)?;
    root.present().map_err(e)?;
    Ok(())
}

/// Every plot of the sweep.
pub fn all(dir: &Path, points: &[PointResult]) -> Result<()> {
    both(dir, "writes-vs-nodes", |r| writes_vs_nodes(r, points), |r| writes_vs_nodes(r, points))?;
    both(dir, "latency", |r| latency(r, points), |r| latency(r, points))?;
    for p in points.iter().filter(|p| !p.seconds.is_empty()) {
        both(dir, &format!("throughput-n{}", p.nodes), |r| throughput(r, p), |r| throughput(r, p))?;
    }
    Ok(())
}

/// The figure a point contributes to the curve: committed tx/s at the highest rate meeting the
/// objective when searched, else the measured run's.
fn headline(p: &PointResult) -> Option<(f64, f64)> {
    if p.status != "ok" {
        return None;
    }
    let m = p.measured.as_ref()?;
    Some(match (p.max_committed_tps, p.max_rate) {
        (Some(c), Some(_)) => (c, p.probes.iter().filter(|r| r.meets_objective).map(|r| r.accepted_tps).fold(0.0, f64::max)),
        _ => (m.committed_tps, m.accepted_tps),
    })
}

fn writes_vs_nodes<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, points: &[PointResult]) -> Result<()> {
    let searched = points.iter().any(|p| p.max_rate.is_some());
    let title = if searched { "Writes/s vs nodes (at the latency objective)" } else { "Writes/s vs nodes (at the offered rate)" };
    let max_nodes = points.iter().map(|p| p.nodes).max().unwrap_or(1).max(32) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0.8f64..(max_nodes * 10.0)).log_scale(), (10f64..3_000_000f64).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("nodes")
        .y_desc("transactions (writes) per second")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| if *v >= 1000.0 { format!("{:.0}k", v / 1000.0) } else { format!("{v:.0}") })
        .light_line_style(RGBColor(238, 238, 238))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(e)?;
    let ours: Vec<(f64, f64, f64)> = points.iter().filter_map(|p| headline(p).map(|(c, a)| (p.nodes as f64, c, a))).collect();
    type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);
    let series: [Series; 3] = [
        // Accepted first: committed, nearly equal, is drawn over it.
        ("Cairn accepted (this machine)", RGBColor(0, 160, 80), ours.iter().map(|(n, _, a)| (*n, a.max(10.0))).collect()),
        ("Cairn committed (this machine)", RGBColor(0, 90, 200), ours.iter().map(|(n, c, _)| (*n, c.max(10.0))).collect()),
        ("Cairn committed per node", RGBColor(150, 150, 150), ours.iter().map(|(n, c, _)| (*n, (c / n).max(10.0))).collect()),
    ];
    for (label, color, data) in series {
        chart.draw_series(LineSeries::new(data.clone(), color.stroke_width(2))).map_err(e)?.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(data.iter().map(|p| Circle::new(*p, 4, color.filled()))).map_err(e)?;
    }
    let marks = [RGBColor(200, 60, 0), RGBColor(160, 0, 160), RGBColor(120, 90, 0)];
    for (r, color) in REFERENCES.iter().zip(marks) {
        let pts: Vec<(f64, f64)> = r.points.to_vec();
        chart
            .draw_series(pts.iter().map(|p| TriangleMarker::new(*p, 6, color.filled())))
            .map_err(e)?
            .label(format!("{} (other hardware, for reference)", r.label))
            .legend(move |(x, y)| TriangleMarker::new((x + 9, y), 5, color.filled()));
        if pts.len() > 1 && pts.windows(2).all(|w| w[0].0 != w[1].0) {
            chart.draw_series(LineSeries::new(pts, color.stroke_width(1))).map_err(e)?;
        }
    }
    chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.85)).border_style(BLACK).label_font(("sans-serif", 13)).draw().map_err(e)?;
    Ok(())
}

fn latency<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, points: &[PointResult]) -> Result<()> {
    let data: Vec<(f64, [f64; 3])> = points
        .iter()
        .filter_map(|p| p.measured.as_ref().map(|m| (p.nodes as f64, [m.commit_latency_ms.p50, m.commit_latency_ms.p90, m.commit_latency_ms.p99])))
        .collect();
    let top = data.iter().flat_map(|(_, v)| v.iter().copied()).fold(10.0, f64::max) * 1.2;
    let max_nodes = points.iter().map(|p| p.nodes).max().unwrap_or(1) as f64 + 0.5;
    let mut chart = ChartBuilder::on(root)
        .caption("Commit latency of the measured runs (from scheduled send time)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5f64..max_nodes, 0f64..top)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("nodes")
        .y_desc("ms")
        .x_labels(max_nodes as usize * 2 + 1)
        .x_label_formatter(&|v| if (v - v.round()).abs() < 1e-6 { format!("{v:.0}") } else { String::new() })
        .light_line_style(RGBColor(238, 238, 238))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(e)?;
    for (i, (label, color)) in [("p50", RGBColor(0, 160, 80)), ("p90", RGBColor(0, 90, 200)), ("p99", RGBColor(200, 60, 0))].into_iter().enumerate() {
        let pts: Vec<(f64, f64)> = data.iter().map(|(n, v)| (*n, v[i])).collect();
        chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2))).map_err(e)?.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled()))).map_err(e)?;
    }
    chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.85)).border_style(BLACK).label_font(("sans-serif", 13)).draw().map_err(e)?;
    Ok(())
}

fn throughput<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, p: &PointResult) -> Result<()> {
    let end = p.seconds.len() as f64;
    let top = p.seconds.iter().map(|s| s.offered.max(s.accepted).max(s.committed) as f64).fold(10.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(root)
        .caption(format!("{} node{}: transactions per second over the measured run", p.nodes, if p.nodes == 1 { "" } else { "s" }), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end.max(1.0), 0f64..top)
        .map_err(e)?;
    chart.configure_mesh().x_desc("seconds").y_desc("tx/s").light_line_style(RGBColor(238, 238, 238)).label_style(("sans-serif", 13)).draw().map_err(e)?;
    for w in &p.faults {
        let shade = RGBColor(255, 200, 200).mix(0.6);
        chart
            .draw_series(std::iter::once(Rectangle::new([(w.start_s, 0.0), (w.end_s.max(w.start_s + 0.2), top)], shade.filled())))
            .map_err(e)?
            .label(format!("{} {} {} (fault window)", w.fault.action, w.fault.target, w.fault.node))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], shade.filled()));
    }
    type Pick = fn(&crate::point::Second) -> u64;
    let lines: [(&str, RGBColor, Pick); 3] = [
        ("offered", RGBColor(150, 150, 150), |s| s.offered),
        ("accepted", RGBColor(0, 160, 80), |s| s.accepted),
        ("committed", RGBColor(0, 90, 200), |s| s.committed),
    ];
    for (label, color, pick) in lines {
        let pts: Vec<(f64, f64)> = p.seconds.iter().map(|s| (s.t as f64 + 0.5, pick(s) as f64)).collect();
        chart.draw_series(LineSeries::new(pts, color.stroke_width(2))).map_err(e)?.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.85)).border_style(BLACK).label_font(("sans-serif", 13)).draw().map_err(e)?;
    Ok(())
}
