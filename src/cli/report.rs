//! `selfsup report`: writes `report.html` into a run folder.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::backend::BackendChoice;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run folder.
    pub run: PathBuf,
    /// Backend for the nearest-neighbour grid's features.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
}

pub fn run(args: ReportArgs, verbose: bool) -> Result<()> {
    let path = crate::report::html::write_report(&args.run, args.backend, verbose)?;
    println!("{}", path.display());
    Ok(())
}
