//! A TCP proxy that adds a fixed one-way delay to every byte in both
//! directions, the network between a station and a distant keyserver (a
//! 25 ms one-way delay is a 50 ms round trip). Bytes keep their order and
//! are never merged differently from how they were read; TLS passes
//! through untouched.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A running proxy; dropping it stops accepting (open links stay until
/// either side closes).
pub struct NetDelay {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl NetDelay {
    /// Listens on a free loopback port; each connection is linked to
    /// `127.0.0.1:upstream`, every byte delayed by `one_way` each way.
    pub fn start(upstream: u16, one_way: Duration) -> NetDelay {
        let stop = Arc::new(AtomicBool::new(false));
        let port = crate::harness::serve_loopback("network delay", stop.clone(), move |client| {
            link(client, upstream, one_way)
        });
        NetDelay { port, stop }
    }

    /// The port to connect to instead of the upstream one.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for NetDelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn link(client: TcpStream, upstream: u16, one_way: Duration) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = thread::spawn(move || pipe(client, server, one_way));
    pipe(s2, c2, one_way);
    let _ = up.join();
}

/// Reads `from`, writes to `to` each chunk `delay` after it was read.
fn pipe(mut from: TcpStream, to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = thread::spawn(move || {
        let mut to = to;
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let chunk = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                if tx.send((Instant::now() + delay, chunk)).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
}
