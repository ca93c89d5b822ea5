//! How long each step of attaching took, said with `--verbose`: launch
//! time is cut where it goes.
use std::{
    fmt,
    time::{Duration, Instant},
};

#[derive(Debug)]
pub struct Steps {
    last: Instant,
    taken: Vec<(&'static str, Duration)>,
}

impl Steps {
    pub fn start() -> Steps {
        Steps {
            last: Instant::now(),
            taken: Vec::new(),
        }
    }

    /// `step` is done: it took the time since the last one.
    pub fn done(&mut self, step: &'static str) {
        let now = Instant::now();
        self.taken.push((step, now - self.last));
        self.last = now;
    }

    pub fn total(&self) -> Duration {
        self.taken.iter().map(|(_, took)| *took).sum()
    }
}

/// `tracefs 0.1 ms, BTF 2.3 ms, ...`
impl fmt::Display for Steps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (step, took)) in self.taken.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{step} {:.1} ms", took.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_add_up_and_say_each() {
        let mut steps = Steps::start();
        steps.done("one");
        std::thread::sleep(Duration::from_millis(2));
        steps.done("two");
        let said = steps.to_string();
        assert!(
            said.starts_with("one ") && said.contains(", two "),
            "{said}"
        );
        assert_eq!(steps.total(), steps.taken[0].1 + steps.taken[1].1);
        assert!(steps.taken[1].1 >= Duration::from_millis(2));
    }
}
