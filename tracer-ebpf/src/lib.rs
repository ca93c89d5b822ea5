#![no_std]
// Empty on purpose: the programs live in the `tracer` binary (src/main.rs).
