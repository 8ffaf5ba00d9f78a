//! Progress for long steps: indicatif bars (one per phase, a line per host) on a terminal,
//! plain timestamped lines otherwise (CI logs, pipes), so both read well.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Progress output for one command.
pub struct Progress {
    multi: Option<MultiProgress>,
    start: Instant,
}

/// One phase (a bar on a terminal).
pub struct Phase {
    bar: Option<ProgressBar>,
    name: String,
    total: u64,
    done: u64,
    start: Instant,
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        let multi = std::io::stderr().is_terminal().then(MultiProgress::new);
        Progress { multi, start: Instant::now() }
    }

    /// Prints a line above any bars.
    pub fn say(&self, msg: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => eprintln!("[{:>6.1}s] {msg}", self.start.elapsed().as_secs_f64()),
        }
    }

    /// Starts a phase of `total` steps.
    pub fn phase(&self, name: &str, total: u64) -> Phase {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(total));
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<28} [{bar:30}] {pos}/{len} {elapsed:>4} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_prefix(name.to_string());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        if bar.is_none() {
            self.say(&format!("{name}: 0/{total}"));
        }
        Phase { bar, name: name.to_string(), total, done: 0, start: Instant::now() }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Phase {
    /// One step done; `what` says which (a host name).
    pub fn step(&mut self, what: &str) {
        self.done += 1;
        match &self.bar {
            Some(b) => {
                b.inc(1);
                b.set_message(what.to_string());
            }
            None => eprintln!("  {}: {}/{} {what}", self.name, self.done, self.total),
        }
    }

    /// Shows what is still pending (a terminal's bar message; a line otherwise, rate-limited by the caller).
    pub fn waiting(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None => eprintln!("  {}: {}/{} done, {msg}", self.name, self.done, self.total),
        }
    }

    /// Ends the phase.
    pub fn finish(self) {
        let took = self.start.elapsed().as_secs_f64();
        match self.bar {
            Some(b) => b.finish_with_message(format!("done in {took:.1}s")),
            None => eprintln!("  {}: {}/{} done in {took:.1}s", self.name, self.done, self.total),
        }
    }
}
