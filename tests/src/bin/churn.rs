//! Connection churn on loopback, for `cargo xtask bench`: K client threads
//! connect to a local server as fast as they can, for a fixed time, and
//! either the client or the server closes first. Destinations are spread
//! over 127.0.0.1..N so ephemeral ports never run out. Prints one JSON
//! line: connections completed and seconds taken.
//!
//!   churn [--threads K] [--seconds S] [--connections N] [--close client|server]
//!         [--addrs N] [--port P]
//!
//! With --connections it stops after N connections instead of S seconds.
use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

struct Options {
    threads: usize,
    seconds: f64,
    connections: Option<u64>,
    client_closes: bool,
    addrs: u8,
    port: u16,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        threads: 4,
        seconds: 5.0,
        connections: None,
        client_closes: true,
        addrs: 64,
        port: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        match flag.as_str() {
            "--threads" => o.threads = value()?.parse().map_err(|e| bad(&e))?,
            "--seconds" => o.seconds = value()?.parse().map_err(|e| bad(&e))?,
            "--connections" => o.connections = Some(value()?.parse().map_err(|e| bad(&e))?),
            "--addrs" => o.addrs = value()?.parse().map_err(|e| bad(&e))?,
            "--port" => o.port = value()?.parse().map_err(|e| bad(&e))?,
            "--close" => {
                o.client_closes = match value()?.as_str() {
                    "client" => true,
                    "server" => false,
                    other => return Err(format!("--close client|server, not {other}")),
                }
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if o.threads == 0 || o.addrs == 0 {
        return Err("--threads and --addrs must be positive".into());
    }
    Ok(o)
}

fn listen(port: u16) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    s.listen(4096)?;
    Ok(s.into())
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("churn: {e}");
            std::process::exit(2);
        }
    };
    let listener = listen(o.port).expect("listening");
    let port = listener.local_addr().expect("local addr").port();
    let listener = Arc::new(listener);
    let client_closes = o.client_closes;
    // The server: as many threads as clients, each serving a connection
    // inline; a deep backlog, so no SYN is dropped (a dropped SYN stalls its
    // client for a second).
    for _ in 0..o.threads {
        let listener = Arc::clone(&listener);
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                if client_closes {
                    let _ = conn.read(&mut [0u8; 1]); // EOF: the client closed
                } else {
                    let _ = conn.write_all(b"x");
                }
            }
        });
    }

    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..o.threads)
        .map(|t| {
            let (done, count, failed) = (done.clone(), count.clone(), failed.clone());
            let (addrs, limit) = (o.addrs, o.connections);
            thread::spawn(move || {
                let mut i = t;
                while !done.load(Ordering::Relaxed) {
                    let ip = Ipv4Addr::new(127, 0, 0, 1 + (i % addrs as usize) as u8);
                    i += 1;
                    match TcpStream::connect(SocketAddr::from((ip, port))) {
                        Ok(mut s) => {
                            if !client_closes {
                                let _ = s.read(&mut [0u8; 1]);
                                let _ = s.read(&mut [0u8; 1]); // EOF: the server closed
                            }
                            drop(s);
                            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
                            if limit.is_some_and(|l| n >= l) {
                                done.store(true, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    if o.connections.is_none() {
        thread::sleep(Duration::from_secs_f64(o.seconds));
        done.store(true, Ordering::Relaxed);
    }
    for w in workers {
        let _ = w.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Let the last closes finish before the process (and its sockets) goes.
    thread::sleep(Duration::from_millis(200));
    println!(
        "{{\"connections\":{},\"failed\":{},\"seconds\":{elapsed:.3},\"port\":{port}}}",
        count.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
}
