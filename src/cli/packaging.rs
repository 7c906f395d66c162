//! Hidden commands the Debian package build runs (`installer/build-deb.sh`): man pages and shell
//! completions generated from the clap definitions, so they never drift from the real options.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use clap_complete::Shell;

/// Generators for packagers; hidden from `--help` because operators never need them.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Write a man page (section 1) for the station and every command into DIR.
    #[command(hide = true)]
    ManPages {
        /// Where to write the `dps-station*.1` files (created if missing).
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
    /// Write the shell completion script for SHELL into DIR, under the name the shell looks for.
    #[command(hide = true)]
    Completions {
        /// bash, zsh or fish.
        #[arg(long)]
        shell: CompletionShell,
        /// Where to write the file (created if missing).
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
}

/// The shells the package ships completions for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompletionShell {
    /// `/usr/share/bash-completion/completions/dps-station`
    Bash,
    /// `/usr/share/zsh/vendor-completions/_dps-station`
    Zsh,
    /// `/usr/share/fish/vendor_completions.d/dps-station.fish`
    Fish,
}

/// Runs a generator on the full command tree `cli`.
pub fn run(cmd: Commands, cli: clap::Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Commands::ManPages { out_dir } => {
            create_dir(&out_dir)?;
            clap_mangen::generate_to(cli, &out_dir)
                .with_context(|| format!("cannot write man pages into {}", out_dir.display()))?;
        }
        Commands::Completions { shell, out_dir } => {
            create_dir(&out_dir)?;
            let shell = match shell {
                CompletionShell::Bash => Shell::Bash,
                CompletionShell::Zsh => Shell::Zsh,
                CompletionShell::Fish => Shell::Fish,
            };
            let mut cli = cli;
            let name = cli.get_name().to_owned();
            clap_complete::generate_to(shell, &mut cli, name, &out_dir).with_context(|| {
                format!(
                    "cannot write {shell} completions into {}",
                    out_dir.display()
                )
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}
