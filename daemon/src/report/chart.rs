//! The printable PNG chart of a [`UsageReport`].

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::{ReportError, UsageReport};
use crate::rules::incentive::IncentiveScheme;

/// Where Debian's `fonts-ipafont-gothic` puts the proportional IPA Gothic.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/opentype/ipafont-gothic/ipagp.ttf";

/// The family name the font is registered under.
const FAMILY: &str = "tsunagi-gothic";

static FONT_LOADED: OnceLock<()> = OnceLock::new();

/// Loads the CJK font once per process (plotters keeps registered fonts for the process's
/// lifetime, so the bytes are leaked on purpose, exactly once).
fn load_font(path: &Path) -> Result<(), ReportError> {
    if FONT_LOADED.get().is_some() {
        return Ok(());
    }
    let missing = || ReportError::Font {
        path: path.display().to_string(),
    };
    let bytes = std::fs::read(path).map_err(|_| missing())?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).map_err(|_| missing())?;
    let _ = FONT_LOADED.set(());
    Ok(())
}

fn chart_err<E: std::fmt::Display>(e: E) -> ReportError {
    ReportError::Chart(e.to_string())
}

/// Draws the report as a 1400×1000 PNG at `out`, with the font at `font`.
pub fn render_png(report: &UsageReport, out: &Path, font: &Path) -> Result<(), ReportError> {
    load_font(font)?;
    let root = BitMapBackend::new(out, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_err)?;
    let title = format!(
        "マイナ保険証 利用率（{}・{}）",
        report.month.label_ja(),
        report.facility.label_ja()
    );
    root.draw(&Text::new(title, (40, 20), (FAMILY, 36).into_font()))
        .map_err(chart_err)?;
    let body = root.margin(70, 20, 20, 20);
    let (upper, lower) = body.split_vertically(620);

    // Bars: the clinic and its references.
    let rows: Vec<(String, f64)> = report
        .rows
        .iter()
        .map(|r| {
            (
                r.label.clone(),
                r.rate.map(|x| x.as_percent()).unwrap_or(0.0),
            )
        })
        .collect();
    let thresholds: Vec<u32> = match report.incentives.first().map(|i| i.scheme) {
        Some(IncentiveScheme::Dx(t)) => t.to_vec(),
        Some(IncentiveScheme::Renkei(m)) => vec![m],
        _ => Vec::new(),
    };
    let top = rows
        .iter()
        .map(|r| r.1)
        .chain(thresholds.iter().map(|t| f64::from(*t)))
        .fold(10.0_f64, f64::max)
        * 1.15;
    let n = rows.len();
    let labels = rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
    let mut chart = ChartBuilder::on(&upper)
        .margin(10)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)
        .map_err(chart_err)?;
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 0.01 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&label_of)
        .y_label_formatter(&|y| format!("{y:.0}%"))
        .label_style((FAMILY, 18).into_font())
        .draw()
        .map_err(chart_err)?;
    for (i, (_, rate)) in rows.iter().enumerate() {
        let x = i as f64;
        let color = if i == 0 {
            RGBColor(0xd9, 0x53, 0x4f)
        } else {
            RGBColor(0x42, 0x7f, 0xc0)
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x - 0.32, 0.0), (x + 0.32, *rate)],
                color.filled(),
            )))
            .map_err(chart_err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{rate:.2}%"),
                (x - 0.15, rate + top * 0.03),
                (FAMILY, 22).into_font(),
            )))
            .map_err(chart_err)?;
    }
    if let Some(first) = report.incentives.first() {
        for (k, t) in thresholds.iter().enumerate() {
            let y = f64::from(*t);
            chart
                .draw_series(LineSeries::new(
                    vec![(-0.5, y), (n as f64 - 0.5, y)],
                    BLACK.mix(0.5).stroke_width(2),
                ))
                .map_err(chart_err)?;
            let label = if thresholds.len() == 1 {
                format!("{}請求 加算基準 {t}%", first.claim_month.label_ja())
            } else {
                format!("{}請求 区分{} {t}%", first.claim_month.label_ja(), k + 1)
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    label,
                    (n as f64 - 1.45, y + top * 0.01),
                    (FAMILY, 18).into_font(),
                )))
                .map_err(chart_err)?;
        }
    }

    // Line: the later national figures.
    let later: Vec<(f64, f64)> = report
        .later_national
        .iter()
        .enumerate()
        .map(|(i, (_, r))| (i as f64, r.as_percent()))
        .collect();
    if !later.is_empty() {
        let months: Vec<String> = report
            .later_national
            .iter()
            .map(|(m, _)| m.clone())
            .collect();
        let ltop = later.iter().map(|p| p.1).fold(10.0_f64, f64::max) * 1.2;
        let mut lc = ChartBuilder::on(&lower)
            .margin(10)
            .caption(
                "全国の利用率の推移（オンライン資格確認件数ベース）",
                (FAMILY, 24).into_font(),
            )
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(later.len() as f64 - 0.5), 0f64..ltop)
            .map_err(chart_err)?;
        let month_of = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                months.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        lc.configure_mesh()
            .x_labels(later.len() * 2 + 1)
            .x_label_formatter(&month_of)
            .y_label_formatter(&|y| format!("{y:.0}%"))
            .label_style((FAMILY, 16).into_font())
            .draw()
            .map_err(chart_err)?;
        lc.draw_series(LineSeries::new(later.clone(), BLUE.stroke_width(3)))
            .map_err(chart_err)?;
        lc.draw_series(later.iter().map(|p| Circle::new(*p, 5, BLUE.filled())))
            .map_err(chart_err)?;
    }
    root.present().map_err(chart_err)?;
    Ok(())
}
