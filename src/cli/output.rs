//! Where the client's text goes.
//!
//! Commands write through a [`Console`] instead of `println!`, so the same code prints to the
//! terminal in the binary and into strings in tests. The terminal console writes each piece at once
//! (the "created session …" note must appear before a long command finishes) and ignores a closed
//! pipe, so `blender-session-manager sessions list | head -1` does not panic.

use std::io::Write;

/// The text a command produced and the exit status it chose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: u8,
}

/// Sink for a command's stdout and stderr text.
#[derive(Debug)]
pub enum Console {
    /// The process's own stdout and stderr.
    Terminal,
    /// Collected in memory (tests, embedding).
    Captured { stdout: String, stderr: String },
}

impl Console {
    /// A console that collects everything in memory.
    pub fn captured() -> Self {
        Console::Captured {
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    /// Writes `text` to stdout as-is.
    pub fn out(&mut self, text: &str) {
        match self {
            Console::Terminal => {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(text.as_bytes());
                let _ = stdout.flush();
            }
            Console::Captured { stdout, .. } => stdout.push_str(text),
        }
    }

    /// Writes `text` to stderr as-is.
    pub fn err(&mut self, text: &str) {
        match self {
            Console::Terminal => {
                let mut stderr = std::io::stderr().lock();
                let _ = stderr.write_all(text.as_bytes());
                let _ = stderr.flush();
            }
            Console::Captured { stderr, .. } => stderr.push_str(text),
        }
    }

    /// Writes `text` and a newline to stderr.
    pub fn err_line(&mut self, text: &str) {
        self.err(text);
        self.err("\n");
    }

    /// The collected text with `exit_code` (empty strings for the terminal console).
    pub fn into_output(self, exit_code: u8) -> CommandOutput {
        match self {
            Console::Terminal => CommandOutput {
                exit_code,
                ..CommandOutput::default()
            },
            Console::Captured { stdout, stderr } => CommandOutput {
                stdout,
                stderr,
                exit_code,
            },
        }
    }
}
