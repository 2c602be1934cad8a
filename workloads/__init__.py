"""Built-in workloads, one TOML file each; installed as the package ``sparsesim.workload.builtin``."""
