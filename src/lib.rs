//! Workspace root package of jobsight: it hosts the examples and the
//! end-to-end tests, and compiles the README's code blocks as doc tests.
#![doc = include_str!("../README.md")]

pub mod demo;
