//! The `engine` command line. Each subcommand lives in its own module of the
//! library; this file only parses arguments and reports errors.

use anyhow::Result;
use clap::{Parser, Subcommand};
use engine::backend::device::{Device, DeviceArg};

// Large tensors are allocated and freed every step: mimalloc keeps the pages
// instead of returning them to the kernel (glibc zero-fills them again).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of mimalloc.h (v2): how long freed memory waits
/// before it goes back to the kernel, in ms (10 by default; -1: never).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed pages stay with the process: with mimalloc's default 10 ms a CPU
/// training step hands its tensors back and faults them in zero-filled
/// again the next step (16% of a 64 px detector step's cycles in `perf`; 20
/// steps took 17.9 s, now 15.0 s). Memory stays at its peak instead.
fn keep_freed_memory() {
    // SAFETY: sets a plain integer option; mimalloc reads it on later frees.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

#[derive(Parser)]
#[command(name = "engine", version, about = "Weakly supervised pneumonia localization from chest X-rays and radiology reports")]
struct Cli {
    /// Where to compute: the GPU when there is one (auto), or force cpu / cuda.
    #[arg(long, value_enum, global = true, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// On CUDA, run convolutions on TF32 tensor cores (10-bit mantissa, f32
    /// accumulation; PyTorch's default for cuDNN). Default: full f32.
    #[arg(long, global = true)]
    tf32: bool,
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
    /// Make or inspect data.
    #[command(subcommand)]
    Data(DataCommand),
    /// The supervised box detector (RetinaNet, ResNet-50 FPN).
    #[command(subcommand)]
    Detector(DetectorCommand),
    /// Reports to attributes to word vectors.
    #[command(subcommand)]
    Text(TextCommand),
    /// Train the cross-attention model on images, report attributes, word vectors and a detector.
    Train(engine::attention::train::AttnTrainArgs),
    /// Boxes and attribute probabilities from images alone: JSON and PNG overlays.
    Infer(engine::attention::infer::AttnInferArgs),
    /// The image classifier of the CAM and Grad-CAM baselines.
    #[command(subcommand)]
    Classifier(ClassifierCommand),
    /// Evaluate against truth boxes (the paper's tables).
    #[command(subcommand)]
    Eval(EvalCommand),
    /// The whole method end to end on synthetic phantoms, with the IoU table of detector vs attention model.
    Demo(engine::demo::DemoArgs),
}

#[derive(Subcommand)]
enum ClassifierCommand {
    /// Train ResNet-50 + global average pooling + one logit on image-level labels.
    Train(engine::classifier::ClassifierTrainArgs),
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Table 1: IoU accuracy of the detector, the attention model and context rows on boxed images, with bootstrap intervals.
    Localize(engine::eval::localize::LocalizeArgs),
    /// Table 2: correlation of attribute probabilities (P(severe), P(mild)) and a lung-brightness floor with expert COVID-19 severity scores.
    Severity(engine::eval::severity::SeverityArgs),
}

#[derive(Subcommand)]
enum TextCommand {
    /// Pneumonia status and attributes of each report (JSON lines) with a summary.
    Extract(engine::text::commands::ExtractArgs),
    /// Train word2vec (skip-gram, negative sampling) on reports; saves vectors and negative attributes.
    Word2vec(engine::text::commands::Word2vecArgs),
    /// Nearest words of a word by cosine.
    Neighbours(engine::text::commands::NeighboursArgs),
}

#[derive(Subcommand)]
enum DetectorCommand {
    /// Train on boxed images (RSNA labels CSV).
    Train(engine::detector::train::TrainArgs),
    /// Boxes and scores for an image or a folder: JSON, CSV, PNG overlays.
    Infer(engine::detector::infer::InferArgs),
}

#[derive(Subcommand)]
enum DataCommand {
    /// Synthetic chest phantoms with opacities of known position, RSNA labels and reports.
    Synth {
        /// Output folder (images/, reports/, labels.csv, truth.jsonl).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Number of images.
        #[arg(long, default_value_t = 200)]
        count: usize,
        /// Image side in pixels.
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Share of images with pneumonia.
        #[arg(long, default_value_t = 0.8)]
        positive_rate: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
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
            if cli.device == DeviceArg::Cuda {
                // the same refusal as every other command's
                Device::select(cli.device)?;
            }
            let report = engine::info::report();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", engine::info::text(&report));
            }
        }
        Command::Data(DataCommand::Synth { out, count, size, positive_rate, seed }) => {
            anyhow::ensure!(size >= 32, "--size must be at least 32 pixels");
            let cfg = engine::data::synth::SynthConfig { count, size, seed, positive_rate };
            let bar = engine::progress::bar(count as u64, "phantoms");
            let all = engine::data::synth::write_dataset(&out, &cfg, || bar.inc(1))?;
            bar.finish_and_clear();
            let boxes: usize = all.iter().map(|p| p.opacities.len()).sum();
            let pos = all.iter().filter(|p| !p.opacities.is_empty()).count();
            println!("{}: {count} phantoms of {size}x{size} ({pos} with pneumonia, {boxes} boxes), labels.csv, reports/, truth.jsonl", out.display());
        }
        Command::Detector(DetectorCommand::Train(args)) => {
            let device = Device::select(cli.device)?.with_tf32(cli.tf32);
            engine::with_backend!(device, |b| engine::detector::train::train(b, &args))?;
        }
        Command::Detector(DetectorCommand::Infer(args)) => {
            let device = Device::select(cli.device)?.with_tf32(cli.tf32);
            let r = engine::with_backend!(device, |b| engine::detector::infer::infer(b, &args))?;
            let n = r["images"].as_array().map_or(0, |v| v.len());
            let skipped = r["skipped"].as_array().map_or(0, |v| v.len());
            println!("{n} images, {skipped} skipped -> {}", args.out.display());
        }
        Command::Train(args) => {
            let device = Device::select(cli.device)?.with_tf32(cli.tf32);
            engine::with_backend!(device, |b| engine::attention::train::train(b, &args))?;
        }
        Command::Infer(args) => {
            let device = Device::select(cli.device)?.with_tf32(cli.tf32);
            let r = engine::with_backend!(device, |b| engine::attention::infer::infer(b, &args))?;
            let n = r["images"].as_array().map_or(0, |v| v.len());
            let skipped = r["skipped"].as_array().map_or(0, |v| v.len());
            println!("{n} images, {skipped} skipped -> {}", args.out.display());
        }
        Command::Classifier(ClassifierCommand::Train(args)) => {
            let device = Device::select(cli.device)?.with_tf32(cli.tf32);
            engine::with_backend!(device, |b| engine::classifier::train(b, &args))?;
        }
        Command::Eval(EvalCommand::Localize(args)) => {
            let device = Device::select(cli.device)?.with_tf32(cli.tf32);
            let r = engine::with_backend!(device, |b| engine::eval::localize::run(b, &args))?;
            print!("{}", engine::eval::localize::table(&r));
            println!("-> {}", args.out.join("eval.json").display());
        }
        Command::Eval(EvalCommand::Severity(args)) => {
            let device = Device::select(cli.device)?.with_tf32(cli.tf32);
            let r = engine::with_backend!(device, |b| engine::eval::severity::run(b, &args))?;
            print!("{}", engine::eval::severity::table(&r));
            println!("-> {}", args.out.join("severity.json").display());
        }
        Command::Demo(args) => {
            let device = Device::select(cli.device)?.with_tf32(cli.tf32);
            let r = engine::demo::run(device, &args)?;
            print!("{}", engine::demo::table(&r));
        }
        Command::Text(TextCommand::Extract(args)) => {
            let s = engine::text::commands::extract(&args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", engine::text::commands::extract_summary_text(&s));
            }
        }
        Command::Text(TextCommand::Word2vec(args)) => {
            let device = Device::select(cli.device)?.with_tf32(cli.tf32);
            let s = engine::text::commands::word2vec(&device, &args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", engine::text::commands::word2vec_summary_text(&s));
            }
        }
        Command::Text(TextCommand::Neighbours(args)) => {
            for (w, c) in engine::text::commands::neighbours(&args)? {
                println!("{c:.4}  {w}");
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
    keep_freed_memory();
    // Output piped into `head` ends the program quietly instead of a panic on EPIPE.
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = run(cli);
    engine::autograd::profile::print();
    if let Err(e) = result {
        eprintln!("engine: error: {e:#}");
        std::process::exit(if engine::usage::is_usage(&e) { 2 } else { 1 });
    }
}
