//! One driver loop for every runtime: the host's UDP socket (dht-std), a
//! smoltcp interface (dht-smoltcp) and the simulator (dht-sim).
//!
//! An [`App`] runs beside a node: an upload, a download, a sensor that
//! publishes readings, or nothing ([`Idle`]). A runtime only moves bytes
//! and time; what to do with them is written once here:
//!
//! * a datagram arrived: [`on_datagram`] hands it to the node, passes an
//!   answer to one of the application's requests on to the application,
//!   and drains the node's events to it;
//! * [`next_timeout`] says when the node or the application next needs
//!   [`on_timeout`], which runs whichever of the two is due and drains
//!   events again.
//!
//! A runtime sleeps until the next datagram or `next_timeout()`, whichever
//! comes first. Because every machine keeps the wake-up invariant (see
//! [`crate::node`]), `next_timeout()` after `on_timeout(now)` is later than
//! `now`: the loop never spins.
//!
//! ```text
//! loop {
//!     match next_timeout(&node, &app) {
//!         Some(at) if at <= now => { on_timeout(&mut node, &mut app, now, &mut tx); }
//!         wake => {
//!             // sleep until `wake` or a datagram
//!             on_datagram(&mut node, &mut app, now, from, bytes, &mut tx);
//!         }
//!     }
//! }
//! ```

use crate::id::PeerAddr;
use crate::node::{Event, Node, Reply, Transmit};
use crate::store::FragmentStore;
use crate::time::Instant;

/// What runs beside a node. Every method has a default that does nothing.
pub trait App<S: FragmentStore, const N: usize, const D: usize, const F: usize> {
    /// When [`App::handle_timeout`] should next be called, if ever. The
    /// same wake-up invariant as the node's applies.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    /// Timed work (safe to call early).
    fn handle_timeout<T: Transmit>(
        &mut self,
        _now: Instant,
        _node: &mut Node<S, N, D, F>,
        _tx: &mut T,
    ) {
    }
    /// An answer to one of the application's requests.
    fn handle_reply<T: Transmit>(
        &mut self,
        _now: Instant,
        _node: &mut Node<S, N, D, F>,
        _reply: &Reply<'_>,
        _tx: &mut T,
    ) {
    }
    /// A node event.
    fn handle_event(&mut self, _node: &Node<S, N, D, F>, _event: Event) {}
    /// Whether the application's work is over.
    fn is_done(&self) -> bool {
        false
    }
}

/// An application that does nothing: a plain node.
#[derive(Clone, Copy, Debug, Default)]
pub struct Idle;

impl<S: FragmentStore, const N: usize, const D: usize, const F: usize> App<S, N, D, F> for Idle {}

/// An application `app` watched by `watch`, which runs after every call
/// into it: where a runtime reports progress (drains an upload's events to
/// a progress bar) without knowing the application. `watch` returns
/// whether to stop: the watched application is then done, whatever it
/// says itself.
#[derive(Debug)]
pub struct Watched<'a, A, W> {
    app: &'a mut A,
    watch: W,
    stopped: bool,
}

impl<'a, A, W: FnMut(&mut A) -> bool> Watched<'a, A, W> {
    /// `app` watched by `watch`.
    pub fn new(app: &'a mut A, watch: W) -> Self {
        Watched { app, watch, stopped: false }
    }

    /// The application.
    pub fn app(&mut self) -> &mut A {
        self.app
    }

    /// Runs the watcher now (after a command given to the application).
    pub fn watch(&mut self) {
        self.stopped |= (self.watch)(self.app);
    }
}

impl<S, A, W, const N: usize, const D: usize, const F: usize> App<S, N, D, F> for Watched<'_, A, W>
where
    S: FragmentStore,
    A: App<S, N, D, F>,
    W: FnMut(&mut A) -> bool,
{
    fn poll_timeout(&self) -> Option<Instant> {
        self.app.poll_timeout()
    }
    fn handle_timeout<T: Transmit>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        tx: &mut T,
    ) {
        self.app.handle_timeout(now, node, tx);
        self.watch();
    }
    fn handle_reply<T: Transmit>(
        &mut self,
        now: Instant,
        node: &mut Node<S, N, D, F>,
        reply: &Reply<'_>,
        tx: &mut T,
    ) {
        self.app.handle_reply(now, node, reply, tx);
        self.watch();
    }
    fn handle_event(&mut self, node: &Node<S, N, D, F>, event: Event) {
        self.app.handle_event(node, event);
        self.watch();
    }
    fn is_done(&self) -> bool {
        self.stopped || self.app.is_done()
    }
}

/// When [`on_timeout`] should next run: the earlier of the node's and the
/// application's wake-ups.
pub fn next_timeout<S, A, const N: usize, const D: usize, const F: usize>(
    node: &Node<S, N, D, F>,
    app: &A,
) -> Option<Instant>
where
    S: FragmentStore,
    A: App<S, N, D, F>,
{
    match (node.poll_timeout(), app.poll_timeout()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Hands a datagram from `from` to the node, and what it answers of the
/// application's requests to the application; then drains events.
pub fn on_datagram<S, A, T, const N: usize, const D: usize, const F: usize>(
    node: &mut Node<S, N, D, F>,
    app: &mut A,
    now: Instant,
    from: PeerAddr,
    bytes: &[u8],
    tx: &mut T,
) where
    S: FragmentStore,
    A: App<S, N, D, F>,
    T: Transmit,
{
    if let Some(reply) = node.handle_datagram(now, from, bytes, tx) {
        app.handle_reply(now, node, &reply, tx);
    }
    drain_events(node, app);
}

/// Runs the node's and the application's timed work, each if it is due at
/// `now`; then drains events. Returns the next wake-up.
pub fn on_timeout<S, A, T, const N: usize, const D: usize, const F: usize>(
    node: &mut Node<S, N, D, F>,
    app: &mut A,
    now: Instant,
    tx: &mut T,
) -> Option<Instant>
where
    S: FragmentStore,
    A: App<S, N, D, F>,
    T: Transmit,
{
    if node.poll_timeout().is_some_and(|at| at <= now) {
        node.handle_timeout(now, tx);
    }
    drain_events(node, app);
    if app.poll_timeout().is_some_and(|at| at <= now) {
        app.handle_timeout(now, node, tx);
    }
    drain_events(node, app);
    next_timeout(node, app)
}

/// Passes the node's pending events to the application.
pub fn drain_events<S, A, const N: usize, const D: usize, const F: usize>(
    node: &mut Node<S, N, D, F>,
    app: &mut A,
) where
    S: FragmentStore,
    A: App<S, N, D, F>,
{
    while let Some(event) = node.poll_event() {
        app.handle_event(node, event);
    }
}
