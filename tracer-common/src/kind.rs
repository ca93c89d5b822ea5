//! Record kinds: `Header::kind` says which record follows the header.
use core::mem::size_of;

use crate::{BindRecord, ListenRecord, ReleaseRecord, ResetRecord, StateRecord, TallyRecord};

/// Every kind of ring record. The kernel writes the `KIND_*` numbers;
/// userspace turns them into this with [`RecordKind::from_raw`] (or
/// `TryFrom<u32>`) and matches it exhaustively, so a new kind cannot be
/// forgotten there.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A [`StateRecord`].
    State = 1,
    /// A [`BindRecord`].
    Bind = 2,
    /// A [`ListenRecord`].
    Listen = 3,
    /// A [`ReleaseRecord`].
    Release = 4,
    /// A [`TallyRecord`].
    Tally = 5,
    /// A [`ResetRecord`].
    Reset = 6,
}

/// `Header::kind` of a [`StateRecord`].
pub const KIND_STATE: u32 = RecordKind::State as u32;
/// `Header::kind` of a [`BindRecord`].
pub const KIND_BIND: u32 = RecordKind::Bind as u32;
/// `Header::kind` of a [`ListenRecord`].
pub const KIND_LISTEN: u32 = RecordKind::Listen as u32;
/// `Header::kind` of a [`ReleaseRecord`].
pub const KIND_RELEASE: u32 = RecordKind::Release as u32;
/// `Header::kind` of a [`TallyRecord`].
pub const KIND_TALLY: u32 = RecordKind::Tally as u32;
/// `Header::kind` of a [`ResetRecord`].
pub const KIND_RESET: u32 = RecordKind::Reset as u32;

impl RecordKind {
    /// Every kind, in `KIND_*` order.
    pub const ALL: [RecordKind; 6] = [
        RecordKind::State,
        RecordKind::Bind,
        RecordKind::Listen,
        RecordKind::Release,
        RecordKind::Tally,
        RecordKind::Reset,
    ];

    /// The kind `Header::kind` names, `None` for a number no kind has.
    pub const fn from_raw(raw: u32) -> Option<RecordKind> {
        match raw {
            KIND_STATE => Some(RecordKind::State),
            KIND_BIND => Some(RecordKind::Bind),
            KIND_LISTEN => Some(RecordKind::Listen),
            KIND_RELEASE => Some(RecordKind::Release),
            KIND_TALLY => Some(RecordKind::Tally),
            KIND_RESET => Some(RecordKind::Reset),
            _ => None,
        }
    }

    /// The number the kernel writes in `Header::kind`.
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// Size in bytes of a whole record of this kind, header included: the
    /// size of every ring record of this kind.
    pub const fn record_size(self) -> usize {
        match self {
            RecordKind::State => size_of::<StateRecord>(),
            RecordKind::Bind => size_of::<BindRecord>(),
            RecordKind::Listen => size_of::<ListenRecord>(),
            RecordKind::Release => size_of::<ReleaseRecord>(),
            RecordKind::Tally => size_of::<TallyRecord>(),
            RecordKind::Reset => size_of::<ResetRecord>(),
        }
    }
}

impl TryFrom<u32> for RecordKind {
    /// The number no kind has.
    type Error = u32;

    fn try_from(raw: u32) -> Result<RecordKind, u32> {
        RecordKind::from_raw(raw).ok_or(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_holds_every_kind_once_and_nothing_else_decodes() {
        for raw in 0..=64 {
            let listed = RecordKind::ALL.iter().filter(|k| k.raw() == raw).count();
            assert_eq!(
                listed,
                usize::from(RecordKind::from_raw(raw).is_some()),
                "{raw}"
            );
            assert_eq!(RecordKind::try_from(raw).ok(), RecordKind::from_raw(raw));
        }
        for kind in RecordKind::ALL {
            assert_eq!(RecordKind::from_raw(kind.raw()), Some(kind));
        }
        assert_eq!(RecordKind::try_from(0), Err(0));
    }
}
