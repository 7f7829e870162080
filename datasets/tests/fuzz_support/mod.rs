//! Shared machinery of the fuzz tests: byte-level mutations of real files and their proptest
//! strategy, a counting global allocator, a hang watchdog, and the runner that ties them
//! together. One file, two users: `datasets/tests/fuzz.rs` declares it as `mod fuzz_support;`
//! and the root crate's `tests/fuzz.rs` includes it with `#[path]`.
//!
//! Each case must end in an [`Outcome`] (the input was accepted, or refused with a clear error
//! or a counted skip); a panic, a broken invariant, a case running past [`HANG_LIMIT`] or a peak
//! allocation over the reader's bound fails the test. Cases are drawn from a fixed seed per
//! reader, so CI is reproducible; `SELFSUP_FUZZ_CASES=N` runs N cases per reader instead of
//! the default, and every reader prints how many it ran.
//!
//! The allocator's peak is process-wide, so every fuzz test of a binary holds the [`serial`]
//! lock from its first allocation to its last: a measured case is then the only work running.

#![allow(dead_code)] // each test binary uses a different part

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once, OnceLock};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

// ------------------------------------------------------------------------------------------
// Mutations

/// Where a mutation lands: within the first 64 bytes (where the headers, sizes and magic
/// numbers are) or anywhere in the file.
#[derive(Clone, Copy, Debug)]
pub enum Pos {
    Head(usize),
    Anywhere(Index),
}

impl Pos {
    /// The byte index in a buffer of `len` bytes (`None` when it is empty).
    fn within(self, len: usize) -> Option<usize> {
        match (len, self) {
            (0, _) => None,
            (_, Pos::Head(i)) => Some(i.min(len - 1)),
            (_, Pos::Anywhere(ix)) => Some(ix.index(len)),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum FieldWidth {
    Two,
    Four,
}

/// Values a size, count or offset field is set to: zero, one, and the edges of the signed and
/// unsigned 8-, 16- and 32-bit ranges (huge declared sizes among them).
pub const EXTREMES: &[u32] = &[0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];

/// One change to a file's bytes.
#[derive(Clone, Debug)]
pub enum Mutation {
    FlipBit {
        at: Pos,
        bit: u8,
    },
    SetByte {
        at: Pos,
        value: u8,
    },
    /// Cut the file short (to a length below its current one).
    Truncate {
        to: Index,
    },
    /// Overwrite a 2- or 4-byte field with one of [`EXTREMES`].
    Field {
        at: Pos,
        width: FieldWidth,
        value: u32,
        big_endian: bool,
    },
    Insert {
        at: Pos,
        run: Vec<u8>,
    },
    Delete {
        at: Pos,
        count: usize,
    },
    /// Copy `count` bytes from `from` and insert them at `to`.
    Duplicate {
        from: Pos,
        count: usize,
        to: Pos,
    },
}

fn pos() -> impl Strategy<Value = Pos> {
    prop_oneof![(0usize..64).prop_map(Pos::Head), any::<Index>().prop_map(Pos::Anywhere)]
}

fn field_width() -> impl Strategy<Value = FieldWidth> {
    prop_oneof![Just(FieldWidth::Two), Just(FieldWidth::Four)]
}

/// One mutation, weighted towards the ones that reach past a format's first checks.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (pos(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (pos(), any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        1 => any::<Index>().prop_map(|to| Mutation::Truncate { to }),
        4 => (pos(), field_width(), prop::sample::select(EXTREMES), any::<bool>())
            .prop_map(|(at, width, value, big_endian)| Mutation::Field { at, width, value, big_endian }),
        1 => (pos(), prop::collection::vec(any::<u8>(), 1..64)).prop_map(|(at, run)| Mutation::Insert { at, run }),
        1 => (pos(), 1usize..256).prop_map(|(at, count)| Mutation::Delete { at, count }),
        1 => (pos(), 1usize..1024, pos()).prop_map(|(from, count, to)| Mutation::Duplicate { from, count, to }),
    ]
}

/// One to seven mutations, applied in order.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..8)
}

/// Replaces `range` of `bytes` with `with`.
pub fn replace(bytes: &mut Vec<u8>, range: Range<usize>, with: &[u8]) {
    let tail = bytes.split_off(range.end);
    bytes.truncate(range.start);
    bytes.extend_from_slice(with);
    bytes.extend_from_slice(&tail);
}

fn field_bytes(value: u32, width: FieldWidth, big_endian: bool) -> Vec<u8> {
    match (width, big_endian) {
        (FieldWidth::Two, true) => (value as u16).to_be_bytes().to_vec(),
        (FieldWidth::Two, false) => (value as u16).to_le_bytes().to_vec(),
        (FieldWidth::Four, true) => value.to_be_bytes().to_vec(),
        (FieldWidth::Four, false) => value.to_le_bytes().to_vec(),
    }
}

