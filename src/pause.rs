//! A pause switch: while it is on, sessions take no new command from their queues.
//!
//! One switch for the whole manager and one per backend. A session task checks both
//! before it takes the next message from its mailbox and, while either is on, waits
//! for both to be off; queued commands stay in their FIFOs, in order, so `resume`
//! releases them in the order they arrived. A command already running is not
//! touched. Built on a `watch` channel: setting it wakes every waiter at once.

use tokio::sync::watch;

#[derive(Debug)]
pub struct Pause {
    on: watch::Sender<bool>,
}

impl Default for Pause {
    fn default() -> Self {
        Pause {
            on: watch::Sender::new(false),
        }
    }
}

impl Pause {
    /// Turns the switch on or off; returns whether it changed.
    pub fn set(&self, paused: bool) -> bool {
        self.on
            .send_if_modified(|p| std::mem::replace(p, paused) != paused)
    }

    pub fn is_paused(&self) -> bool {
        *self.on.borrow()
    }

    /// Resolves once the switch is off (at once if it is).
    pub async fn resumed(&self) {
        let mut rx = self.on.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|p| !*p).await;
    }
}

/// Waits until none of `switches` is on. Re-checks after each wake-up, since one
/// may be turned on again while waiting for another.
pub async fn all_resumed(switches: &[&Pause]) {
    while let Some(on) = switches.iter().find(|p| p.is_paused()) {
        on.resumed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn waits_for_every_switch() {
        let a = Arc::new(Pause::default());
        let b = Arc::new(Pause::default());
        all_resumed(&[&a, &b]).await;
        assert!(a.set(true));
        assert!(!a.set(true));
        b.set(true);
        let (a2, b2) = (a.clone(), b.clone());
        let mut waiter = tokio::spawn(async move { all_resumed(&[&a2, &b2]).await });
        tokio::task::yield_now().await;
        a.set(false);
        // Still held by `b`.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), &mut waiter)
                .await
                .is_err()
        );
        b.set(false);
        waiter.await.unwrap();
    }
}
