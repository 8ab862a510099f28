//! Generated inventories and policies of a chosen size, for scale tests and benchmarks.
