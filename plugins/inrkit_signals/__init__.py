"""inrkit's built-in signal plugins, each registered through its own entry point."""
