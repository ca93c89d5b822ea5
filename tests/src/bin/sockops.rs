//! Socket scenarios run as separate processes, so the tests can check that
//! events carry the pid of the process that made each call. Each prints one
//! JSON line with its pid and the ports it used, then does its work.
//!
//!   sockops tcp-server ADDR          bind ADDR:0, listen, accept one client,
//!                                    answer "ping" with "pong", close after
//!                                    the client does
//!   sockops tcp-client ADDR PORT     connect, "ping", read "pong", close
//!   sockops connect ADDR PORT        connect once, report the errno
//!   sockops bind tcp|udp ADDR PORT   bind only, report the errno and port
//!   sockops listen ADDR BACKLOG      listen without bind (kernel picks)
use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr},
    process::ExitCode,
};

use serde_json::json;
use socket2::{Domain, Protocol, Socket, Type};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["tcp-server", addr] => tcp_server(ip(addr)),
        ["tcp-client", addr, port] => tcp_client(sa(addr, port)),
        ["connect", addr, port] => connect(sa(addr, port)),
        ["bind", proto, addr, port] => bind(proto, sa(addr, port)),
        ["listen", addr, backlog] => listen(ip(addr), backlog.parse().expect("backlog")),
        _ => Err(std::io::Error::other(format!("bad arguments {args:?}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sockops: {err}");
            ExitCode::FAILURE
        }
    }
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
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).expect("stdout");
    out.flush().expect("stdout");
}

fn tcp_socket(ip: IpAddr) -> std::io::Result<Socket> {
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

fn tcp_server(ip: IpAddr) -> std::io::Result<()> {
    let listener = tcp_socket(ip)?;
    listener.bind(&SocketAddr::new(ip, 0).into())?;
    listener.listen(16)?;
    say(json!({"pid": std::process::id(), "port": local_port(&listener)}));
    let (conn, _) = listener.accept()?;
    let mut conn: std::net::TcpStream = conn.into();
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf)?;
    conn.write_all(b"pong")?;
    // Wait for the client's FIN, so the client closes first.
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest)?;
    drop(conn);
    drop(listener);
    Ok(())
}

fn tcp_client(to: SocketAddr) -> std::io::Result<()> {
    let s = tcp_socket(to.ip())?;
    s.connect(&to.into())?;
    say(json!({"pid": std::process::id(), "port": local_port(&s)}));
    let mut s: std::net::TcpStream = s.into();
    s.write_all(b"ping")?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf)?;
    Ok(())
}

fn connect(to: SocketAddr) -> std::io::Result<()> {
    let s = tcp_socket(to.ip())?;
    let errno = match s.connect(&to.into()) {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    };
    say(json!({"pid": std::process::id(), "errno": errno}));
    Ok(())
}

fn bind(proto: &str, at: SocketAddr) -> std::io::Result<()> {
    let domain = Domain::for_address(at);
    let s = match proto {
        "tcp" => Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?,
        "udp" => Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?,
        other => return Err(std::io::Error::other(format!("protocol {other}?"))),
    };
    let errno = match s.bind(&at.into()) {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    };
    say(json!({"pid": std::process::id(), "errno": errno, "port": local_port(&s)}));
    Ok(())
}

fn listen(ip: IpAddr, backlog: i32) -> std::io::Result<()> {
    let s = tcp_socket(ip)?;
    s.listen(backlog)?;
    say(json!({"pid": std::process::id(), "port": local_port(&s)}));
    Ok(())
}
