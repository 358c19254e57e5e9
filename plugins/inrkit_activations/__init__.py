"""inrkit's built-in activation plugins, each registered through its own entry point."""
