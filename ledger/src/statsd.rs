//! The shape of a StatsD metric catalogue, shared by the node's and loadgen's catalogues (each
//! the single source of truth for its metrics, its README table and the dashboards' checks).
//! Definitions only: sending is each program's business.

/// How a metric is sent (the three StatsD types Telegraf aggregates that Cairn uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `|c`: a per-interval count.
    Counter,
    /// `|g`: a level.
    Gauge,
    /// `|ms`: a distribution of integer samples; the unit is in the name (`_us`, `_txs`).
    Timer,
}

impl Kind {
    /// The StatsD type suffix.
    pub fn wire(self) -> &'static str {
        match self {
            Kind::Counter => "c",
            Kind::Gauge => "g",
            Kind::Timer => "ms",
        }
    }

    /// The word the README tables use.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Timer => "timer",
        }
    }
}

/// One catalogue entry.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Name after the program's prefix (`cairn.`, `loadgen.`).
    pub name: &'static str,
    /// How it is sent.
    pub kind: Kind,
    /// Tag keys it carries besides those every metric of the program carries.
    pub tags: &'static [&'static str],
    /// What it means.
    pub meaning: &'static str,
}

/// The (name, type) rows of a Markdown table whose first cell is `` `<prefix>.name` ``, in
/// order, for checking a README table against a catalogue.
pub fn table_rows(markdown: &str, prefix: &str) -> Vec<(String, String)> {
    let start = format!("| `{prefix}.");
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix(start.as_str()))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[0].trim_end_matches('`').to_string(), cells.get(1).unwrap_or(&"").to_string())
        })
        .collect()
}

/// The (name, type) rows a README table must have for `catalogue`.
pub fn catalogue_rows(catalogue: &[Metric]) -> Vec<(String, String)> {
    catalogue.iter().map(|m| (m.name.to_string(), m.kind.word().to_string())).collect()
}
