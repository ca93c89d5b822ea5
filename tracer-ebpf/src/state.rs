//! `sock:inet_sock_set_state`: every TCP state transition, IPv4 and IPv6.
use aya_ebpf::{EbpfContext, macros::tracepoint, programs::TracePointContext};
use tracer_common::{AF_INET, AF_INET6, IPPROTO_TCP, KIND_STATE, StateRecord};

use crate::{
    emit::{emit, header},
    field::{addr, cfg, uint},
    maps::CONFIG,
};

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = try_inet_sock_set_state(&ctx);
    0
}

fn try_inet_sock_set_state(ctx: &TracePointContext) -> Result<(), i64> {
    let tp = &CONFIG.state_tp;
    let base = ctx.as_ptr() as *const u8;
    if uint(base, cfg(&tp.protocol))? != IPPROTO_TCP as u64 {
        return Ok(());
    }
    let family = uint(base, cfg(&tp.family))? as u16;
    let mut rec = StateRecord {
        header: header(KIND_STATE),
        sock: uint(base, cfg(&tp.skaddr))?,
        sport: uint(base, cfg(&tp.sport))? as u16,
        dport: uint(base, cfg(&tp.dport))? as u16,
        family,
        protocol: IPPROTO_TCP,
        old_state: uint(base, cfg(&tp.oldstate))? as u8,
        new_state: uint(base, cfg(&tp.newstate))? as u8,
        ..StateRecord::default()
    };
    match family {
        AF_INET => {
            addr(base, cfg(&tp.saddr), &mut rec.saddr)?;
            addr(base, cfg(&tp.daddr), &mut rec.daddr)?;
        }
        AF_INET6 => {
            addr(base, cfg(&tp.saddr_v6), &mut rec.saddr)?;
            addr(base, cfg(&tp.daddr_v6), &mut rec.daddr)?;
        }
        _ => return Ok(()),
    }
    emit(&rec);
    Ok(())
}
