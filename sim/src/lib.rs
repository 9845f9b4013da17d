//! `tidal-sim` as a library: Tidal's offline tools, kept out of the controller binary
//! (`tidal-scaler`). [`simulate`] replays a load trace through a workload model and the pure
//! engine, for Tidal and for models of the HPA and KEDA; [`plot`] reads CSV tables and draws
//! line charts as SVG; [`cli`] is the command-line definition. It reads ScalingPolicy YAML
//! with the controller's own CRD types (`tidal_scaler::api`) and runs `tidal_engine`.

pub mod cli;
pub mod plot;
pub mod simulate;
