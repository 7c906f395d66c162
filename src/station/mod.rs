//! The engine layer: code that combines the areas below it (ledger + dps for enrollment, ...)
//! and that the CLI and the GUI drive. The areas themselves never import each other.

pub mod enrollment;
