//! Workspace root package: hosts examples and end-to-end tests.
