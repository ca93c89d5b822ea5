//! Socket scenarios run as separate processes, so the tests can check that
//! events carry the pid of the process that made each call. Each prints one
//! JSON line (its pid, the ports it used, errno) as soon as it knows them,
//! then does its work.
//!
//!   sockops tcp-server IP REQ REPLY MODE   bind IP:0, listen, accept one
//!       client, read REQ bytes, send REPLY bytes; MODE: `wait` (close
//!       after the client does), `first` (close first) or `hold` (once the
//!       client has closed, report and wait for a line on stdin: a
//!       CLOSE_WAIT until then)
//!   sockops tcp-client IP PORT REQ REPLY MODE   connect, send REQ bytes,
//!       read REPLY; MODE: `close` (close first), `wait` (close after the
//!       server does) or `rst` (close with SO_LINGER 0: a reset). With
//!       SOCKOPS_LOCAL_PORT set, connect from that port (SO_REUSEADDR).
//!   sockops fork-client IP PORT REQ REPLY   connect, then fork: the child
//!       talks and closes, the parent drops its copy; reports both pids.
//!       With SOCKOPS_WAIT set, first reports its pid alone and waits for
//!       a line on stdin before connecting.
//!   sockops pair IP     a listener, a client and the accepted end in one
//!       process; waits for a line on stdin, then the client closes first
//!   sockops connect IP PORT          connect once, report the errno
//!   sockops syn-timeout              fill a backlog-0 listener's queue on
//!       127.0.0.1, then connect again: the SYNs are dropped (ETIMEDOUT)
//!   sockops slow-accept IP MILLIS    a backlog-1 listener with a full
//!       accept queue (two connections waiting); a third client connects
//!       (its SYN is dropped), the listener accepts the waiting two MILLIS
//!       later, and the third gets in when its SYN is sent again. Reports
//!       the pid, the listener's port, the third client's port and how
//!       long its connect() took; then accepts it, and it closes first
//!   sockops trickle IP PORT MILLIS   connect, report; send 100 bytes every
//!       10 ms for MILLIS, report the bytes sent; wait for a line on
//!       stdin, close
//!   sockops bind tcp|udp IP PORT     bind only, report the errno and port
//!   sockops listen IP BACKLOG        listen without bind (kernel picks)
//!   sockops backlog IP BACKLOG       bind IP:0, listen(BACKLOG), report,
//!       never accept; close once a line comes on stdin
//!   sockops hold IP PORT N           open N connections, wait for a line
//!       on stdin, close them all
//!   sockops listen-cycle IP PORT N MICROS   N times: bind IP:PORT, listen,
//!       sleep MICROS, close (a server restarting in a loop)
//!
//! With SOCKOPS_NAME set, the process first takes that name (prctl
//! PR_SET_NAME, as any process may: escape sequences and newlines too).
#[path = "../fd_limit.rs"]
mod fd_limit;

