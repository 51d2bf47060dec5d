//! The progress display of `jobs wait`.
//!
//! Two halves. The renderers ([`render_live_line`], [`render_plain_line`], [`bar`]) are pure: they
//! turn a [`JobProgress`] (the parts of a job record worth showing) into one line of text, so the
//! layouts are tested without a terminal. [`ProgressDisplay`] decides when and how that text reaches
//! stderr:
//!
//! - [`ProgressMode::Live`] (stderr is a terminal): one line redrawn in place — `\r`, the line, then
//!   "erase to end of line" so a shorter line leaves no leftovers — on every job update and on every
//!   animation tick, and erased when the wait ends so the result starts on a clean line. The line is
//!   kept narrower than the terminal: a line that wraps can no longer be redrawn with `\r`.
//! - [`ProgressMode::Lines`] (stderr is a pipe or a file): a plain line only when the status, the
//!   queue position or the progress changes, so a log gets one line per step instead of a stream of
//!   carriage returns.
//! - [`ProgressMode::Off`] shows nothing.
//!
//! Finished statuses are never drawn: the outcome is what `jobs wait` prints after the display is
//! cleared.

use serde_json::Value;
use tokio::time::Instant;

use super::format::{human_duration, truncate_chars};
use super::output::Console;

/// Cells between the brackets of the progress bar.
pub const BAR_WIDTH: usize = 20;

/// Line width assumed when the terminal's cannot be read.
pub const DEFAULT_LINE_WIDTH: usize = 79;

/// Frames of the spinner shown when a job reports no `total`.
const SPINNER: [char; 4] = ['|', '/', '-', '\\'];

/// Terminal control: erase from the cursor to the end of the line.
const ERASE_TO_END: &str = "\x1b[K";

/// How [`ProgressDisplay`] shows progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// One line redrawn in place, at most `width` characters.
    Live { width: usize },
    /// A plain line per change.
    Lines,
    /// No progress output.
    Off,
}

/// The parts of a job record the progress display shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobProgress {
    pub status: String,
    /// 1-based place in the session's queue while pending.
    pub position: Option<u64>,
    pub current: Option<f64>,
    pub total: Option<f64>,
    /// The job's progress message, flattened to one line.
    pub message: Option<String>,
    pub created_at: Option<f64>,
    pub started_at: Option<f64>,
}

impl JobProgress {
    /// Reads a `get_job` record; absent or null fields stay `None`.
    pub fn from_job(job: &Value) -> Self {
        let progress = job.get("progress");
        let field = |key: &str| progress.and_then(|p| p.get(key)).and_then(Value::as_f64);
        let message = progress
            .and_then(|p| p.get("message"))
            .and_then(Value::as_str)
            .map(one_line)
            .filter(|m| !m.is_empty());
        JobProgress {
            status: job
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string(),
            position: job.get("position").and_then(Value::as_u64),
            current: field("current"),
            total: field("total"),
            message,
            created_at: job.get("created_at").and_then(Value::as_f64),
            started_at: job.get("started_at").and_then(Value::as_f64),
        }
    }

    /// `current/total` when the job reports a positive total.
    pub fn counts(&self) -> Option<String> {
        match (self.current, self.total) {
            (current, Some(total)) if total > 0.0 => Some(format!(
                "{}/{}",
                number_text(current.unwrap_or(0.0)),
                number_text(total)
            )),
            _ => None,
        }
    }

    /// Done fraction in `0..=1` when the job reports a positive total.
    pub fn fraction(&self) -> Option<f64> {
        match (self.current, self.total) {
            (current, Some(total)) if total > 0.0 => {
                Some((current.unwrap_or(0.0) / total).clamp(0.0, 1.0))
            }
            _ => None,
        }
    }

    /// The status with the queue position when pending: `pending (position 2)`, `processing`.
    pub fn status_text(&self) -> String {
        match (self.status.as_str(), self.position) {
            ("pending", Some(position)) => format!("pending (position {position})"),
            (status, _) => status.to_string(),
        }
    }

    /// Seconds the job has spent in its current state at `now` (Unix seconds): running time once
    /// started, queueing time while pending. `None` when the record lacks the timestamp.
    pub fn elapsed(&self, now: f64) -> Option<f64> {
        let since = match self.status.as_str() {
            "pending" => self.created_at,
            _ => self.started_at.or(self.created_at),
        }?;
        Some((now - since).max(0.0))
    }

    /// Whether the job reached a final status.
    pub fn is_finished(&self) -> bool {
        is_finished(&self.status)
    }
}

