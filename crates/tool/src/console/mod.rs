//! `callconsent console`: the DPO's and coaches' web console (issue 13). Stub: being built.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    /// The configuration (Asterisk syntax)
    #[arg(long, value_name = "FILE", env = "CALLCONSENT_CONFIG", default_value = "/etc/asterisk/callconsent.conf")]
    pub config: String,
}

pub fn run(_a: ConsoleArgs) -> ExitCode {
    eprintln!("callconsent console: not built yet");
    ExitCode::from(1)
}