use std::{
    io::{self, BufRead, Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    process::ExitCode,
    time::Duration,
};

use serde_json::json;
use socket2::{Domain, Protocol, Socket, Type};

fn main() -> ExitCode {
    if let Some(name) = std::env::var_os("SOCKOPS_NAME") {
        set_name(&name);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let n = |s: &str| s.parse::<usize>().expect("a number");
    let result = match args.as_slice() {
        ["tcp-server", ip_, req, reply, mode] => tcp_server(ip(ip_), n(req), n(reply), mode),
        ["tcp-client", ip_, port, req, reply, mode] => {
            tcp_client(sa(ip_, port), n(req), n(reply), mode)
        }
        ["fork-client", ip_, port, req, reply] => fork_client(sa(ip_, port), n(req), n(reply)),
        ["prefork-server", ip_, port, count] => prefork_server(sa(ip_, port), n(count)),
        ["pair", ip_] => pair(ip(ip_)),
        ["connect", ip_, port] => connect(sa(ip_, port)),
        ["syn-timeout"] => syn_timeout(),
        ["slow-accept", ip_, millis] => slow_accept(ip(ip_), n(millis)),
        ["trickle", ip_, port, millis] => trickle(sa(ip_, port), n(millis)),
        ["bind", proto, ip_, port] => bind(proto, sa(ip_, port)),
        ["listen", ip_, backlog] => listen(ip(ip_), backlog.parse().expect("backlog")),
        ["backlog", ip_, backlog] => never_accept(ip(ip_), backlog.parse().expect("backlog")),
        ["hold", ip_, port, count] => hold(sa(ip_, port), n(count)),
        ["bind-many", count, first] => bind_many(n(count), n(first)),
        ["listen-cycle", ip_, port, count, micros] => {
            listen_cycle(sa(ip_, port), n(count), n(micros))
        }
        _ => Err(io::Error::other(format!("bad arguments {args:?}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sockops: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The command name the kernel shows for this process (15 bytes kept).
fn set_name(name: &std::ffi::OsStr) {
    use std::os::unix::ffi::OsStrExt as _;
    let name = std::ffi::CString::new(name.as_bytes()).expect("no NUL in SOCKOPS_NAME");
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (at most 16 bytes).
    let rc = unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    assert_eq!(rc, 0, "prctl(PR_SET_NAME): {}", io::Error::last_os_error());
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("IP address")
}

fn sa(addr: &str, port: &str) -> SocketAddr {
    SocketAddr::new(ip(addr), port.parse().expect("port"))
}

fn say(value: serde_json::Value) {
    let mut line = value.to_string();
    line.push('\n');
    let mut out = io::stdout().lock();
    out.write_all(line.as_bytes()).expect("stdout");
    out.flush().expect("stdout");
}

fn wait_for_line() -> io::Result<()> {
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(())
}

fn tcp_socket(ip: IpAddr) -> io::Result<Socket> {
    Socket::new(
        Domain::for_address(SocketAddr::new(ip, 0)),
        Type::STREAM,
        Some(Protocol::TCP),
    )
}

fn local_port(s: &Socket) -> u16 {
    s.local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map_or(0, |a| a.port())
}

fn listener(ip: IpAddr, backlog: i32) -> io::Result<Socket> {
    let l = tcp_socket(ip)?;
    l.bind(&SocketAddr::new(ip, 0).into())?;
    l.listen(backlog)?;
    Ok(l)
}

/// Reads until EOF; a reset counts as the end too.
fn read_to_end(conn: &mut TcpStream) -> io::Result<()> {
    let mut rest = Vec::new();
    match conn.read_to_end(&mut rest) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
        other => other.map(drop),
    }
}

fn tcp_server(ip: IpAddr, req: usize, reply: usize, mode: &str) -> io::Result<()> {
    let l = listener(ip, 16)?;
    say(json!({"pid": std::process::id(), "port": local_port(&l)}));
    let (conn, _) = l.accept()?;
    let mut conn: TcpStream = conn.into();
    conn.read_exact(&mut vec![0u8; req])?;
    conn.write_all(&vec![b'r'; reply])?;
    if mode == "wait" || mode == "hold" {
        read_to_end(&mut conn)?;
    }
    if mode == "hold" {
        // The client has closed; this end sits in CLOSE_WAIT until told.
        say(json!({"peer_closed": true}));
        wait_for_line()?;
    }
    drop(conn);
    if mode == "first" {
        // Keep the process (and so the pid) until the client is done.
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn tcp_client(to: SocketAddr, req: usize, reply: usize, mode: &str) -> io::Result<()> {
    let s = tcp_socket(to.ip())?;
    if let Ok(port) = std::env::var("SOCKOPS_LOCAL_PORT") {
        s.set_reuse_address(true)?;
        let port = port.parse().map_err(io::Error::other)?;
        s.bind(&SocketAddr::new(to.ip(), port).into())?;
    }
    s.connect(&to.into())?;
    say(json!({"pid": std::process::id(), "port": local_port(&s)}));
    if mode == "rst" {
        s.set_linger(Some(Duration::ZERO))?;
    }
    let mut s: TcpStream = s.into();
    s.write_all(&vec![b'q'; req])?;
    s.read_exact(&mut vec![0u8; reply])?;
    if mode == "wait" {
        read_to_end(&mut s)?;
    }
    Ok(())
}

/// nginx's shape: this process listens, a forked worker accepts `count`
/// connections and closes each first (so the TIME_WAIT is the server's),
/// while this process is their client. Reports both pids and the port.
fn prefork_server(at: SocketAddr, count: usize) -> io::Result<()> {
    let listener = std::net::TcpListener::bind(at)?;
    let to = listener.local_addr()?;
    // SAFETY: this process is single-threaded; the child only accepts,
    // writes and closes, then exits.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            let mut ok = true;
            for _ in 0..count {
                ok &= listener
                    .accept()
                    .and_then(|(mut s, _)| s.write_all(b"x"))
                    .is_ok();
            }
            // SAFETY: leaving the forked child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        worker => {
            drop(listener);
            for _ in 0..count {
                let mut s = TcpStream::connect(to)?;
                // The worker's byte, then its FIN: it closed first.
                s.read_to_end(&mut Vec::new())?;
            }
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(worker, &mut status, 0) };
            if status != 0 {
                return Err(io::Error::other(format!("worker failed: {status}")));
            }
            say(json!({"pid": std::process::id(), "worker": worker, "port": to.port()}));
            Ok(())
        }
    }
}

fn fork_client(to: SocketAddr, req: usize, reply: usize) -> io::Result<()> {
    if std::env::var_os("SOCKOPS_WAIT").is_some() {
        say(json!({"pid": std::process::id()}));
        wait_for_line()?;
    }
    let s = tcp_socket(to.ip())?;
    s.connect(&to.into())?;
    let port = local_port(&s);
    // The child talks only once the parent has dropped its copy, so the
    // child's close is the one that ends the connection.
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills the two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [read_end, write_end] = fds;
    // SAFETY: this process is single-threaded; the child only does I/O on
    // its copy of the socket and exits.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            let mut go = [0u8; 1];
            // SAFETY: reading one byte from our pipe.
            unsafe { libc::read(read_end, go.as_mut_ptr().cast(), 1) };
            let mut s: TcpStream = s.into();
            let ok = s.write_all(&vec![b'q'; req]).is_ok()
                && s.read_exact(&mut vec![0u8; reply]).is_ok();
            drop(s);
            // SAFETY: leaving the forked child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        child => {
            drop(s);
            say(json!({"pid": std::process::id(), "child": child, "port": port}));
            // SAFETY: writing one byte to our pipe.
            unsafe { libc::write(write_end, b"g".as_ptr().cast(), 1) };
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
            if status != 0 {
                return Err(io::Error::other(format!("child failed: {status}")));
            }
            Ok(())
        }
    }
}

fn pair(ip: IpAddr) -> io::Result<()> {
    let l = listener(ip, 16)?;
    let port = local_port(&l);
    let client = tcp_socket(ip)?;
    client.connect(&SocketAddr::new(ip, port).into())?;
    let (server, _) = l.accept()?;
    say(json!({"pid": std::process::id(), "port": port, "client_port": local_port(&client)}));
    wait_for_line()?;
    let mut client: TcpStream = client.into();
    let mut server: TcpStream = server.into();
    client.write_all(b"bye!")?;
    drop(client);
    read_to_end(&mut server)?;
    Ok(())
}

fn connect(to: SocketAddr) -> io::Result<()> {
    let s = tcp_socket(to.ip())?;
    let errno = match s.connect(&to.into()) {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    };
    say(json!({"pid": std::process::id(), "errno": errno}));
    Ok(())
}

fn syn_timeout() -> io::Result<()> {
    let ip = ip("127.0.0.1");
    let l = listener(ip, 0)?;
    let to = SocketAddr::new(ip, local_port(&l));
    let _queued = TcpStream::connect(to)?; // fills the accept queue
    let s = tcp_socket(ip)?;
    let errno = match s.connect(&to.into()) {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    };
    say(json!({"pid": std::process::id(), "errno": errno, "port": to.port()}));
    Ok(())
}

fn slow_accept(ip: IpAddr, millis: usize) -> io::Result<()> {
    // Backlog 1: the accept queue is full with two waiting (the kernel
    // drops SYNs while more than the backlog wait), and the SYN queue is
    // not (no SYN cookies).
    let l = listener(ip, 1)?;
    let to = SocketAddr::new(ip, local_port(&l));
    let waiting = [TcpStream::connect(to)?, TcpStream::connect(to)?];
    let third = tcp_socket(ip)?;
    let connecting = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        third
            .connect(&to.into())
            .map(|()| (third, started.elapsed()))
    });
    std::thread::sleep(Duration::from_millis(millis as u64));
    for _ in &waiting {
        drop(l.accept()?);
    }
    let (third, took) = connecting.join().expect("the connecting thread")?;
    say(json!({
        "pid": std::process::id(),
        "port": to.port(),
        "sport": local_port(&third),
        "connect_ms": took.as_secs_f64() * 1e3,
    }));
    let (accepted, _) = l.accept()?;
    drop(third);
    let mut accepted: TcpStream = accepted.into();
    read_to_end(&mut accepted)
}

fn trickle(to: SocketAddr, millis: usize) -> io::Result<()> {
    let mut s = TcpStream::connect(to)?;
    say(json!({"pid": std::process::id(), "port": s.local_addr()?.port()}));
    let until = std::time::Instant::now() + Duration::from_millis(millis as u64);
    let mut sent = 0;
    while std::time::Instant::now() < until {
        s.write_all(&[b't'; 100])?;
        sent += 100;
        std::thread::sleep(Duration::from_millis(10));
    }
    say(json!({"sent": sent}));
    wait_for_line()
}

fn bind(proto: &str, at: SocketAddr) -> io::Result<()> {
    let domain = Domain::for_address(at);
    let s = match proto {
        "tcp" => Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?,
        "udp" => Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?,
        other => return Err(io::Error::other(format!("protocol {other}?"))),
    };
    let errno = match s.bind(&at.into()) {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    };
    say(json!({"pid": std::process::id(), "errno": errno, "port": local_port(&s)}));
    Ok(())
}

fn listen(ip: IpAddr, backlog: i32) -> io::Result<()> {
    let s = tcp_socket(ip)?;
    s.listen(backlog)?;
    say(json!({"pid": std::process::id(), "port": local_port(&s)}));
    Ok(())
}

fn never_accept(ip: IpAddr, backlog: i32) -> io::Result<()> {
    let l = listener(ip, backlog)?;
    say(json!({"pid": std::process::id(), "port": local_port(&l)}));
    wait_for_line()
}

fn hold(to: SocketAddr, count: usize) -> io::Result<()> {
    let conns: Vec<TcpStream> = (0..count)
        .map(|_| TcpStream::connect(to))
        .collect::<Result<_, _>>()?;
    let ports: Vec<u16> = conns
        .iter()
        .map(|c| c.local_addr().map_or(0, |a| a.port()))
        .collect();
    say(json!({"pid": std::process::id(), "ports": ports}));
    wait_for_line()?;
    drop(conns);
    Ok(())
}

/// Once a line arrives, binds `count` UDP sockets at once on 127.0.2.x
/// from x = `first` on, ports 20000-29999 (no test's ephemeral ports);
/// closes them when the next line arrives.
fn bind_many(count: usize, first: usize) -> io::Result<()> {
    // As many descriptors as we may (the hard limit).
    let files = fd_limit::raise();
    say(json!({"pid": std::process::id(), "files": files}));
    wait_for_line()?;
    let sockets = (0..count)
        .map(|i| {
            let host = u8::try_from(first + i / 10_000).map_err(io::Error::other)?;
            let port = 20_000 + (i % 10_000) as u16;
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddr::from(([127, 0, 2, host], port)).into())?;
            Ok(s)
        })
        .collect::<io::Result<Vec<Socket>>>()?;
    say(json!({"bound": sockets.len()}));
    wait_for_line()?;
    drop(sockets);
    Ok(())
}

fn listen_cycle(addr: SocketAddr, count: usize, micros: usize) -> io::Result<()> {
    say(json!({ "pid": std::process::id(), "port": addr.port() }));
    for _ in 0..count {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.bind(&addr.into())?;
        s.listen(16)?;
        std::thread::sleep(Duration::from_micros(micros as u64));
        drop(s);
    }
    Ok(())
}
