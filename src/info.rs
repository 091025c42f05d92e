//! `engine info`: what was built (nvcc, kernel modules and their entries) and
//! what this machine offers at run time (a GPU, or why it is CPU only).

use crate::backend::cuda::{ptx_entries, unavailable_reason, Cuda};
use crate::backend::Storage;
use crate::backend::cuda::kernels::{MODULES, NVCC_VERSION};
use serde_json::json;

pub fn report() -> serde_json::Value {
    let modules: Vec<_> = MODULES
        .iter()
        .map(|(name, ptx)| json!({ "module": name, "entries": ptx_entries(ptx) }))
        .collect();
    let runtime = match unavailable_reason() {
        Some(why) => json!({ "device": "CPU only", "why": why }),
        None => match Cuda::new(0) {
            Ok(c) => {
                let (total, free) = c.memory().unwrap_or((0, 0));
                let cc = c.compute_capability().map(|(a, b)| format!("{a}.{b}")).unwrap_or_default();
                json!({ "device": "CUDA", "gpu": c.name(), "compute_capability": cc,
                        "memory_total_bytes": total, "memory_free_bytes": free })
            }
            Err(e) => json!({ "device": "CPU only", "why": format!("{e:#}") }),
        },
    };
    json!({
        "engine": env!("CARGO_PKG_VERSION"),
        "build": { "nvcc": if NVCC_VERSION.is_empty() { "none (CPU-only build)" } else { NVCC_VERSION }, "kernel_modules": modules },
        "runtime": runtime,
        "cpu_threads": rayon::current_num_threads(),
    })
}

/// The same report as a few readable lines.
pub fn text(r: &serde_json::Value) -> String {
    let mut s = format!("engine {}\n", r["engine"].as_str().unwrap_or("?"));
    s += &format!("build: nvcc {}\n", r["build"]["nvcc"].as_str().unwrap_or("?"));
    let mods = r["build"]["kernel_modules"].as_array().cloned().unwrap_or_default();
    let total: usize = mods.iter().map(|m| m["entries"].as_array().map_or(0, |e| e.len())).sum();
    s += &format!("kernels: {} modules, {total} entries\n", mods.len());
    for m in &mods {
        let entries: Vec<&str> = m["entries"].as_array().map(|e| e.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
        s += &format!("  {:<12} {}\n", m["module"].as_str().unwrap_or("?"), entries.join(" "));
    }
    let rt = &r["runtime"];
    if rt["device"] == "CUDA" {
        let gib = |k: &str| rt[k].as_f64().unwrap_or(0.0) / (1u64 << 30) as f64;
        s += &format!("runtime: CUDA, {} (compute {}), {:.1} GiB total, {:.1} GiB free\n",
            rt["gpu"].as_str().unwrap_or("?"), rt["compute_capability"].as_str().unwrap_or("?"), gib("memory_total_bytes"), gib("memory_free_bytes"));
    } else {
        s += &format!("runtime: CPU only ({})\n", rt["why"].as_str().unwrap_or("?"));
    }
    s += &format!("cpu threads: {}\n", r["cpu_threads"]);
    s
}

/// Name of the CPU backend as the commands print it.
pub fn cpu_name() -> String {
    crate::backend::cpu::Cpu::<f32>::new().name()
}
