//! Progress on every long step: indicatif bars with live rates on a terminal, plain
//! timestamped lines (at most one per 5 s per step) otherwise, so CI logs stay readable.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Progress output for one command (stderr).
pub struct Progress {
    multi: Option<MultiProgress>,
    start: Instant,
}

/// One step with a known size.
pub struct Bar {
    bar: Option<ProgressBar>,
    name: String,
    total: u64,
    last_line: Mutex<Option<Instant>>,
    start: Instant,
}

impl Progress {
    /// Bars when stderr is a terminal (and `plain` is false), lines otherwise.
    pub fn new(plain: bool) -> Self {
        let multi = (!plain && std::io::stderr().is_terminal()).then(MultiProgress::new);
        Progress { multi, start: Instant::now() }
    }

    /// A line above any bars.
    pub fn say(&self, msg: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => eprintln!("[{:>7.1}s] {msg}", self.start.elapsed().as_secs_f64()),
        }
    }

    /// Starts a step of `total` units.
    pub fn bar(&self, name: &str, total: u64) -> Bar {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(total));
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<30} [{bar:25}] {pos}/{len} {elapsed:>4} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_prefix(name.to_string());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        if bar.is_none() {
            self.say(&format!("{name}: started ({total})"));
        }
        Bar { bar, name: name.to_string(), total, last_line: Mutex::new(Some(Instant::now())), start: self.start }
    }
}

impl Bar {
    /// Position and a message (rates); a plain line at most every 5 s.
    pub fn set(&self, pos: u64, msg: &str) {
        match &self.bar {
            Some(b) => {
                b.set_position(pos);
                b.set_message(msg.to_string());
            }
            None => {
                let mut last = self.last_line.lock().expect("lock");
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    *last = Some(Instant::now());
                    eprintln!("[{:>7.1}s]   {}: {pos}/{} {msg}", self.start.elapsed().as_secs_f64(), self.name, self.total);
                }
            }
        }
    }

    /// Ends the step with a message.
    pub fn finish(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.finish_with_message(msg.to_string()),
            None => eprintln!("[{:>7.1}s]   {}: done, {msg}", self.start.elapsed().as_secs_f64(), self.name),
        }
    }
}
