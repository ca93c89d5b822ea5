//! The errno values the kernel programs return or compare with, positive as
//! in `include/uapi/asm-generic/errno-base.h` and `errno.h`: a helper or a
//! syscall reports `-EINVAL`, never a bare `-22`.

/// `EBADF`: not an open file descriptor (a bind or listen on a bad fd).
pub const EBADF: i32 = 9;
/// `EFAULT`: bad address; our reads return it for a null kernel pointer.
pub const EFAULT: i32 = 14;
/// `EEXIST`: a map insert with `BPF_NOEXIST` found the key there (another
/// CPU inserted it first).
pub const EEXIST: i32 = 17;
/// `EINVAL`: invalid argument; our reads return it for a field size they
/// cannot read (not 1, 2, 4 or 8 bytes).
pub const EINVAL: i32 = 22;
/// `ENOTSOCK`: the file descriptor is not a socket.
pub const ENOTSOCK: i32 = 88;
/// `EAFNOSUPPORT`: a socket of a family other than IPv4/IPv6.
pub const EAFNOSUPPORT: i32 = 97;
