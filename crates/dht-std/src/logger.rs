//! A small logger on stderr behind the `log` facade.
//!
//! Lines look like `dhtnode[8000] warn: message`; with `-vv` and more
//! they start with the seconds since the program started. The level comes from the
//! tools' `-v`/`-q` flags: errors and warnings by default, `-v` info, `-vv`
//! debug, `-vvv` trace (every datagram), `-q` errors only.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    prefix: String,
    level: LevelFilter,
    /// With debug output and more, lines carry the seconds since start.
    started: Option<std::time::Instant>,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let line = match self.started {
            Some(t) => format!(
                "[{:10.6}] {}{level}: {}",
                t.elapsed().as_secs_f64(),
                self.prefix,
                record.args()
            ),
            None => format!("{}{level}: {}", self.prefix, record.args()),
        };
        if ROUTE.get().is_some_and(|route| route(&line)) {
            return;
        }
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn flush(&self) {}
}

/// Where log lines go instead of stderr while it says so (`true`): a tool's
/// progress bar prints them above itself.
static ROUTE: std::sync::OnceLock<fn(&str) -> bool> = std::sync::OnceLock::new();

/// Routes every log line through `route` first; a line it takes (`true`)
/// is not written to stderr again. Set once.
pub fn route_through(route: fn(&str) -> bool) {
    let _ = ROUTE.set(route);
}

/// The level for a verbosity: `-q` is -1, nothing is 0, each `-v` adds 1.
pub fn level_for(verbosity: i8) -> LevelFilter {
    match verbosity {
        i8::MIN..=-1 => LevelFilter::Error,
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Installs the logger; `prefix` starts every line (e.g. `dhtnode[8000] `).
pub fn init(prefix: &str, verbosity: i8) {
    let level = level_for(verbosity);
    let started = (level >= LevelFilter::Debug).then(std::time::Instant::now);
    let logger = StderrLogger { prefix: prefix.to_owned(), level, started };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}
