//! Compile-time checks of the records' layout: sizes and the offsets of
//! every field userspace decodes. The kernel object and the loader are
//! built from this one crate, and recordings (`socktrace record`) keep the
//! raw records, so a layout that changed by accident would pass silently
//! between two builds; here it stops the build, on both sides. A change
//! meant to happen edits the numbers below in the same commit.
use core::mem::{offset_of, size_of};

use crate::{
    BindRecord, Header, ListenRecord, Owner, ReleaseRecord, ResetRecord, SocketFile, StateRecord,
    Tally, TallyKey, TallyRecord,
};

const _: () = {
    assert!(size_of::<Header>() == 16);
    assert!(offset_of!(Header, kind) == 0);
    assert!(offset_of!(Header, ts_ns) == 8);

    assert!(size_of::<Owner>() == 40);
    assert!(offset_of!(Owner, pid) == 0);
    assert!(offset_of!(Owner, tid) == 4);
    assert!(offset_of!(Owner, uid) == 8);
    assert!(offset_of!(Owner, source) == 12);
    assert!(offset_of!(Owner, cgroup_id) == 16);
    assert!(offset_of!(Owner, comm) == 24);
};

const _: () = {
    assert!(size_of::<StateRecord>() == 152);
    assert!(offset_of!(StateRecord, header) == 0);
    assert!(offset_of!(StateRecord, owner) == 16);
    assert!(offset_of!(StateRecord, cookie) == 56);
    assert!(offset_of!(StateRecord, netns) == 64);
    assert!(offset_of!(StateRecord, sk_err) == 68);
    assert!(offset_of!(StateRecord, saddr) == 72);
    assert!(offset_of!(StateRecord, daddr) == 88);
    assert!(offset_of!(StateRecord, sport) == 104);
    assert!(offset_of!(StateRecord, dport) == 106);
    assert!(offset_of!(StateRecord, family) == 108);
    assert!(offset_of!(StateRecord, protocol) == 110);
    assert!(offset_of!(StateRecord, old_state) == 112);
    assert!(offset_of!(StateRecord, new_state) == 113);
    assert!(offset_of!(StateRecord, flags) == 114);
    assert!(offset_of!(StateRecord, bytes_acked) == 120);
    assert!(offset_of!(StateRecord, bytes_received) == 128);
    assert!(offset_of!(StateRecord, total_retrans) == 136);
    assert!(offset_of!(StateRecord, srtt_us) == 140);
    assert!(offset_of!(StateRecord, rttvar_us) == 144);
};

const _: () = {
    assert!(size_of::<ResetRecord>() == 32);
    assert!(offset_of!(ResetRecord, header) == 0);
    assert!(offset_of!(ResetRecord, cookie) == 16);
    assert!(offset_of!(ResetRecord, reason) == 24);
    assert!(offset_of!(ResetRecord, state) == 28);
};

const _: () = {
    assert!(size_of::<BindRecord>() == 96);
    assert!(offset_of!(BindRecord, header) == 0);
    assert!(offset_of!(BindRecord, owner) == 16);
    assert!(offset_of!(BindRecord, cookie) == 56);
    assert!(offset_of!(BindRecord, netns) == 64);
    assert!(offset_of!(BindRecord, ret) == 68);
    assert!(offset_of!(BindRecord, addr) == 72);
    assert!(offset_of!(BindRecord, family) == 88);
    assert!(offset_of!(BindRecord, protocol) == 90);
    assert!(offset_of!(BindRecord, requested_port) == 92);
    assert!(offset_of!(BindRecord, bound_port) == 94);
};

const _: () = {
    assert!(size_of::<ListenRecord>() == 104);
    assert!(offset_of!(ListenRecord, header) == 0);
    assert!(offset_of!(ListenRecord, owner) == 16);
    assert!(offset_of!(ListenRecord, cookie) == 56);
    assert!(offset_of!(ListenRecord, netns) == 64);
    assert!(offset_of!(ListenRecord, ret) == 68);
    assert!(offset_of!(ListenRecord, addr) == 72);
    assert!(offset_of!(ListenRecord, family) == 88);
    assert!(offset_of!(ListenRecord, protocol) == 90);
    assert!(offset_of!(ListenRecord, port) == 92);
    assert!(offset_of!(ListenRecord, backlog) == 96);
};

const _: () = {
    assert!(size_of::<ReleaseRecord>() == 96);
    assert!(offset_of!(ReleaseRecord, header) == 0);
    assert!(offset_of!(ReleaseRecord, owner) == 16);
    assert!(offset_of!(ReleaseRecord, cookie) == 56);
    assert!(offset_of!(ReleaseRecord, netns) == 64);
    assert!(offset_of!(ReleaseRecord, addr) == 72);
    assert!(offset_of!(ReleaseRecord, family) == 88);
    assert!(offset_of!(ReleaseRecord, protocol) == 90);
    assert!(offset_of!(ReleaseRecord, port) == 92);
};

// `TallyKey` and `Tally` are map keys and values userspace reads from
// `TALLIES` as well as parts of `TallyRecord`.
const _: () = {
    assert!(size_of::<TallyKey>() == 48);
    assert!(offset_of!(TallyKey, netns) == 0);
    assert!(offset_of!(TallyKey, pid) == 4);
    assert!(offset_of!(TallyKey, family) == 8);
    assert!(offset_of!(TallyKey, role) == 10);
    assert!(offset_of!(TallyKey, port) == 12);
    assert!(offset_of!(TallyKey, laddr) == 16);
    assert!(offset_of!(TallyKey, raddr) == 32);

    assert!(size_of::<Tally>() == 40);
    assert!(offset_of!(Tally, time_waits) == 0);
    assert!(offset_of!(Tally, closes) == 8);
    assert!(offset_of!(Tally, short) == 16);
    assert!(offset_of!(Tally, comm) == 24);

    assert!(size_of::<TallyRecord>() == 88);
    assert!(offset_of!(TallyRecord, header) == 0);
    assert!(offset_of!(TallyRecord, key) == 16);
    assert!(offset_of!(TallyRecord, comm) == 64);
    assert!(offset_of!(TallyRecord, time_wait) == 80);
    assert!(offset_of!(TallyRecord, short) == 81);
};

// Written by the start-up iterator, read back from its file.
const _: () = {
    assert!(size_of::<SocketFile>() == 48);
    assert!(offset_of!(SocketFile, owner) == 0);
    assert!(offset_of!(SocketFile, inode) == 40);
};
