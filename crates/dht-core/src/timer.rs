//! Timer tables: when each of a state machine's timers fires.
//!
//! As in quinn-proto, every timed duty of a machine is one variant of an
//! enum, and the machine keeps one [`TimerTable`] indexed by it: arming a
//! timer is `set`, disarming it `stop`, and the machine's next wake-up is
//! the table's minimum ([`TimerTable::next`]). A machine's
//! `handle_timeout(now)` takes each expired timer out of the table
//! ([`TimerTable::expire`]) and either re-arms it in the future or leaves it
//! off, so after the call no timer of the table is at or before `now`
//! unless the machine re-armed it there on purpose (it never does: see the
//! wake-up invariant in [`crate::node`]).
//!
//! ```
//! use dht_core::timer::{Timer, TimerTable};
//! use dht_core::time::Instant;
//! #[derive(Clone, Copy)]
//! enum T { Probe, Report }
//! impl Timer for T {
//!     const COUNT: usize = 2;
//!     fn index(self) -> usize { self as usize }
//! }
//! let mut timers = TimerTable::<T, 2>::new();
//! timers.set(T::Report, Instant::from_millis(30));
//! timers.set(T::Probe, Instant::from_millis(10));
//! assert_eq!(timers.next(), Some(Instant::from_millis(10)));
//! assert!(!timers.expire(T::Probe, Instant::from_millis(9)));
//! assert!(timers.expire(T::Probe, Instant::from_millis(10)));
//! assert_eq!(timers.next(), Some(Instant::from_millis(30)));
//! ```

use core::fmt;
use core::marker::PhantomData;

use crate::time::Instant;

/// The timers of one machine: an enum whose variants number `0..COUNT`.
pub trait Timer: Copy {
    /// Number of variants.
    const COUNT: usize;
    /// The variant's number, below [`Timer::COUNT`].
    fn index(self) -> usize;
}

/// When each timer of `T` fires, if it is armed. `N` must be at least
/// `T::COUNT` (checked at compile time).
pub struct TimerTable<T: Timer, const N: usize> {
    at: [Option<Instant>; N],
    kind: PhantomData<T>,
}

impl<T: Timer, const N: usize> TimerTable<T, N> {
    const FITS: () = assert!(N >= T::COUNT, "the table is smaller than its timer enum");

    /// Every timer off.
    pub const fn new() -> Self {
        let () = Self::FITS;
        TimerTable { at: [None; N], kind: PhantomData }
    }

    /// Arms `timer` to fire at `at` (replacing any earlier setting).
    pub fn set(&mut self, timer: T, at: Instant) {
        if let Some(slot) = self.at.get_mut(timer.index()) {
            *slot = Some(at);
        }
    }

    /// Arms `timer` at `at` unless it is already armed earlier.
    pub fn set_earliest(&mut self, timer: T, at: Instant) {
        if let Some(slot) = self.at.get_mut(timer.index()) {
            *slot = Some(slot.map_or(at, |current| current.min(at)));
        }
    }

    /// Arms `timer` at `at`, or disarms it with `None`.
    pub fn set_or_stop(&mut self, timer: T, at: Option<Instant>) {
        if let Some(slot) = self.at.get_mut(timer.index()) {
            *slot = at;
        }
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: T) {
        self.set_or_stop(timer, None);
    }

    /// When `timer` fires, if armed.
    pub fn get(&self, timer: T) -> Option<Instant> {
        self.at.get(timer.index()).copied().flatten()
    }

    /// Whether `timer` is armed.
    pub fn is_armed(&self, timer: T) -> bool {
        self.get(timer).is_some()
    }

    /// If `timer` is due at `now`, disarms it and returns `true`; the
    /// caller then does the timer's work and re-arms it if it recurs.
    pub fn expire(&mut self, timer: T, now: Instant) -> bool {
        match self.at.get_mut(timer.index()) {
            Some(slot) if slot.is_some_and(|at| at <= now) => {
                *slot = None;
                true
            }
            _ => false,
        }
    }

    /// The earliest armed timer's instant: the machine's next wake-up.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// Disarms every timer.
    pub fn clear(&mut self) {
        self.at = [None; N];
    }
}

impl<T: Timer, const N: usize> Default for TimerTable<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Timer, const N: usize> Clone for TimerTable<T, N> {
    fn clone(&self) -> Self {
        TimerTable { at: self.at, kind: PhantomData }
    }
}

impl<T: Timer, const N: usize> fmt::Debug for TimerTable<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.at.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum T {
        A,
        B,
        C,
    }

    impl Timer for T {
        const COUNT: usize = 3;
        fn index(self) -> usize {
            self as usize
        }
    }

    #[test]
    fn next_is_the_minimum_of_armed_timers() {
        let mut table = TimerTable::<T, 3>::new();
        assert_eq!(table.next(), None);
        table.set(T::C, Instant::from_millis(5));
        table.set(T::A, Instant::from_millis(7));
        assert_eq!(table.next(), Some(Instant::from_millis(5)));
        table.set_earliest(T::A, Instant::from_millis(9));
        assert_eq!(table.get(T::A), Some(Instant::from_millis(7)));
        table.set_earliest(T::A, Instant::from_millis(2));
        assert_eq!(table.next(), Some(Instant::from_millis(2)));
        table.stop(T::A);
        assert!(!table.is_armed(T::A));
        assert!(!table.is_armed(T::B));
        assert_eq!(table.next(), Some(Instant::from_millis(5)));
    }

    #[test]
    fn expire_takes_only_due_timers_out() {
        let mut table = TimerTable::<T, 3>::new();
        table.set(T::B, Instant::from_millis(10));
        assert!(!table.expire(T::B, Instant::from_millis(9)));
        assert!(table.is_armed(T::B));
        assert!(table.expire(T::B, Instant::from_millis(11)));
        assert!(!table.is_armed(T::B));
        assert!(!table.expire(T::B, Instant::from_millis(12)), "a disarmed timer never fires");
    }
}
