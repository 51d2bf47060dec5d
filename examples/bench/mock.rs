//! `bench mock`: an instant stand-in for the Blender addon, run as its own process.
//!
//! It speaks the addon protocol as the stock addon does: a request is one JSON object
//! (framed by completeness, newline or not), the reply is bare JSON with no delimiter.
//! Replies are built once at start and written as soon as a request is framed: a
//! request whose text contains `big_reply` gets the big reply, any other the small one.
//! One thread (a current-thread runtime), so it never competes for more than one core.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::client::Scanner;

/// `{"status":"success","result":{"data":"xxx…"}}` of exactly `size` bytes (or the
/// smallest such envelope when `size` is below it).
pub fn make_reply(size: usize) -> Bytes {
    let head = br#"{"status":"success","result":{"data":""#;
    let tail = br#""}}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut out = Vec::with_capacity(head.len() + pad + tail.len());
    out.extend_from_slice(head);
    out.resize(head.len() + pad, b'x');
    out.extend_from_slice(tail);
    Bytes::from(out)
}

pub fn run(listen: SocketAddr, small: usize, big: usize) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        // The orchestrator reads this line to learn the port.
        println!("MOCK_LISTENING {}", listener.local_addr()?);
        let (small, big) = (make_reply(small), make_reply(big));
        // Ends when the parent goes away (it also gets SIGTERM through PDEATHSIG).
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = [0u8; 64];
            while std::io::Read::read(&mut std::io::stdin(), &mut sink).is_ok_and(|n| n > 0) {}
        });
        tokio::pin!(stdin_closed);
        loop {
            tokio::select! {
                _ = &mut stdin_closed => return Ok(()),
                a = listener.accept() => match a {
                    Ok((stream, _)) => {
                        tokio::spawn(serve(stream, small.clone(), big.clone()));
                    }
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                },
            }
        }
    })
}

async fn serve(mut stream: TcpStream, small: Bytes, big: Bytes) {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(4096);
    let mut scanner = Scanner::default();
    loop {
        loop {
            match scanner.scan(&buf) {
                Ok(Some(end)) => {
                    let req = buf.split_to(end);
                    let reply = if memmem::find(&req, b"big_reply").is_some() {
                        &big
                    } else {
                        &small
                    };
                    if stream.write_all(reply).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
