//! One module per command.

pub mod backup;
pub mod bench;
pub mod config_cmd;
pub mod demo;
pub mod doctor;
pub mod mcp;
pub mod models;
pub mod regions;
pub mod sql;
pub mod status;
pub mod transfer;
