//! [`ResourceBounds`]: CPU and memory quantities, used by the spec (`minAllowed`,
//! `maxAllowed`) and by the status (recommendations). A module of its own, so that neither
//! of `policy` and `status` imports the other's types both ways.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// CPU and memory quantities.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceBounds {
    /// CPU, e.g. `250m` or `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::quantity")]
    pub cpu: Option<Quantity>,
    /// Memory, e.g. `256Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::quantity")]
    pub memory: Option<Quantity>,
}
