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
        let mut err = std::io::stderr().lock();
        let _ = match self.started {
            Some(t) => writeln!(
                err,
                "[{:10.6}] {}{level}: {}",
                t.elapsed().as_secs_f64(),
                self.prefix,
                record.args()
            ),
            None => writeln!(err, "{}{level}: {}", self.prefix, record.args()),
        };
    }

    fn flush(&self) {}
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
