//! `wasi:clocks/monotonic-clock` with sleeps that end when they should. WASI's own turns a
//! guest's sleep into a tokio timer, which fires on the first millisecond tick after the
//! deadline: a `sleep(10 ms)` took 11.1 ms (median), and every step that waits paid that once
//! per wait. Here the deadline is an `async-io` timer (a timerfd on Linux, one for the whole
//! process): 10.05 ms (BENCHMARKS.md, "The engine at the floor"). Nothing is granted or
//! buffered: a pending sleep is one entry in the timer heap, and the instance's resource table
//! bounds how many a guest holds.

use super::StepState;
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

/// How long before a deadline the coarse wait (tokio's timer) hands over to the exact one: two
/// of tokio's millisecond ticks.
const COARSE_MARGIN: Duration = Duration::from_millis(2);

/// The clock's zero: the first time any guest looks (instants are only compared).
static ZERO: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Replace WASI's monotonic clock (linked just before) with this one.
pub(crate) fn add_to_linker(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    monotonic_clock::add_to_linker::<StepState, PreciseClock>(linker, |state| PreciseClockView {
        table: &mut state.table,
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

struct PreciseClock;

impl HasData for PreciseClock {
    type Data<'a> = PreciseClockView<'a>;
}

struct PreciseClockView<'a> {
    table: &'a mut ResourceTable,
}

fn now() -> u64 {
    u64::try_from(ZERO.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl PreciseClockView<'_> {
    fn after(&mut self, nanos: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let deadline = match nanos {
            0 => Deadline::Past { yielded: false },
            n => match Instant::now().checked_add(Duration::from_nanos(n)) {
                Some(at) => Deadline::At(at),
                // Further than the clock can say: never, rather than trap.
                None => Deadline::Never,
            },
        };
        let sleep = self.table.push(deadline)?;
        subscribe(self.table, sleep)
    }
}

impl monotonic_clock::Host for PreciseClockView<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(now())
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        self.after(when.saturating_sub(now()))
    }

    fn subscribe_duration(&mut self, nanos: u64) -> wasmtime::Result<Resource<DynPollable>> {
        self.after(nanos)
    }
}

enum Deadline {
    /// Already due: ready after one yield, so a guest polling in a loop with a zero timeout
    /// lets other tasks (and the sockets it waits for) run, as WASI's own clock does.
    Past {
        yielded: bool,
    },
    At(Instant),
    Never,
}

#[async_trait::async_trait]
impl Pollable for Deadline {
    async fn ready(&mut self) {
        match self {
            Deadline::Past { yielded: true } => {}
            Deadline::Past { yielded } => {
                *yielded = true;
                tokio::task::yield_now().await;
            }
            Deadline::At(at) => {
                // Most of a long wait on tokio's timer, whose wake lands on the worker that
                // runs the step; only the last stretch, shorter than its millisecond tick, on
                // async-io's exact one. A core idle for the whole wait wakes late (~0.4 ms
                // more after 10 ms than after 1 ms here), and async-io's wake is two of them:
                // its thread, then the worker.
                if let Some(early) = at.checked_sub(COARSE_MARGIN)
                    && early > Instant::now()
                {
                    tokio::time::sleep_until(early.into()).await;
                }
                async_io::Timer::at(*at).await;
            }
            Deadline::Never => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sleep_never_ends_early_and_a_due_one_is_ready_after_one_yield() {
        for millis in [1, 3, 7] {
            let wait = Duration::from_millis(millis);
            let started = Instant::now();
            Deadline::At(started + wait).ready().await;
            assert!(started.elapsed() >= wait, "woke before {wait:?}");
        }
        let mut due = Deadline::Past { yielded: false };
        due.ready().await;
        assert!(matches!(due, Deadline::Past { yielded: true }));
        let mut table = ResourceTable::new();
        let mut view = PreciseClockView { table: &mut table };
        view.after(0).expect("a pollable for a due deadline");
        view.after(u64::MAX)
            .expect("a pollable for one too far to say: never");
    }
}
