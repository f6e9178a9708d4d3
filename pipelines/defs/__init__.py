"""The `dg` project's defs module (`[tool.dg.project] defs_module`): the code location itself is
`pipelines.definitions` (code_location_target_module), so this folder holds nothing yet."""