/// Applies one mutation (a no-op where it has nothing to act on, e.g. a bit flip in an empty file).
pub fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let len = bytes.len();
    match mutation {
        Mutation::FlipBit { at, bit } => {
            if let Some(i) = at.within(len) {
                bytes[i] ^= 1 << (bit % 8);
            }
        }
        Mutation::SetByte { at, value } => {
            if let Some(i) = at.within(len) {
                bytes[i] = *value;
            }
        }
        Mutation::Truncate { to } => {
            if len > 0 {
                bytes.truncate(to.index(len));
            }
        }
        Mutation::Field { at, width, value, big_endian } => {
            let field = field_bytes(*value, *width, *big_endian);
            if let Some(i) = at.within(len) {
                let end = (i + field.len()).min(len);
                bytes[i..end].copy_from_slice(&field[..end - i]);
            }
        }
        Mutation::Insert { at, run } => {
            let i = at.within(len + 1).unwrap_or_default();
            replace(bytes, i..i, run);
        }
        Mutation::Delete { at, count } => {
            if let Some(i) = at.within(len) {
                replace(bytes, i..(i + count).min(len), &[]);
            }
        }
        Mutation::Duplicate { from, count, to } => {
            if let Some(i) = from.within(len) {
                let chunk = bytes[i..(i + count).min(len)].to_vec();
                let j = to.within(len + 1).unwrap_or_default();
                replace(bytes, j..j, &chunk);
            }
        }
    }
}

/// `seed` with `mutations` applied in order.
pub fn apply_all(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for m in mutations {
        apply(&mut bytes, m);
    }
    bytes
}

// ------------------------------------------------------------------------------------------
// Allocation accounting

/// Counts the heap bytes in use in the process and their peak.
pub struct CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// The largest allocation refused since the last [`start_measure`] (0: none).
static REFUSED: AtomicUsize = AtomicUsize::new(0);

/// A single allocation larger than this is refused (returns null, which makes the allocating
/// code fail or abort) and reported with the case that asked: it protects the machine, and is
/// far above every bound the tests assert.
pub const HARD_CAP: usize = 4 << 30;

fn grew(by: usize) {
    let now = IN_USE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(by: usize) {
    IN_USE.fetch_sub(by, Ordering::Relaxed);
}

/// Reports a refused allocation on stderr, naming the running case. Runs inside the allocator:
/// it writes preformatted pieces and only tries the lock, so it neither allocates much nor
/// deadlocks.
fn refuse(size: usize) {
    REFUSED.fetch_max(size, Ordering::Relaxed);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "fuzz: refused an allocation of {size} bytes (the cap is {HARD_CAP})");
    if let Ok(case) = CASE.try_lock() {
        let _ = writeln!(err, "fuzz: asked for by {}", *case);
    }
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > HARD_CAP {
            refuse(layout.size());
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > HARD_CAP {
            refuse(layout.size());
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > HARD_CAP {
            refuse(new_size);
            return std::ptr::null_mut();
        }
        // Counted as if the old and the new block coexisted, as they do while data is copied.
        grew(new_size);
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        shrank(if p.is_null() { new_size } else { layout.size() });
        p
    }
}

/// Starts a measurement: the peak restarts from the bytes in use now, which are returned.
fn start_measure() -> usize {
    let now = IN_USE.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    REFUSED.store(0, Ordering::Relaxed);
    now
}

/// The peak since [`start_measure`] returned `base`, above `base`.
fn peak_since(base: usize) -> usize {
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

/// Runs `f` and returns its result with the peak bytes it allocated on top of what was in use.
pub fn measure<T>(_serial: &Serial, f: impl FnOnce() -> T) -> (T, usize) {
    let base = start_measure();
    let out = f();
    (out, peak_since(base))
}

/// `bytes` in MiB, for messages.
pub fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// Held by a fuzz test for its whole run (see the module documentation).
pub struct Serial(MutexGuard<'static, ()>);

pub fn serial() -> Serial {
    static SERIAL: Mutex<()> = Mutex::new(());
    Serial(SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

// ------------------------------------------------------------------------------------------
// Hang watchdog

/// Wall time after which a case counts as hung. A hang detector, not a speed assertion: cases
/// take milliseconds, and this only has to stay far above any of them on a loaded CI machine,
/// debug builds included. A case that never returns cannot be failed from inside, so the
/// watchdog prints the case and ends the process.
pub const HANG_LIMIT: Duration = Duration::from_secs(20);

/// When the running case started, in milliseconds since [`clock`]'s origin, plus one (0: no
/// case is running).
static ARMED_AT: AtomicU64 = AtomicU64::new(0);
/// The running case: reader and input.
static CASE: Mutex<String> = Mutex::new(String::new());

fn clock() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn start_watchdog() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(watch);
    });
}

/// The watchdog thread: ends the process when a case has run past [`HANG_LIMIT`].
fn watch() {
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let armed = ARMED_AT.load(Ordering::Relaxed);
        if armed != 0 && clock().saturating_sub(armed - 1) > HANG_LIMIT.as_millis() as u64 {
            let case = CASE.lock().map(|c| c.as_str().to_owned()).unwrap_or_default();
            eprintln!("fuzz: HANG: {case} has run for over {} s", HANG_LIMIT.as_secs());
            std::process::exit(3);
        }
    }
}

/// Marks a case as running until dropped (also when the case panics).
struct Armed;

impl Armed {
    fn new(case: String) -> Self {
        *CASE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = case;
        ARMED_AT.store(clock() + 1, Ordering::Relaxed);
        Armed
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        ARMED_AT.store(0, Ordering::Relaxed);
    }
}

// ------------------------------------------------------------------------------------------
// The runner

/// How a case ended; both are fine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The input was read (it may still be valid after the mutations).
    Accepted,
    /// The input was refused with a clear error, or skipped and counted.
    Refused,
}

