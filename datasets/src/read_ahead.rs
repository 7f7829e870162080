//! Reading ahead of the decode workers. When a dataset streams, a reader thread reads the
//! encoded bytes of the images an epoch visits next, in the epoch's order, so that the worker
//! that decodes an image finds its file already in memory: a network file system's latency is
//! spent beside the decoding instead of inside it. At most `depth` images and `max_bytes`
//! bytes are held at once, so memory stays flat over an epoch. A worker that gets ahead of the
//! reader reads its file itself (the reader then skips it): nothing ever waits on the reader,
//! and the order and views of a seed are the same with or without it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::dataset::Files;

/// The reader thread and what it has read; dropping it stops the thread.
pub struct ReadAhead {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Bytes read and not yet taken, by dataset index.
    held: HashMap<usize, Vec<u8>>,
    held_bytes: usize,
    /// Images a worker asked for before the reader reached them: the reader skips them.
    claimed: HashSet<usize>,
    stop: bool,
    /// Images served from memory, and read by the workers themselves.
    hits: u64,
    misses: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ReadAhead {
    /// Starts reading `order` (dataset indices, each with its slot in `files`).
    pub(crate) fn start(files: Arc<Files>, order: Vec<(usize, usize)>, depth: usize, max_bytes: usize) -> Self {
        let shared = Arc::new(Shared::default());
        let reader = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("read-ahead".into())
            .spawn(move || read(&reader, &files, &order, depth.max(1), max_bytes.max(1)))
            .ok();
        Self { shared, thread }
    }

    /// The bytes of image `index` if the reader has them; otherwise `None`, and the reader will
    /// not read it (the caller does).
    pub fn take(&self, index: usize) -> Option<Vec<u8>> {
        let mut state = self.shared.lock();
        match state.held.remove(&index) {
            Some(bytes) => {
                state.held_bytes -= bytes.len();
                state.hits += 1;
                drop(state);
                self.shared.changed.notify_all();
                Some(bytes)
            }
            None => {
                state.claimed.insert(index);
                state.misses += 1;
                None
            }
        }
    }

    /// How many images came from the reader, and how many the workers read themselves.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        let state = self.shared.lock();
        (state.hits, state.misses)
    }

    /// Images and bytes held now (at most `depth` images; bytes past `max_bytes` by at most
    /// the last file read).
    pub fn held(&self) -> (usize, usize) {
        let state = self.shared.lock();
        (state.held.len(), state.held_bytes)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read(shared: &Shared, files: &Files, order: &[(usize, usize)], depth: usize, max_bytes: usize) {
    for &(index, slot) in order {
        let mut state = shared.lock();
        while !state.stop && (state.held.len() >= depth || state.held_bytes >= max_bytes) {
            state = shared.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.stop {
            return;
        }
        if state.claimed.remove(&index) {
            continue;
        }
        drop(state);
        // A file that cannot be read is left to the worker, which reports it.
        let Ok(bytes) = files.bytes(slot) else { continue };
        let mut state = shared.lock();
        if state.claimed.remove(&index) {
            continue; // a worker got there first while this was read
        }
        state.held_bytes += bytes.len();
        state.held.insert(index, bytes);
    }
}
