//! Log output: `tracing` to stderr through a non-blocking, batching writer.
//!
//! Every subcommand logs to stderr only, so stdout stays free for command output. The writer is
//! non-blocking, so a slow terminal never stalls a command: a log line is appended to a buffer in
//! memory, and a writer thread writes what has gathered to stderr, in order. The thread is woken
//! by the first line after it went idle and then waits [`BATCH_DELAY`] for more before writing,
//! so a burst of lines costs one wake-up and one `write` instead of one of each per line. Lines
//! thus reach stderr up to a few milliseconds late. Past [`MAX_BUFFERED`] bytes not yet written
//! (stderr blocked), new lines are dropped and counted; a note says how many. The returned guard
//! writes everything still buffered when it is dropped. `RUST_LOG` overrides the default level.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// How long the writer thread lets lines gather after the first one wakes it.
pub const BATCH_DELAY: Duration = Duration::from_millis(5);

/// Bytes of log lines held in memory at most while stderr does not take them.
pub const MAX_BUFFERED: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    dropped: u64,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn push(&self, line: &[u8]) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.buf.len() + line.len() > MAX_BUFFERED {
            st.dropped += 1;
            return;
        }
        let was_empty = st.buf.is_empty();
        st.buf.extend_from_slice(line);
        drop(st);
        if was_empty {
            self.wake.notify_one();
        }
    }
}

/// A `MakeWriter` whose lines go to a [`Batcher`]'s buffer.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Write for BatchWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.shared.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Owns the writer thread; dropping it writes what is buffered and stops the thread.
pub struct Batcher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Batcher {
    /// Starts a writer thread that writes the batched lines to `out`.
    pub fn start(out: impl Write + Send + 'static) -> (BatchWriter, Batcher) {
        let shared = Arc::new(Shared::default());
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || run(&worker, out))
            .ok();
        if thread.is_none() {
            // No thread: nothing will write, so take nothing.
            shared
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .closed = true;
        }
        (
            BatchWriter {
                shared: shared.clone(),
            },
            Batcher { shared, thread },
        )
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared, mut out: impl Write) {
    let lock = || shared.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let closed = {
            let mut st = lock();
            while st.buf.is_empty() && st.dropped == 0 && !st.closed {
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.closed
        };
        if !closed {
            std::thread::sleep(BATCH_DELAY);
        }
        let (batch, dropped, closed) = {
            let mut st = lock();
            (
                std::mem::take(&mut st.buf),
                std::mem::take(&mut st.dropped),
                st.closed,
            )
        };
        if dropped > 0 {
            let _ = writeln!(out, "({dropped} log lines dropped: stderr did not keep up)");
        }
        if !batch.is_empty() {
            let _ = out.write_all(&batch);
            let _ = out.flush();
        }
        if closed && lock().buf.is_empty() {
            return;
        }
    }
}

pub fn init(format: LogFormat, default_level: &str) -> Batcher {
    let (writer, guard) = Batcher::start(std::io::stderr());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    let _ = result; // already initialised (tests): keep the first subscriber
    guard
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` that hands each write to a channel, as one chunk.
    struct Chunks(std::sync::mpsc::Sender<Vec<u8>>);

    impl Write for Chunks {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_in_few_writes_and_all_are_written_at_drop() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (mut writer, guard) = Batcher::start(Chunks(tx));
        let lines: Vec<String> = (0..1000).map(|i| format!("line {i}\n")).collect();
        for l in &lines {
            writer.write_all(l.as_bytes()).unwrap();
        }
        // The first burst arrives without the guard being dropped.
        let first = rx.recv_timeout(Duration::from_secs(30)).expect("a write");
        assert!(first.starts_with(b"line 0\n"));
        drop(guard);
        let mut all = first;
        let mut writes = 1;
        for chunk in rx.try_iter() {
            all.extend(chunk);
            writes += 1;
        }
        assert_eq!(String::from_utf8(all).unwrap(), lines.concat());
        assert!(writes < lines.len(), "one write per line ({writes})");
    }

    #[test]
    fn past_the_bound_lines_are_dropped_and_counted() {
        let shared = Shared::default();
        let line = vec![b'x'; 1024 * 1024];
        for _ in 0..10 {
            shared.push(&line);
        }
        let st = shared.state.lock().unwrap();
        assert_eq!(st.buf.len(), MAX_BUFFERED);
        assert_eq!(st.dropped, 2);
    }
}
