//! The core's own clock types.
//!
//! The core never reads a clock. Every input that depends on time carries an
//! [`Instant`] chosen by the caller: the host runtime converts
//! `std::time::Instant`, the simulator advances a virtual clock, firmware
//! counts timer ticks. Both types count microseconds in a `u64`, which lasts
//! for more than half a million years, and all arithmetic saturates instead of
//! overflowing, so no input can make time arithmetic panic.
//!
//! ```
//! use dht_core::time::{Duration, Instant};
//! let start = Instant::from_millis(1_000);
//! let later = start + Duration::from_millis(250);
//! assert_eq!(later - start, Duration::from_micros(250_000));
//! assert_eq!(start - later, Duration::ZERO); // saturates
//! ```

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A point in time, in microseconds since an origin the caller chose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    micros: u64,
}

/// A span of time in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    micros: u64,
}

impl Instant {
    /// The origin of the caller's clock.
    pub const ZERO: Instant = Instant { micros: 0 };

    /// An instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Self {
        Instant { micros }
    }

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant { micros: millis.saturating_mul(1_000) }
    }

    /// Microseconds since the origin.
    pub const fn total_micros(self) -> u64 {
        self.micros
    }

    /// Milliseconds since the origin.
    pub const fn total_millis(self) -> u64 {
        self.micros / 1_000
    }

    /// Time since `earlier`, or zero if `earlier` is later.
    pub const fn saturating_since(self, earlier: Instant) -> Duration {
        Duration { micros: self.micros.saturating_sub(earlier.micros) }
    }
}

/// An instant to the millisecond in 32 bits, for tables that keep one per
/// entry (per-sender budgets, the broadcast dedup ring): half the size of
/// an [`Instant`]. It wraps every 49.7 days, so [`Stamp::age`] is exact for
/// ages below that and merely short for older ones: a table that uses it
/// must only ever be more cautious with an entry whose age came out short.
///
/// ```
/// use dht_core::time::{Duration, Instant, Stamp};
/// let then = Stamp::of(Instant::from_millis(4_294_967_000));
/// // Across the 32-bit wrap:
/// assert_eq!(then.age(Instant::from_millis(4_294_968_000)), Duration::from_millis(1_000));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp(u32);

impl Stamp {
    /// The stamp of [`Instant::ZERO`].
    pub const ZERO: Stamp = Stamp(0);

    /// The stamp of `at` (its milliseconds, modulo 2^32).
    pub fn of(at: Instant) -> Stamp {
        Stamp(u32::try_from(at.total_millis() & u64::from(u32::MAX)).unwrap_or(0))
    }

    /// Time from the stamp to `now`, in whole milliseconds, modulo 2^32 ms.
    pub fn age(self, now: Instant) -> Duration {
        Duration::from_millis(u64::from(Stamp::of(now).0.wrapping_sub(self.0)))
    }
}

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration { micros: 0 };
    /// The longest representable span.
    pub const MAX: Duration = Duration { micros: u64::MAX };

    /// A span of `micros` microseconds.
    pub const fn from_micros(micros: u64) -> Self {
        Duration { micros }
    }

    /// A span of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration { micros: millis.saturating_mul(1_000) }
    }

    /// A span of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration { micros: secs.saturating_mul(1_000_000) }
    }

    /// The span in microseconds.
    pub const fn total_micros(self) -> u64 {
        self.micros
    }

    /// The span in whole milliseconds.
    pub const fn total_millis(self) -> u64 {
        self.micros / 1_000
    }

    /// `self * factor`, saturating.
    pub const fn saturating_mul(self, factor: u64) -> Self {
        Duration { micros: self.micros.saturating_mul(factor) }
    }

    /// `self / divisor`; a divisor of zero gives [`Duration::MAX`].
    pub const fn div(self, divisor: u64) -> Self {
        match self.micros.checked_div(divisor) {
            Some(micros) => Duration { micros },
            None => Duration::MAX,
        }
    }

    /// The smaller of two spans.
    pub fn min(self, other: Duration) -> Duration {
        if self <= other {
            self
        } else {
            other
        }
    }

    /// The larger of two spans.
    pub fn max(self, other: Duration) -> Duration {
        if self >= other {
            self
        } else {
            other
        }
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant { micros: self.micros.saturating_add(rhs.micros) }
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, rhs: Duration) -> Instant {
        Instant { micros: self.micros.saturating_sub(rhs.micros) }
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, rhs: Duration) -> Duration {
        Duration { micros: self.micros.saturating_add(rhs.micros) }
    }
}

impl Sub for Duration {
    type Output = Duration;
    fn sub(self, rhs: Duration) -> Duration {
        Duration { micros: self.micros.saturating_sub(rhs.micros) }
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.micros / 1_000_000, self.micros % 1_000_000)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.micros >= 1_000_000 {
            write!(f, "{}.{:03}s", self.micros / 1_000_000, (self.micros / 1_000) % 1_000)
        } else if self.micros >= 1_000 {
            write!(f, "{}.{:03}ms", self.micros / 1_000, self.micros % 1_000)
        } else {
            write!(f, "{}us", self.micros)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        let end = Instant::from_micros(u64::MAX);
        assert_eq!(end + Duration::from_secs(1), end);
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Duration::MAX + Duration::from_micros(1), Duration::MAX);
        assert_eq!(Duration::from_secs(3).div(0), Duration::MAX);
        assert_eq!(Duration::from_secs(u64::MAX).saturating_mul(2), Duration::MAX);
    }

    #[test]
    fn conversions_agree() {
        assert_eq!(Duration::from_secs(2), Duration::from_millis(2_000));
        assert_eq!(Duration::from_millis(3).total_micros(), 3_000);
        assert_eq!(Instant::from_millis(7).total_millis(), 7);
    }
}
