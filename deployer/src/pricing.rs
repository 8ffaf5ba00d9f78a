//! A built-in, dated table of EC2 on-demand prices, for the cost estimate `up` shows before it
//! launches anything. It is an estimate: the Pricing API is not used (it needs its own
//! permissions and is not served by test endpoints), prices differ by region and change.

/// When the table was compiled and what it holds.
pub const TABLE_DATE: &str = "AWS us-east-1 Linux on-demand list prices, compiled 2024; other regions cost up to ~30 % more";

/// gp3 storage, USD per GiB-month.
pub const GP3_PER_GB_MONTH: f64 = 0.08;

/// USD per hour for an instance type, if the table has it.
pub fn hourly(instance_type: &str) -> Option<f64> {
    Some(match instance_type {
        "t3.micro" => 0.0104,
        "t3.small" => 0.0208,
        "t3.medium" => 0.0416,
        "t3.large" => 0.0832,
        "t3.xlarge" => 0.1664,
        "t4g.medium" => 0.0336,
        "t4g.large" => 0.0672,
        "m5.large" => 0.096,
        "m5.xlarge" => 0.192,
        "m5.2xlarge" => 0.384,
        "m6i.large" => 0.096,
        "m6i.xlarge" => 0.192,
        "m6i.2xlarge" => 0.384,
        "m7i.large" => 0.1008,
        "m7i.xlarge" => 0.2016,
        "c5.large" => 0.085,
        "c5.xlarge" => 0.17,
        "c5.2xlarge" => 0.34,
        "c5.4xlarge" => 0.68,
        "c6i.large" => 0.085,
        "c6i.xlarge" => 0.17,
        "c6i.2xlarge" => 0.34,
        "c6i.4xlarge" => 0.68,
        "c6i.8xlarge" => 1.36,
        "c7i.large" => 0.08925,
        "c7i.xlarge" => 0.1785,
        "c7i.2xlarge" => 0.357,
        "c6g.xlarge" => 0.136,
        "c7g.xlarge" => 0.145,
        "c7g.2xlarge" => 0.29,
        "c3.8xlarge" => 1.68,
        _ => return None,
    })
}

/// One line of the estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// What is priced.
    pub what: String,
    /// How many.
    pub count: usize,
    /// USD per hour each, if known.
    pub each: Option<f64>,
}

/// The estimate for `nodes` × `node_type`, an optional monitor, and their gp3 volumes.
pub fn estimate(nodes: usize, node_type: &str, monitor_type: Option<&str>, volume_gb: i32) -> (Vec<Line>, f64, bool) {
    let mut lines = vec![Line { what: node_type.to_string(), count: nodes, each: hourly(node_type) }];
    if let Some(m) = monitor_type {
        lines.push(Line { what: format!("{m} (monitor)"), count: 1, each: hourly(m) });
    }
    let hosts = nodes + usize::from(monitor_type.is_some());
    lines.push(Line { what: format!("gp3 volume {volume_gb} GiB"), count: hosts, each: Some(f64::from(volume_gb) * GP3_PER_GB_MONTH / 730.0) });
    let complete = lines.iter().all(|l| l.each.is_some());
    let total = lines.iter().map(|l| l.each.unwrap_or(0.0) * l.count as f64).sum();
    (lines, total, complete)
}

#[cfg(test)]
mod tests {
    #[test]
    fn estimate_adds_up_and_says_when_a_type_is_unknown() {
        let (lines, total, complete) = super::estimate(32, "c6i.xlarge", Some("t3.medium"), 30);
        assert!(complete);
        assert_eq!(lines.len(), 3);
        let want = 32.0 * 0.17 + 0.0416 + 33.0 * 30.0 * 0.08 / 730.0;
        assert!((total - want).abs() < 1e-9, "{total} vs {want}");
        let (_, _, complete) = super::estimate(2, "x9.huge", None, 30);
        assert!(!complete);
    }
}
