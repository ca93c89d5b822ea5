//! SVG charts of a recording (`analyze --plot FILE`), drawn with plotters:
//! TIME_WAIT population and entry rate over time, the connection duration
//! histogram, listener lifetimes on a timeline. Pure: data in, SVG text out.
use plotters::{coord::Shift, prelude::*};

const SIZE: (u32, u32) = (1000, 600);
const ORANGE: RGBColor = RGBColor(255, 152, 0);
const PURPLE: RGBColor = RGBColor(156, 39, 176);
const GREY: RGBColor = RGBColor(158, 158, 158);
const COLORS: [RGBColor; 6] = [BLUE, RED, GREEN, ORANGE, PURPLE, BLACK];

/// One line: `(seconds since the recording began, value)` points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One listener's life on the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// Its row: protocol, port, program.
    pub row: String,
    pub start_s: f64,
    pub end_s: f64,
    pub short: bool,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn draw(f: impl FnOnce(&Area<'_>) -> Result<(), String>) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        f(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn max_of<'a>(values: impl Iterator<Item = &'a f64>) -> f64 {
    values.copied().fold(0.0, f64::max)
}

/// TIME_WAIT sockets over time (one line per series, e.g. the total and
/// the top destinations) above their entry rate.
pub fn timewait(population: &[Series], rate: &Series) -> Result<String, String> {
    draw(|root| {
        let (top, bottom) = root.split_vertically(SIZE.1 * 3 / 5);
        let x_max = max_of(
            population
                .iter()
                .flat_map(|s| s.points.iter().map(|p| &p.0)),
        )
        .max(1.0);
        let y_max = max_of(
            population
                .iter()
                .flat_map(|s| s.points.iter().map(|p| &p.1)),
        )
        .max(1.0);
        lines(
            &top,
            "TIME_WAIT sockets",
            "sockets",
            x_max,
            y_max,
            population,
        )?;
        let r_max = max_of(rate.points.iter().map(|p| &p.1)).max(1.0);
        lines(
            &bottom,
            "TIME_WAIT entries per second",
            "entries/s",
            x_max,
            r_max,
            std::slice::from_ref(rate),
        )
    })
}

fn lines(
    area: &Area<'_>,
    title: &str,
    y_desc: &str,
    x_max: f64,
    y_max: f64,
    series: &[Series],
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max * 1.02, 0.0..y_max * 1.1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the recording began")
        .y_desc(y_desc)
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))
}

/// Bucket `i` holds durations in [2^i, 2^(i+1)) microseconds.
fn bucket(ns: u64) -> usize {
    let us = (ns / 1000).max(1);
    (63 - us.leading_zeros()) as usize
}

/// How many connections lasted how long, in doubling buckets from 1 µs.
pub fn durations(durations_ns: &[u64]) -> Result<String, String> {
    let mut counts = vec![0u64; 1 + durations_ns.iter().map(|&d| bucket(d)).max().unwrap_or(0)];
    for &d in durations_ns {
        counts[bucket(d)] += 1;
    }
    let y_max = counts.iter().copied().max().unwrap_or(0).max(1);
    draw(|root| {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("Connection durations ({} connections)", durations_ns.len()),
                ("sans-serif", 20),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0u32..counts.len() as u32, 0u64..y_max + y_max / 10 + 1)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("duration")
            .y_desc("connections")
            .x_label_formatter(&|i| crate::output::human_ns(1000u64 << i))
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(i, &n)| {
                        let x = i as u32;
                        Rectangle::new([(x, 0), (x + 1, n)], BLUE.mix(0.7).filled())
                    }),
            )
            .map_err(|e| err(&e))?;
        Ok(())
    })
}

/// Each listener's life as a bar on its row (short-lived ones red).
pub fn listeners(bars: &[Bar]) -> Result<String, String> {
    let mut rows: Vec<&str> = bars.iter().map(|b| b.row.as_str()).collect();
    rows.sort_unstable();
    rows.dedup();
    let x_max = max_of(bars.iter().map(|b| &b.end_s)).max(1.0);
    draw(|root| {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .caption("Listener lifetimes", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(160)
            .build_cartesian_2d(0.0..x_max * 1.02, -0.5..rows.len().max(1) as f64 - 0.5)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds since the recording began")
            .y_labels(rows.len().max(1))
            .y_label_formatter(&|y| {
                // Rows sit on whole numbers; other ticks get no label.
                let row = y.round();
                match rows.get(row as usize) {
                    Some(r) if (y - row).abs() < 1e-6 && row >= 0.0 => r.to_string(),
                    _ => String::new(),
                }
            })
            .draw()
            .map_err(|e| err(&e))?;
        // A bar is at least a hair wide, so a 50 µs listener still shows.
        let min_width = x_max / 2000.0;
        chart
            .draw_series(bars.iter().map(|b| {
                let y = rows.binary_search(&b.row.as_str()).unwrap_or(0) as f64;
                let color = if b.short { RED } else { GREY };
                let end = b.end_s.max(b.start_s + min_width);
                Rectangle::new([(b.start_s, y - 0.3), (end, y + 0.3)], color.filled())
            }))
            .map_err(|e| err(&e))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Occurrences of `needle` in a document that must parse as SVG.
    fn count(svg: &str, needle: &str) -> usize {
        let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        svg.matches(needle).count()
    }

    #[test]
    fn timewait_lines_are_named() {
        let total = Series {
            name: "all".into(),
            points: vec![(0.0, 0.0), (1.0, 100.0), (2.0, 150.0)],
        };
        let dest = Series {
            name: "to 127.0.0.2:80".into(),
            points: vec![(0.0, 0.0), (1.0, 50.0), (2.0, 75.0)],
        };
        let rate = Series {
            name: "entries/s".into(),
            points: vec![(0.0, 0.0), (1.0, 100.0), (2.0, 50.0)],
        };
        let svg = timewait(&[total, dest], &rate).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..50]);
        for label in ["TIME_WAIT sockets", "to 127.0.0.2:80", "entries/s", "all"] {
            assert!(svg.contains(label), "{label}");
        }
        // 3 series and their 3 legend marks (grid lines are thinner).
        assert_eq!(count(&svg, "stroke-width=\"2\""), 3 + 3);
    }

    #[test]
    fn histogram_buckets_double() {
        assert_eq!(bucket(500), 0); // under 1 µs counts as 1 µs
        assert_eq!(bucket(1_000), 0);
        assert_eq!(bucket(2_000), 1);
        assert_eq!(bucket(1_000_000), 9); // 1 ms in [512, 1024) µs
        let svg = durations(&[1_000, 1_500, 2_000, 1_000_000]).unwrap();
        assert!(svg.contains("Connection durations (4 connections)"));
        // Three buckets hold connections: three bars.
        assert_eq!(count(&svg, "opacity=\"0.7\" fill=\"#0000FF\""), 3, "{svg}");
    }

    #[test]
    fn listener_bars() {
        let bars: Vec<Bar> = (0..5)
            .map(|i| Bar {
                row: "tcp 8080 srv".into(),
                start_s: f64::from(i),
                end_s: f64::from(i) + 0.00005,
                short: true,
            })
            .chain([Bar {
                row: "udp 53 dns".into(),
                start_s: 0.0,
                end_s: 5.0,
                short: false,
            }])
            .collect();
        let svg = listeners(&bars).unwrap();
        assert!(svg.contains("tcp 8080 srv") && svg.contains("udp 53 dns"));
        // Five red bars, however short, and one grey.
        assert_eq!(count(&svg, "fill=\"#FF0000\""), 5, "{svg}");
    }
}
