//! `--device auto|cpu|cuda`: which backend a command runs on.

use super::cpu::Cpu;
use super::cuda::{unavailable_reason, Cuda};
use super::ops::Storage;
use anyhow::{Context, Result};

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceArg {
    /// The GPU when libcuda and a device exist, else the CPU (said in one line).
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// The chosen backend. Generic code runs on either through `with_backend!`.
#[derive(Clone)]
pub enum Device {
    Cpu(Cpu<f32>),
    Cuda(Cuda),
}

impl Device {
    pub fn select(arg: DeviceArg) -> Result<Device> {
        match arg {
            DeviceArg::Cpu => Ok(Device::Cpu(Cpu::new())),
            DeviceArg::Cuda => match unavailable_reason() {
                Some(why) => Err(crate::usage::usage(format!("--device cuda: CUDA is not available: {why}; use --device cpu or auto"))),
                None => Ok(Device::Cuda(Cuda::new(0).context("--device cuda")?)),
            },
            DeviceArg::Auto => {
                let why = match unavailable_reason() {
                    None => match Cuda::new(0) {
                        Ok(c) => return Ok(Device::Cuda(c)),
                        Err(e) => format!("{e:#}"),
                    },
                    Some(why) => why,
                };
                eprintln!("engine: running on the CPU: {why}");
                Ok(Device::Cpu(Cpu::new()))
            }
        }
    }

    /// `--tf32`: convolutions on TF32 tensor cores (CUDA only; the CPU says
    /// it ignores the flag).
    pub fn with_tf32(self, on: bool) -> Device {
        match self {
            Device::Cuda(c) => Device::Cuda(c.with_tf32(on)),
            Device::Cpu(c) => {
                if on {
                    eprintln!("engine: --tf32 has no effect on the CPU (full f32)");
                }
                Device::Cpu(c)
            }
        }
    }

    pub fn name(&self) -> String {
        
        match self {
            Device::Cpu(b) => b.name(),
            Device::Cuda(b) => b.name(),
        }
    }
}

/// Runs a generic expression with `$b` bound to the concrete backend.
#[macro_export]
macro_rules! with_backend {
    ($device:expr, |$b:ident| $body:expr) => {
        match $device {
            $crate::backend::device::Device::Cpu($b) => $body,
            $crate::backend::device::Device::Cuda($b) => $body,
        }
    };
}
