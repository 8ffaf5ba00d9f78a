//! `deployer`: will provision Cairn test clusters (EC2 or local processes), generate keyrings,
//! start nodes and the monitor, and tear everything down. Not built yet: every command says
//! so and exits non-zero, so no script mistakes it for a working deployment.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "deployer", version, about = "Provision and tear down Cairn test clusters (NOT IMPLEMENTED YET)",
    long_about = "Provision and tear down Cairn test clusters.\n\n\
NOT IMPLEMENTED YET: the commands below are the planned interface and each one exits with\n\
an error. Until then run a node with `cairn start` (see README.md).")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Provision N nodes with keyrings and start them (planned)
    Up {
        /// Number of nodes
        #[arg(long, default_value_t = 4)]
        nodes: usize,
    },
    /// Destroy everything a cluster state file records (planned)
    Down,
    /// Show the cluster's nodes and their health (planned)
    Status,
    /// Open a shell on one node (planned)
    Ssh {
        /// Node index
        node: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let name = match cli.cmd {
        Cmd::Up { .. } => "up",
        Cmd::Down => "down",
        Cmd::Status => "status",
        Cmd::Ssh { .. } => "ssh",
    };
    eprintln!("error: `deployer {name}` is not implemented yet; run a single node with `cairn start` (see README.md)");
    std::process::exit(2);
}
