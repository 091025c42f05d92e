//! Every kernel the CUDA backend launches must be an entry of the embedded
//! PTX. Reads the backend's sources (`src/backend/cuda/*.rs`) for `self.f("name")` calls, so a kernel
//! renamed or deleted in `cuda/*.cu` fails here, on machines without a GPU.

use engine::backend::cuda::ptx_entries;
use engine::backend::cuda::kernels::MODULES;
use std::collections::BTreeSet;

fn launched_kernels() -> BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/backend/cuda");
    let mut src = String::new();
    for f in std::fs::read_dir(root).unwrap() {
        src += &std::fs::read_to_string(f.unwrap().path()).unwrap();
    }
    src.match_indices("self.f(\"")
        .map(|(i, m)| src[i + m.len()..].split('"').next().unwrap().to_string())
        .collect()
}

#[test]
fn every_launched_kernel_is_in_the_embedded_ptx() {
    let launched = launched_kernels();
    assert!(launched.len() >= 20, "found only {launched:?}");
    if MODULES.is_empty() {
        // CI sets ENGINE_REQUIRE_PTX=1: there a build without kernels is a failure.
        assert!(std::env::var_os("ENGINE_REQUIRE_PTX").is_none(), "ENGINE_REQUIRE_PTX is set but this build has no PTX (nvcc not found)");
        eprintln!("SKIPPED: built without nvcc, no PTX to check");
        return;
    }
    let entries: BTreeSet<String> = MODULES.iter().flat_map(|(_, ptx)| ptx_entries(ptx)).collect();
    let missing: Vec<_> = launched.difference(&entries).collect();
    assert!(missing.is_empty(), "launched but not in the PTX: {missing:?}");
    let unused: Vec<_> = entries.difference(&launched).collect();
    assert!(unused.is_empty(), "kernels compiled but never launched: {unused:?}");
}