/// A reader under test: its name (in messages, and the source of its seed), its default number
/// of cases, and the peak allocation one case may reach.
pub struct Reader {
    pub name: &'static str,
    pub default_cases: u32,
    pub alloc_bound: usize,
}

/// Cases per reader: `SELFSUP_FUZZ_CASES` when set, else `default` (a tenth of it in debug
/// builds, which decode 10 to 30 times slower).
pub fn case_count(default: u32) -> u32 {
    match std::env::var("SELFSUP_FUZZ_CASES") {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("SELFSUP_FUZZ_CASES={v:?} is not a number of cases")),
        Err(_) if cfg!(debug_assertions) => (default / 10).max(1),
        Err(_) => default,
    }
}

/// A fixed ChaCha seed per reader (FNV-1a of its name, spread over 32 bytes).
fn seed_for(reader: &str) -> [u8; 32] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in reader.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut seed = [0u8; 32];
    for (i, chunk) in seed.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&h.wrapping_add(i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    }
    seed
}

/// What the cases of one reader did, for the summary line.
#[derive(Default)]
struct Tally {
    cases: Cell<u64>,
    accepted: Cell<u64>,
    peak: Cell<usize>,
    slowest: Cell<Duration>,
}

impl Tally {
    fn record(&self, outcome: &Result<Outcome, String>, peak: usize, took: Duration) {
        self.cases.set(self.cases.get() + 1);
        if matches!(outcome, Ok(Outcome::Accepted)) {
            self.accepted.set(self.accepted.get() + 1);
        }
        self.peak.set(self.peak.get().max(peak));
        self.slowest.set(self.slowest.get().max(took));
    }
}

/// Runs `case` on inputs drawn from `strategy` (see the module documentation for what a case
/// must do). `case` returns `Err(why)` for a broken property. Panics with the smallest failing
/// input proptest finds.
pub fn fuzz<S>(_serial: &Serial, reader: &Reader, strategy: S, case: impl Fn(&S::Value) -> Result<Outcome, String>)
where
    S: Strategy,
{
    start_watchdog();
    let cases = case_count(reader.default_cases);
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 256, ..Config::default() };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_for(reader.name));
    let mut runner = TestRunner::new_with_rng(config, rng);
    let tally = Tally::default();
    let started = Instant::now();
    let result = runner.run(&strategy, |input| {
        let _armed = Armed::new(format!("{} case {input:?}", reader.name));
        let base = start_measure();
        let t0 = Instant::now();
        let outcome = case(&input);
        let took = t0.elapsed();
        let peak = peak_since(base);
        tally.record(&outcome, peak, took);
        let refused = REFUSED.load(Ordering::Relaxed);
        if refused > 0 {
            return Err(TestCaseError::fail(format!("asked for one allocation of {refused} bytes")));
        }
        if peak > reader.alloc_bound {
            return Err(TestCaseError::fail(format!(
                "allocated {} at peak, over the bound of {}",
                mib(peak),
                mib(reader.alloc_bound)
            )));
        }
        outcome.map(|_| ()).map_err(TestCaseError::fail)
    });
    eprintln!(
        "fuzz {}: {} cases ({} accepted, the others refused or skipped) in {:.1} s; peak allocation {}, \
         slowest case {} ms",
        reader.name,
        tally.cases.get(),
        tally.accepted.get(),
        started.elapsed().as_secs_f64(),
        mib(tally.peak.get()),
        tally.slowest.get().as_millis()
    );
    if let Err(e) = result {
        panic!("fuzz {}: {e}", reader.name);
    }
}
