//! The terminal while `top` draws on it: raw mode, the alternate screen,
//! no cursor, and standard error set aside (a line written there, a loss
//! or a log message, would scribble over the view; it is shown once the
//! view is gone). [`Screen`] puts it all back when dropped, and a panic
//! hook does so before the panic's message is printed.
use std::{
    fs::File,
    io::{self, Seek as _},
    os::fd::{AsFd as _, OwnedFd},
    sync::{Mutex, MutexGuard, Once, PoisonError},
};

use crossterm::{cursor, execute, terminal};
use nix::{
    sys::memfd::{MFdFlags, memfd_create},
    unistd::dup2_stderr,
};

/// What to put back; `Some` while the view is up.
static SAVED: Mutex<Option<Saved>> = Mutex::new(None);
static PANIC_HOOK: Once = Once::new();

struct Saved {
    /// The real standard error.
    stderr: OwnedFd,
    /// What was written to standard error meanwhile.
    captured: File,
}

/// The terminal, set up for the view until this is dropped.
pub struct Screen(());

impl Screen {
    pub fn enter() -> io::Result<Screen> {
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        let captured = File::from(memfd_create(c"socktrace-stderr", MFdFlags::MFD_CLOEXEC)?);
        let stderr = io::stderr().as_fd().try_clone_to_owned()?;
        dup2_stderr(&captured)?;
        *saved() = Some(Saved { stderr, captured });
        // From here on, an error drops it: everything is put back.
        let screen = Screen(());
        terminal::enable_raw_mode()?;
        execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal and standard error back, then shows what was written
/// to standard error meanwhile. Only the first call does anything.
fn restore() {
    let Some(Saved {
        stderr,
        mut captured,
    }) = saved().take()
    else {
        return;
    };
    let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
    if dup2_stderr(&stderr).is_ok() && captured.rewind().is_ok() {
        let _ = io::copy(&mut captured, &mut crate::stderr::Lines);
        crate::stderr::flush();
    }
}

fn saved() -> MutexGuard<'static, Option<Saved>> {
    SAVED.lock().unwrap_or_else(PoisonError::into_inner)
}
