//! socktrace's kernel programs: one module per hook family, maps in `maps`.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

mod cookie;
mod emit;
mod existing;
mod field;
mod filter;
mod maps;
mod owner;
mod release;
mod sock;
mod sockio;
mod state;
mod syscalls;
mod tally;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
