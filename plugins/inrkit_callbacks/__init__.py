"""inrkit's built-in callback plugins, each registered through its own entry point."""