/// Whether `status` is final: `completed`, `failed` or `cancelled`.
pub fn is_finished(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

/// A count without a useless fraction: `3`, `2.5`.
fn number_text(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Text on one line: newlines and tabs become spaces, surrounding whitespace goes.
fn one_line(text: &str) -> String {
    text.trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The bar for a done `fraction`: `[######--------------]` with `width` cells inside the brackets.
pub fn bar(fraction: f64, width: usize) -> String {
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let filled = ((fraction * width as f64).floor() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// The live line: `[######--------------] 3/10  render frame 3  12s` while the job runs and
/// reports a total above one, else a spinner frame (picked by `tick`) and the status:
/// `| pending (position 2)  3s`, `/ processing  sleep  12s`. A single command reports `0/1` until
/// it is done, and a bar that stays empty would look stuck where the spinner shows it is alive.
/// `elapsed` is shown with [`human_duration`]. The message is cut so the line fits in `max_width`
/// characters; when even that is not enough the whole line is cut.
pub fn render_live_line(
    progress: &JobProgress,
    elapsed: Option<f64>,
    tick: usize,
    max_width: usize,
) -> String {
    let head = match (progress.fraction(), progress.counts()) {
        (Some(fraction), Some(counts))
            if progress.status == "processing" && progress.total > Some(1.0) =>
        {
            format!("{} {counts}", bar(fraction, BAR_WIDTH))
        }
        _ => format!(
            "{} {}",
            SPINNER[tick % SPINNER.len()],
            progress.status_text()
        ),
    };
    let tail = elapsed.map(human_duration);
    let fixed = head.chars().count() + tail.as_ref().map_or(0, |t| t.chars().count() + 2);
    let mut line = head;
    if let Some(message) = &progress.message {
        // Room left for "  message"; a message cut below a few characters says nothing.
        let room = max_width.saturating_sub(fixed + 2);
        if room >= 8 {
            line.push_str("  ");
            line.push_str(&truncate_chars(message, room));
        }
    }
    if let Some(tail) = tail {
        line.push_str("  ");
        line.push_str(&tail);
    }
    truncate_chars(&line, max_width)
}

/// The plain line for logs: `pending (position 2)`, `processing 1/3  render frame 1`. Equal lines
/// mean nothing worth reporting changed.
pub fn render_plain_line(progress: &JobProgress) -> String {
    let mut line = progress.status_text();
    if let Some(counts) = progress.counts() {
        line.push(' ');
        line.push_str(&counts);
    }
    if let Some(message) = &progress.message {
        line.push_str("  ");
        line.push_str(message);
    }
    line
}

/// Shows a job's progress on the console's stderr while `jobs wait` polls it.
#[derive(Debug)]
pub struct ProgressDisplay {
    mode: ProgressMode,
    progress: Option<JobProgress>,
    last_plain: Option<String>,
    drawn: bool,
    tick: usize,
    began: Instant,
}

impl ProgressDisplay {
    pub fn new(mode: ProgressMode) -> Self {
        ProgressDisplay {
            mode,
            progress: None,
            last_plain: None,
            drawn: false,
            tick: 0,
            began: Instant::now(),
        }
    }

    /// Whether the display wants [`ProgressDisplay::tick`] called between updates.
    pub fn animates(&self) -> bool {
        matches!(self.mode, ProgressMode::Live { .. })
    }

    /// Takes a fresh `get_job` record and shows what changed.
    pub fn update(&mut self, job: &Value, console: &mut Console) {
        let progress = JobProgress::from_job(job);
        if self.mode == ProgressMode::Lines && !progress.is_finished() {
            let line = render_plain_line(&progress);
            if self.last_plain.as_deref() != Some(line.as_str()) {
                console.err_line(&line);
                self.last_plain = Some(line);
            }
        }
        self.progress = Some(progress);
        self.draw(console);
    }

    /// Advances the spinner and redraws the live line (the elapsed time moves on too).
    pub fn tick(&mut self, console: &mut Console) {
        if self.animates() {
            self.tick = self.tick.wrapping_add(1);
            self.draw(console);
        }
    }

    /// Erases the live line, so what follows starts at the left margin.
    pub fn clear(&mut self, console: &mut Console) {
        if self.drawn {
            console.err(&format!("\r{ERASE_TO_END}"));
            self.drawn = false;
        }
    }

    fn draw(&mut self, console: &mut Console) {
        let ProgressMode::Live { width } = self.mode else {
            return;
        };
        let Some(progress) = &self.progress else {
            return;
        };
        if progress.is_finished() {
            return;
        }
        let elapsed = progress
            .elapsed(super::commands::now())
            .unwrap_or_else(|| self.began.elapsed().as_secs_f64());
        let line = render_live_line(progress, Some(elapsed), self.tick, width);
        console.err(&format!("\r{line}{ERASE_TO_END}"));
        self.drawn = true;
    }
}

/// Columns of the terminal on stderr, when stderr is one.
pub fn terminal_width() -> Option<usize> {
    #[cfg(unix)]
    {
        // SAFETY: TIOCGWINSZ only writes a `winsize` into the struct we pass; a zeroed `winsize`
        // is a valid value for it.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
        if ok && size.ws_col > 0 {
            return Some(usize::from(size.ws_col));
        }
    }
    None
}
