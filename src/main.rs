//! The `engine` command line. Each subcommand lives in its own module of the
//! library; this file only parses arguments and reports errors.

use anyhow::Result;
use clap::{Parser, Subcommand};
use engine::backend::device::DeviceArg;

#[derive(Parser)]
#[command(name = "engine", version, about = "Weakly supervised pneumonia localization from chest X-rays and radiology reports")]
struct Cli {
    /// Where to compute: the GPU when there is one (auto), or force cpu / cuda.
    #[arg(long, value_enum, global = true, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the build (nvcc, kernel modules and entries) and the runtime (GPU or CPU only).
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Inspect safetensors weight files.
    #[command(subcommand)]
    Weights(WeightsCommand),
}

#[derive(Subcommand)]
enum WeightsCommand {
    /// List the tensors of a safetensors file: name, dtype, shape.
    Show {
        file: std::path::PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { json } => {
            let report = engine::info::report();
            if cli.device == DeviceArg::Cuda && report["runtime"]["device"] != "CUDA" {
                anyhow::bail!("--device cuda: CUDA is not available: {}", report["runtime"]["why"].as_str().unwrap_or("unknown"));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", engine::info::text(&report));
            }
        }
        Command::Weights(WeightsCommand::Show { file, json }) => {
            let f = engine::weights::read(&file)?;
            if json {
                let tensors: serde_json::Map<String, serde_json::Value> = f.tensors.iter()
                    .map(|(k, t)| (k.clone(), serde_json::json!({ "dtype": format!("{:?}", t.dtype), "shape": t.shape })))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "file": file, "tensors": tensors, "metadata": f.metadata }))?);
            } else {
                let total: usize = f.tensors.values().map(|t| t.data.len()).sum();
                println!("{}: {} tensors, {} values", file.display(), f.tensors.len(), total);
                for (name, t) in &f.tensors {
                    println!("  {name:<48} {:<5} {:?}", format!("{:?}", t.dtype), t.shape);
                }
            }
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("engine: error: {e:#}");
        std::process::exit(1);
    }
}
