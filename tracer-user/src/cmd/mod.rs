//! One module per subcommand, named as the CLI names it; each wires the
//! parts it needs and runs them. `live` is what every live mode shares.
pub mod analyze;
pub mod generate;
pub mod listeners;
pub mod live;
pub mod record;
pub mod stuck;
pub mod timewait;
pub mod top;
pub mod watch;
