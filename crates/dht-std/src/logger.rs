//! The tools' logs on stderr, through `env_logger` behind the `log` facade.
//!
//! Lines look like `dhtnode[8000] warn: message`. The level comes from the
//! tools' `-v`/`-q` flags (errors and warnings by default, `-v` info, `-vv`
//! debug, `-vvv` trace: every datagram, `-q` errors only) unless `RUST_LOG`
//! says otherwise, with env_logger's syntax: a level, and levels per module
//! (`RUST_LOG=info,dht_core::node::liveness=debug`). A daemon's lines
//! ([`init_daemon`]) start with the wall-clock time (UTC, milliseconds); a
//! tool's start with the seconds since it started from `-vv` on. A tool
//! drawing a progress bar routes the lines through it ([`route_through`])
//! so that they print above the bar.

use std::io::Write;

use log::{Level, LevelFilter};

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

/// What starts a line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stamp {
    None,
    SinceStart,
    WallClock,
}

/// Installs the logger of a tool; `prefix` starts every line (e.g.
/// `dhtsend: `).
pub fn init(prefix: &str, verbosity: i8) {
    let stamp =
        if level_for(verbosity) >= LevelFilter::Debug { Stamp::SinceStart } else { Stamp::None };
    install(prefix, verbosity, stamp);
}

/// Installs the logger of a daemon (`dhtnode`): every line starts with the
/// wall-clock time, so that an operator can line up the logs of many nodes.
pub fn init_daemon(prefix: &str, verbosity: i8) {
    install(prefix, verbosity, Stamp::WallClock);
}

fn install(prefix: &str, verbosity: i8, stamp: Stamp) {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level_for(verbosity));
    if let Ok(filters) = std::env::var("RUST_LOG") {
        builder.parse_filters(&filters);
    }
    let prefix = prefix.to_owned();
    let started = std::time::Instant::now();
    builder.format(move |buf, record| {
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        match stamp {
            Stamp::None => {}
            Stamp::SinceStart => write!(buf, "[{:10.6}] ", started.elapsed().as_secs_f64())?,
            Stamp::WallClock => write!(buf, "{} ", buf.timestamp_millis())?,
        }
        writeln!(buf, "{prefix}{level}: {}", record.args())
    });
    builder.write_style(env_logger::WriteStyle::Never);
    builder.target(env_logger::Target::Pipe(Box::new(Routed::default())));
    let _ = builder.try_init();
}

/// stderr, or the route set by [`route_through`], line by line.
#[derive(Default)]
struct Routed {
    pending: Vec<u8>,
}

impl Write for Routed {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            if !ROUTE.get().is_some_and(|route| route(&text)) {
                std::io::stderr().lock().write_all(&line)?;
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
