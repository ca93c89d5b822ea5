//! Idle sockets on loopback, for `cargo xtask bench --scale`: holds
//! established connection pairs open, or leaves connections in TIME_WAIT;
//! then prints `ready` on stdout and sleeps until its stdin closes or it
//! is killed.
//!
//!   hold --pairs N [--addrs K]       N clients connected to listeners on
//!       127.0.0.1..127.0.0.K (one port the kernel picks), every end kept
//!       open: 2N sockets, plus the K listeners. The descriptor limit is
//!       raised to the hard limit, which 2N + K must fit under.
//!   hold --time-wait N [--addrs K]   N connections the client closes
//!       first: N client ends in TIME_WAIT for 60 s (as many as
//!       net.ipv4.tcp_max_tw_buckets allows), whether this process lives
//!       on or not.
//!
//! Clients take turns over the K destinations (16 unless --addrs says), so
//! N may pass the 28k ephemeral ports one destination has. Held ends close
//! with SO_LINGER 0, a reset: killing the holder leaves no TIME_WAIT. By
//! hand: `sleep infinity | hold --pairs 5000` (EOF on stdin ends it).
#[path = "../fd_limit.rs"]
mod fd_limit;

use std::{
    io::{self, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use socket2::SockRef;

/// What to leave behind.
enum Hold {
    /// Established pairs, both ends open.
    Pairs(usize),
    /// Connections closed client first.
    TimeWait(usize),
}

struct Options {
    hold: Hold,
    addrs: u8,
}

fn parse() -> Result<Options, String> {
    let mut hold = None;
    let mut addrs = 16;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        match flag.as_str() {
            "--pairs" => hold = Some(Hold::Pairs(value()?.parse().map_err(|e| bad(&e))?)),
            "--time-wait" => hold = Some(Hold::TimeWait(value()?.parse().map_err(|e| bad(&e))?)),
            "--addrs" => addrs = value()?.parse().map_err(|e| bad(&e))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let hold = hold.ok_or("--pairs N or --time-wait N")?;
    if addrs == 0 || addrs == u8::MAX {
        return Err("--addrs must be 1 to 254".into());
    }
    Ok(Options { hold, addrs })
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hold: {e}");
            std::process::exit(2);
        }
    };
    let held = match o.hold {
        Hold::Pairs(n) => pairs(n, o.addrs),
        Hold::TimeWait(n) => time_waits(n, o.addrs),
    };
    let held = match held {
        Ok(held) => held,
        Err(e) => {
            eprintln!("hold: {e}");
            std::process::exit(1);
        }
    };
    println!("ready");
    let _ = io::stdout().flush();
    // Until EOF: the bench drops our stdin, or kills us.
    let _ = io::copy(&mut io::stdin(), &mut io::sink());
    drop(held);
}

/// What stays open until the process ends.
struct Held {
    _listeners: Vec<TcpListener>,
    _streams: Vec<TcpStream>,
}

/// Listeners on 127.0.0.1..127.0.0.`addrs`, all on one port.
fn listeners(addrs: u8) -> io::Result<Vec<TcpListener>> {
    let first = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 1), 0))?;
    let port = first.local_addr()?.port();
    let mut all = vec![first];
    for host in 2..=addrs {
        all.push(TcpListener::bind((Ipv4Addr::new(127, 0, 0, host), port))?);
    }
    Ok(all)
}

/// Connection `i`: a client to the `i`th listener in turn, and the end
/// that listener accepted.
fn connect(listeners: &[TcpListener], i: usize) -> io::Result<(TcpStream, TcpStream)> {
    let listener = &listeners[i % listeners.len()];
    let to: SocketAddr = listener.local_addr()?;
    let client =
        TcpStream::connect(to).map_err(|e| io::Error::other(format!("connecting to {to}: {e}")))?;
    let (server, _) = listener.accept()?;
    Ok((client, server))
}

/// `n` established pairs, both ends open and set to reset when closed.
fn pairs(n: usize, addrs: u8) -> io::Result<Held> {
    let limit = fd_limit::raise();
    let needed = 2 * n as u64 + u64::from(addrs) + 3;
    if needed > limit {
        return Err(io::Error::other(format!(
            "--pairs {n} needs {needed} descriptors, over the limit of {limit} \
             (use more holders)"
        )));
    }
    let listeners = listeners(addrs)?;
    let mut streams = Vec::with_capacity(2 * n);
    for i in 0..n {
        let (client, server) = connect(&listeners, i)
            .map_err(|e| io::Error::other(format!("pair {} of {n}: {e}", i + 1)))?;
        for end in [client, server] {
            SockRef::from(&end).set_linger(Some(Duration::ZERO))?;
            streams.push(end);
        }
    }
    Ok(Held {
        _listeners: listeners,
        _streams: streams,
    })
}

/// `n` connections, each closed by the client and then by the server once
/// it read the client's FIN: the client's end stays in TIME_WAIT.
fn time_waits(n: usize, addrs: u8) -> io::Result<Held> {
    let listeners = listeners(addrs)?;
    for i in 0..n {
        let (client, mut server) = connect(&listeners, i)
            .map_err(|e| io::Error::other(format!("connection {} of {n}: {e}", i + 1)))?;
        drop(client);
        // EOF: the client's FIN arrived; our own close answers it.
        let _ = server.read(&mut [0u8; 1])?;
    }
    Ok(Held {
        _listeners: listeners,
        _streams: Vec::new(),
    })
}
