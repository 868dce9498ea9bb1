"""A local randomuser.me-compatible API, for the embedded stack, tests and benchmarks; the product never imports it."""
