//! The accept loop shared by the front doors.
//!
//! Accepts until the shutdown token fires and spawns one task per connection. An
//! accept error (out of file descriptors, say) is logged and retried after a short
//! pause instead of ending the listener.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub async fn accept_loop<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    shutdown: CancellationToken,
    mut on_connection: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(on_connection(stream, peer));
            }
            Err(e) => {
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
