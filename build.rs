//! Compiles every `cuda/*.cu` to PTX with nvcc and embeds it (see README,
//! "Building"). Without nvcc the build is CPU-only, with one warning; with
//! nvcc a broken kernel fails the build.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

fn find_nvcc() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(p) = env::var("NVCC") {
        candidates.push(p.into());
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Ok(p) = env::var(var) {
            candidates.push(Path::new(&p).join("bin/nvcc"));
        }
    }
    if let Ok(path) = env::var("PATH") {
        candidates.extend(env::split_paths(&path).map(|d| d.join("nvcc")));
    }
    // The layout tools/install-nvcc.sh makes (nvcc from the Python registry).
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    if let Ok(entries) = fs::read_dir(root.join(".venv-nvcc/lib")) {
        for e in entries.flatten() {
            candidates.push(e.path().join("site-packages/nvidia/cu13/bin/nvcc"));
        }
    }
    candidates.into_iter().find(|p| p.is_file())
}

fn main() {
    println!("cargo:rerun-if-changed=cuda");
    for var in ["NVCC", "CUDA_HOME", "CUDA_PATH", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rustc-check-cfg=cfg(has_ptx)");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut cu: Vec<PathBuf> = fs::read_dir("cuda")
        .expect("cuda/ folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    cu.sort();

    let nvcc = find_nvcc();
    let mut modules = String::from("/// (module name, PTX text) of every compiled `cuda/*.cu`.\npub const MODULES: &[(&str, &str)] = &[\n");
    let mut version = String::new();
    if let Some(nvcc) = &nvcc {
        let v = Command::new(nvcc).arg("--version").output().expect("run nvcc --version");
        version = String::from_utf8_lossy(&v.stdout).lines().last().unwrap_or("").trim().to_string();
        for src in &cu {
            let stem = src.file_stem().unwrap().to_str().unwrap().to_string();
            let ptx = out.join(format!("{stem}.ptx"));
            let status = Command::new(nvcc)
                .args(["-ptx", "-arch=compute_90", "-O3", "-std=c++17", "-lineinfo", "-I", "cuda", "-o"])
                .arg(&ptx)
                .arg(src)
                .status()
                .expect("run nvcc");
            if !status.success() {
                panic!("nvcc failed on {}", src.display());
            }
            modules.push_str(&format!("    (\"{stem}\", include_str!(r\"{}\")),\n", ptx.display()));
        }
        println!("cargo:rustc-cfg=has_ptx");
    } else {
        println!("cargo:warning=nvcc not found: building without CUDA kernels (CPU only). Run tools/install-nvcc.sh or set NVCC.");
    }
    modules.push_str("];\n");
    modules.push_str(&format!("/// `nvcc --version` of the build, empty without nvcc.\npub const NVCC_VERSION: &str = {version:?};\n"));
    fs::write(out.join("kernels.rs"), modules).unwrap();
}
