//! Why a session ended or a Blender socket was dropped: one vocabulary for logs,
//! history, metrics and status.
//!
//! A session closes for a caller-side reason (idle, closed by its caller, its compat
//! connection gone, shutdown, killed by an operator); a backend socket drops for a
//! Blender-side one (closed or reset, a command timeout, a reply that could not be
//! framed, its backend marked down). Both are the same enum, so a log line, a metric
//! label and a status field never spell the same event two ways.

/// Why a session ended or its Blender socket was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// Idle longer than the idle timeout.
    Idle,
    /// `close_session`.
    ClosedByCaller,
    /// The owning compat connection closed.
    CallerDisconnected,
    /// No reply within the command timeout.
    Timeout,
    /// Blender closed or reset the connection.
    BackendClosed,
    /// The backend failed its health probes and is marked down.
    BackendDown,
    /// Blender's bytes could not be framed (garbage, too large, or sent while idle).
    ProtocolError,
    /// The manager is shutting down.
    Shutdown,
    /// An operator ran `kill_session`.
    Killed,
}

impl DisconnectReason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [DisconnectReason; 9] = [
        DisconnectReason::Idle,
        DisconnectReason::ClosedByCaller,
        DisconnectReason::CallerDisconnected,
        DisconnectReason::Timeout,
        DisconnectReason::BackendClosed,
        DisconnectReason::BackendDown,
        DisconnectReason::ProtocolError,
        DisconnectReason::Shutdown,
        DisconnectReason::Killed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Idle => "idle",
            DisconnectReason::ClosedByCaller => "closed_by_caller",
            DisconnectReason::CallerDisconnected => "caller_disconnected",
            DisconnectReason::Timeout => "timeout",
            DisconnectReason::BackendClosed => "backend_closed",
            DisconnectReason::BackendDown => "backend_down",
            DisconnectReason::ProtocolError => "protocol_error",
            DisconnectReason::Shutdown => "shutdown",
            DisconnectReason::Killed => "killed",
        }
    }

    /// Position in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every reason is listed")
    }
}

impl serde::Serialize for DisconnectReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indexed() {
        let names: std::collections::HashSet<_> =
            DisconnectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DisconnectReason::ALL.len());
        for (i, r) in DisconnectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
