//! Resource amounts as the VPA model keeps them (`pkg/recommender/model/types.go`): CPU in
//! millicores and memory in bytes, each an `i64` in `[0, MAX_RESOURCE_AMOUNT]`. Floats become
//! amounts by truncation toward zero (`resourceAmountFromFloat`), so the estimators repeat
//! upstream's arithmetic exactly: `3.14` cores is 3140 millicores, a 15% margin on it is
//! `3140 + trunc(3140 * 0.15)`.
//!
//! The public API speaks base units ([`Resources`]: cores and bytes as `f64`); amounts stay
//! inside the recommender.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `MaxResourceAmount`: the largest amount (1e14 millicores, 1e14 bytes).
pub const MAX_RESOURCE_AMOUNT: i64 = 100_000_000_000_000;

/// A resource the vertical recommender sizes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// CPU, in cores (millicores inside).
    Cpu,
    /// Memory, in bytes.
    Memory,
}

impl Resource {
    /// Both resources, CPU first (upstream's `DefaultControlledResources` order).
    pub const ALL: [Resource; 2] = [Resource::Cpu, Resource::Memory];

    /// The Kubernetes resource name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
        }
    }

    /// Base units (cores, bytes) to an amount (millicores, bytes), truncating.
    pub fn amount_from_base(self, v: f64) -> i64 {
        match self {
            Self::Cpu => cpu_amount_from_cores(v),
            Self::Memory => memory_amount_from_bytes(v),
        }
    }

    /// An amount to base units.
    pub fn base_from_amount(self, a: i64) -> f64 {
        match self {
            Self::Cpu => cores_from_cpu_amount(a),
            Self::Memory => bytes_from_memory_amount(a),
        }
    }
}

/// CPU cores and memory bytes; `None` where a resource is unknown, not controlled, or unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU in cores (`0.25` is `250m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
    /// Memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<f64>,
}

impl Resources {
    /// Both set.
    pub fn new(cpu_cores: f64, memory_bytes: f64) -> Self {
        Self {
            cpu_cores: Some(cpu_cores),
            memory_bytes: Some(memory_bytes),
        }
    }

    /// The value of one resource.
    pub fn get(&self, r: Resource) -> Option<f64> {
        match r {
            Resource::Cpu => self.cpu_cores,
            Resource::Memory => self.memory_bytes,
        }
    }

    /// Set one resource.
    pub fn set(&mut self, r: Resource, v: Option<f64>) {
        match r {
            Resource::Cpu => self.cpu_cores = v,
            Resource::Memory => self.memory_bytes = v,
        }
    }
}

/// Both amounts (upstream's `model.Resources` with both keys present).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    /// Millicores.
    pub cpu: i64,
    /// Bytes.
    pub memory: i64,
}

impl Amounts {
    /// The amount of one resource.
    pub fn get(&self, r: Resource) -> i64 {
        match r {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
        }
    }

    /// Set the amount of one resource.
    pub fn set(&mut self, r: Resource, v: i64) {
        match r {
            Resource::Cpu => self.cpu = v,
            Resource::Memory => self.memory = v,
        }
    }

    /// Apply `f` to each resource.
    pub fn map(self, mut f: impl FnMut(Resource, i64) -> i64) -> Self {
        Self {
            cpu: f(Resource::Cpu, self.cpu),
            memory: f(Resource::Memory, self.memory),
        }
    }
}

/// Amounts of some resources (a recommendation after `FilterControlledResources`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartialAmounts {
    /// Millicores.
    pub cpu: Option<i64>,
    /// Bytes.
    pub memory: Option<i64>,
}

impl PartialAmounts {
    /// The amount of one resource, if present.
    pub fn get(&self, r: Resource) -> Option<i64> {
        match r {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
        }
    }

    /// Set one resource.
    pub fn set(&mut self, r: Resource, v: Option<i64>) {
        match r {
            Resource::Cpu => self.cpu = v,
            Resource::Memory => self.memory = v,
        }
    }

    /// In base units.
    pub fn to_resources(self) -> Resources {
        Resources {
            cpu_cores: self.cpu.map(cores_from_cpu_amount),
            memory_bytes: self.memory.map(bytes_from_memory_amount),
        }
    }
}

/// `resourceAmountFromFloat`: below 0 is 0, above the maximum is the maximum, otherwise
/// truncated toward zero. NaN (which Go converts to an undefined integer; it arises only as
/// `0 * Inf` in the confidence multiplier with no history) is 0.
pub fn amount_from_f64(x: f64) -> i64 {
    if x.is_nan() || x < 0.0 {
        0
    } else if x > MAX_RESOURCE_AMOUNT as f64 {
        MAX_RESOURCE_AMOUNT
    } else {
        x as i64
    }
}

/// `CPUAmountFromCores`.
pub fn cpu_amount_from_cores(cores: f64) -> i64 {
    amount_from_f64(cores * 1000.0)
}

/// `CoresFromCPUAmount`.
pub fn cores_from_cpu_amount(millicores: i64) -> f64 {
    millicores as f64 / 1000.0
}

/// `MemoryAmountFromBytes`.
pub fn memory_amount_from_bytes(bytes: f64) -> i64 {
    amount_from_f64(bytes)
}

/// `BytesFromMemoryAmount`.
pub fn bytes_from_memory_amount(bytes: i64) -> f64 {
    bytes as f64
}

/// `ScaleResource`: `amount * factor`, back to an amount.
pub fn scale_resource(amount: i64, factor: f64) -> i64 {
    amount_from_f64(amount as f64 * factor)
}
