"""The `sam-triton` command line: every command's flags and the options objects they become.

Nothing in build/, client/ or perf/ imports this package: it is the one place where flags are declared."""
