//! A global allocator that counts allocations while counting is switched on:
//! all threads together, and the calling thread on its own. Switched off it
//! costs one relaxed load per allocation, so the timing rounds run with it
//! installed but idle.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The system allocator, counting while [`Counting::start`] is in effect.
pub struct Counting;

static ENABLED: AtomicBool = AtomicBool::new(false);
static ALL_THREADS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static THIS_THREAD: Cell<u64> = const { Cell::new(0) };
}

#[inline]
fn count() {
    if ENABLED.load(Ordering::Relaxed) {
        ALL_THREADS.fetch_add(1, Ordering::Relaxed);
        let _ = THIS_THREAD.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches no
// allocator state.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations counted between [`Counting::start`] and [`Counting::stop`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Counted {
    /// On every thread (the job's, the exporters').
    pub all_threads: u64,
    /// On the thread that called `start` and `stop` (the job's thread on a
    /// current-thread runtime).
    pub this_thread: u64,
}

impl Counting {
    /// Resets the counters and starts counting.
    pub fn start() {
        ALL_THREADS.store(0, Ordering::Relaxed);
        THIS_THREAD.with(|c| c.set(0));
        ENABLED.store(true, Ordering::SeqCst);
    }

    /// Stops counting and returns the counts.
    pub fn stop() -> Counted {
        ENABLED.store(false, Ordering::SeqCst);
        Counted {
            all_threads: ALL_THREADS.load(Ordering::Relaxed),
            this_thread: THIS_THREAD.with(Cell::get),
        }
    }
}
