//! Reading fields whose place comes from the loader, never from constants.
use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf};
use tracer_common::{EFAULT, EINVAL, Field};

/// Reads one item of the `CONFIG` global. Volatile, so the compiler cannot
/// assume the zeros the object was built with.
#[inline(always)]
pub fn cfg<T: Copy>(item: &T) -> T {
    // SAFETY: `item` points into the `CONFIG` static.
    unsafe { core::ptr::read_volatile(item) }
}

/// Reads an unsigned integer field (1, 2, 4 or 8 bytes, or a bitfield)
/// at `base + field.offset` in kernel memory.
#[inline(always)]
pub fn uint(base: *const u8, field: Field) -> Result<u64, i64> {
    // SAFETY: bpf_probe_read_kernel checks the address.
    let raw = unsafe {
        let at = base.add(field.offset as usize);
        match field.size {
            1 => bpf_probe_read_kernel(at).map(|v: u8| v as u64),
            2 => bpf_probe_read_kernel(at.cast()).map(|v: u16| v as u64),
            4 => bpf_probe_read_kernel(at.cast()).map(|v: u32| v as u64),
            8 => bpf_probe_read_kernel(at.cast()).map(|v: u64| v),
            _ => return Err(-i64::from(EINVAL)),
        }
    }
    .map_err(|e| e as i64)?;
    Ok(field.extract(raw))
}

/// Reads a kernel pointer field; a null pointer is an error.
#[inline(always)]
pub fn ptr(base: *const u8, field: Field) -> Result<*const u8, i64> {
    match uint(base, field)? {
        0 => Err(-i64::from(EFAULT)),
        p => Ok(p as *const u8),
    }
}

/// Reads an address field: 4 bytes for IPv4, 16 for IPv6.
#[inline(always)]
pub fn addr(base: *const u8, field: Field, out: &mut [u8; 16]) -> Result<(), i64> {
    // SAFETY: bpf_probe_read_kernel_buf checks the address.
    unsafe {
        let at = base.add(field.offset as usize);
        if field.size == 4 {
            bpf_probe_read_kernel_buf(at, &mut out[..4])
        } else {
            bpf_probe_read_kernel_buf(at, &mut out[..])
        }
    }
    .map_err(|e| e as i64)
}
